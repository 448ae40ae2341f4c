"""The approval function's handler with API Gateway HTTP API events (moto in-process):
the form, the request API, link pages (GET confirms, POST performs), refusals, and the
asynchronous steps it invokes itself for."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from moto import mock_aws

from pushpipe.approval import wiring as approval_wiring
from pushpipe.approval.links import new_claims, sign_link
from pushpipe.approval.models import Action
from pushpipe_local.sim.audiences import audience_bytes, recipient
from tests.support.approval import (
    BUCKET,
    REGION,
    deploy_handler_env,
    parse_mail,
    provision,
    token_of,
)
from tests.support.events import FakeContext, http_event
from tests.support.pings import signing_keys

KEY = "acme-report-key-0123456789"
OTHER_KEY = "globex-report-key-0123456789"
APPROVERS = "alice@example.com,bob@example.com"


class Invocations:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, event: dict) -> None:
        self.events.append(event)


@pytest.fixture
def api(monkeypatch):
    with mock_aws():
        _, s3 = provision()
        deploy_handler_env(
            monkeypatch,
            "https://api.example",
            APPROVERS,
            {"acme": KEY, "globex": OTHER_KEY},
            vapid_public="BPUB",
        )
        approval_wiring.reset()
        calls = Invocations()
        w = approval_wiring.wiring()
        w.ports.invoker = calls
        from functions.approval.handler import handler

        def call(method, path, body=None, headers=None, query=None):
            return handler(http_event(method, path, body, headers, query), FakeContext())

        s3.put_object(
            Bucket=BUCKET,
            Key="drafts/acme/x.json",
            Body=audience_bytes(
                {
                    "id": "d",
                    "tenant": "acme",
                    "message": {"title": "t", "url": "https://x.example"},
                },
                [
                    recipient(
                        f"s{i}",
                        {
                            "endpoint": f"https://fcm.googleapis.com/fcm/send/{i}",
                            "keys": {"p256dh": "B" + "A" * 86, "auth": "A" * 22},
                        },
                    )
                    for i in range(25)
                ],
            ),
        )
        yield call, calls, handler
        approval_wiring.reset()


FORM = {
    "tenant": "acme",
    "key": KEY,
    "requester": "Marketer@Example.com",
    "title": "Weekend sale",
    "body": "20% off",
    "url": "https://shop.example/sale",
    "ttl": "3600",
    "audience_kind": "file",
    "audience_key": "drafts/acme/x.json",
    "variant_1_id": "a",
    "variant_1_percent": "50",
    "variant_2_id": "b",
    "variant_2_percent": "40",
    "variant_2_title": "Sale!",
    "control_percent": "10",
}
FORM_HEADERS = {"content-type": "application/x-www-form-urlencoded"}


def _mails() -> list[dict]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return [
        parse_mail(m.destinations, m.raw_data)
        for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    ]


def _submit_form(call, calls, handler, **over) -> dict:
    resp = call("POST", "/v1/requests", urlencode({**FORM, **over}), FORM_HEADERS)
    assert resp["statusCode"] == 201, resp["body"]
    [event] = [e for e in calls.events if e["action"] == "prepare"]
    assert handler(event, FakeContext())["result"] == "mailed"
    return resp


def test_the_form_page_is_served_with_strict_headers(api):
    call, _, _ = api
    resp = call("GET", "/v1/requests/form")
    assert resp["statusCode"] == 200
    assert resp["headers"]["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in resp["headers"]["Content-Security-Policy"]
    assert resp["headers"]["Referrer-Policy"] == "no-referrer"
    assert 'name="title"' in resp["body"] and "variant_1_percent" in resp["body"]


def test_a_form_submission_is_stored_counted_and_mailed(api):
    call, calls, handler = api
    resp = _submit_form(call, calls, handler)
    assert "Request received" in resp["body"]
    mails = _mails()
    assert {m["to"][0] for m in mails} == {
        "alice@example.com",
        "bob@example.com",
        "marketer@example.com",
    }
    assert all("25 recipients" in m["subject"] for m in mails)


def test_an_invalid_form_comes_back_with_the_reason_and_its_values(api):
    call, calls, _ = api
    resp = call(
        "POST", "/v1/requests", urlencode({**FORM, "variant_2_percent": "45"}), FORM_HEADERS
    )
    assert resp["statusCode"] == 422
    assert "must add up to 100, got 105" in resp["body"]
    assert 'value="Weekend sale"' in resp["body"], "what was typed is kept"
    assert KEY not in resp["body"], "the key is never echoed"
    assert calls.events == []


def test_requests_need_the_tenants_key(api):
    call, calls, _ = api
    body = {k: v for k, v in FORM.items() if k != "key"}
    assert call("POST", "/v1/requests", urlencode(body), FORM_HEADERS)["statusCode"] == 401
    wrong = call("POST", "/v1/requests", urlencode({**FORM, "key": OTHER_KEY}), FORM_HEADERS)
    assert wrong["statusCode"] == 403
    assert calls.events == []


def test_the_json_api_accepts_and_reports_a_request(api):
    call, calls, handler = api
    body = {
        "tenant": "acme",
        "requester": "m@example.com",
        "title": "Hi",
        "url": "https://shop.example",
        "audience": {"kind": "file", "key": "drafts/acme/x.json"},
    }
    resp = call("POST", "/v1/requests", body, {"authorization": f"Bearer {KEY}"})
    assert resp["statusCode"] == 202, resp["body"]
    created = json.loads(resp["body"])
    assert created["state"] == "pending" and created["stage"] == "counting"
    handler(calls.events[0], FakeContext())
    status = call(
        "GET", f"/v1/requests/{created['id']}", headers={"authorization": f"Bearer {KEY}"}
    )
    got = json.loads(status["body"])
    assert got["stage"] == "awaiting" and got["recipients"] == 25
    assert [d["action"] for d in got["decisions"]] == ["request", "count"]
    foreign = call(
        "GET", f"/v1/requests/{created['id']}", headers={"authorization": f"Bearer {OTHER_KEY}"}
    )
    assert foreign["statusCode"] == 403
    bad = call(
        "POST",
        "/v1/requests",
        "{not json",
        {"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert bad["statusCode"] == 400


def test_a_link_page_confirms_and_only_the_post_approves(api):
    call, calls, handler = api
    _submit_form(call, calls, handler)
    link = next(m for m in _mails() if m["to"] == ["alice@example.com"])["links"]["approve"]
    token = token_of(link)
    for _ in range(3):  # a mail scanner prefetching the link
        page = call("GET", "/v1/approval/approve", query={"t": token})
        assert page["statusCode"] == 200
        assert 'name="t"' in page["body"] and "Approve the campaign" in page["body"]
    assert not [e for e in calls.events if e["action"] == "release"]
    done = call("POST", "/v1/approval/approve", urlencode({"t": token}), FORM_HEADERS)
    assert done["statusCode"] == 200 and "Approved" in done["body"]
    [release] = [e for e in calls.events if e["action"] == "release"]
    assert handler(release, FakeContext())["result"] == "released"
    again = call("POST", "/v1/approval/approve", urlencode({"t": token}), FORM_HEADERS)
    assert again["statusCode"] == 409 and "already used" in again["body"]
    assert "Nothing was changed" in again["body"]


@pytest.mark.parametrize(
    ("mutate", "status", "text"),
    [
        (lambda tok: tok[:-3] + "AAA", 400, "signature does not match"),
        (lambda tok: "garbage", 400, "malformed"),
        (lambda tok: None, 400, "no token"),
    ],
)
def test_forged_link_pages(api, mutate, status, text):
    call, calls, handler = api
    _submit_form(call, calls, handler)
    link = next(m for m in _mails() if m["to"] == ["bob@example.com"])["links"]["reject"]
    query = {"t": mutate(token_of(link))} if mutate(token_of(link)) else None
    page = call("GET", "/v1/approval/reject", query=query)
    assert page["statusCode"] == status and text in page["body"]


def test_expired_and_foreign_link_pages(api):
    call, calls, handler = api
    _submit_form(call, calls, handler)
    request_id = json.loads(json.dumps(calls.events[0]))["request"]
    expired = sign_link(
        new_claims(request_id, "alice@example.com", Action.APPROVE, 1), signing_keys()
    )
    page = call("GET", "/v1/approval/approve", query={"t": expired})
    assert page["statusCode"] == 410 and "expired" in page["body"]
    foreign = sign_link(
        new_claims(request_id, "eve@example.com", Action.APPROVE, 4_102_444_800), signing_keys()
    )
    page = call("POST", "/v1/approval/approve", urlencode({"t": foreign}), FORM_HEADERS)
    assert page["statusCode"] == 403 and "not an approver" in page["body"]
    link = next(m for m in _mails() if m["to"] == ["alice@example.com"])["links"]["approve"]
    wrong_action = call("GET", "/v1/approval/reject", query={"t": token_of(link)})
    assert wrong_action["statusCode"] == 400 and "opened as a" in wrong_action["body"]


def test_reject_page_takes_a_reason(api):
    call, calls, handler = api
    _submit_form(call, calls, handler)
    link = next(m for m in _mails() if m["to"] == ["bob@example.com"])["links"]["reject"]
    page = call("GET", "/v1/approval/reject", query={"t": token_of(link)})
    assert 'name="reason"' in page["body"].replace("'", '"')
    done = call(
        "POST",
        "/v1/approval/reject",
        urlencode({"t": token_of(link), "reason": "not this weekend"}),
        FORM_HEADERS,
    )
    assert done["statusCode"] == 200 and "Rejected" in done["body"]
    to_requester = [
        m for m in _mails() if m["to"] == ["marketer@example.com"] and "rejected" in m["subject"]
    ]
    assert to_requester and "not this weekend" in to_requester[0]["text"]


def test_device_registration_page_and_service_worker(api):
    call, calls, handler = api
    _submit_form(call, calls, handler)
    link = next(m for m in _mails() if m["to"] == ["alice@example.com"])["links"]["device"]
    page = call("GET", "/v1/approvers/device", query={"t": token_of(link)})
    assert page["statusCode"] == 200 and '"BPUB"' in page["body"]
    csp = page["headers"]["Content-Security-Policy"]
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'nonce="{nonce}"' in page["body"]
    sub = {
        "endpoint": "https://fcm.googleapis.com/fcm/send/alice",
        "keys": {"p256dh": "B" * 87, "auth": "A" * 22},
    }
    done = call("POST", "/v1/approvers/device", {"t": token_of(link), "subscription": sub})
    assert done["statusCode"] == 201, done["body"]
    again = call("POST", "/v1/approvers/device", {"t": token_of(link), "subscription": sub})
    assert again["statusCode"] == 409
    sw = call("GET", "/v1/approvers/sw.js")
    assert sw["statusCode"] == 200 and "showNotification" in sw["body"]


def test_oversized_bodies_are_refused(api):
    call, calls, _ = api
    resp = call("POST", "/v1/requests", "x" * 70_000, FORM_HEADERS)
    assert resp["statusCode"] == 413 and calls.events == []
