"""The approval flow on the local cloud: the real approval function behind the local HTTP
API, SES in moto, the audience released into S3, send_batch sending it through the
local push service — request → e-mails → links → approve → one send, variants and a
control group that receives nothing but is counted."""

from __future__ import annotations

import io
import time
from collections import Counter

import pytest

from pushpipe import topology as t
from pushpipe.audience.format import Variant
from pushpipe.audience.variants import assign
from pushpipe_local.cli.session import Endpoints
from pushpipe_local.sim.audiences import recipient, write_audience
from pushpipe_local.sim.form_client import click, register_device
from pushpipe_local.sim.mailbox import local_mails, wait_for_mails
from pushpipe_local.sim.tenant import post_request, request_status, wait_for_state

from .conftest import SendHarness

TENANT = "approval-shop"
REQUESTER = "marketer@example.com"
APPROVERS = [a.strip() for a in t.APPROVAL.settings[t.ENV_APPROVER_EMAILS].split(",")]
VARIANTS = [
    {"id": "a", "percent": 50},
    {"id": "b", "percent": 30, "title": "B: last hours"},
]
CONTROL = 20


@pytest.fixture
def ep(local_cloud) -> Endpoints:
    return Endpoints.from_cloud(local_cloud)


def _draft(send: SendHarness, key: str, subs: list[dict]) -> None:
    buf = io.BytesIO()
    write_audience(
        buf,
        {"id": "draft", "tenant": TENANT, "message": {"title": "-", "url": "https://x.example"}},
        (recipient(s["id"], s) for s in subs),
    )
    send.s3.put_object(Bucket=send.bucket, Key=key, Body=buf.getvalue())


def _request(ep, campaign: str, key: str) -> str:
    status, answer = post_request(
        ep,
        {
            "tenant": TENANT,
            "campaign": campaign,
            "requester": REQUESTER,
            "title": "Flash sale",
            "body": "30% off until midnight",
            "url": "https://shop.example/flash",
            "audience": {"kind": "file", "key": key},
            "variants": VARIANTS,
            "control_percent": CONTROL,
        },
    )
    assert status == 202, answer
    return answer["id"]


def _mails_of(ep, request_id: str, campaign: str) -> dict[str, dict]:
    mails = wait_for_mails(
        ep.moto_url, lambda m: campaign in m.subject or campaign in m.text, len(APPROVERS) + 1
    )
    return {m.to[0]: m for m in mails}


def _campaign_pushes(send: SendHarness, campaign: str) -> list[dict]:
    """What the campaign's recipients received (approvers' test pushes left out)."""
    return [
        r
        for r in send.received()
        if isinstance(r["payload"], dict)
        and r["payload"].get("campaign") == campaign
        and not r["payload"].get("test")
    ]


def _receptions(send: SendHarness, campaign: str) -> Counter:
    return Counter(r["subscriber"] for r in _campaign_pushes(send, campaign))


def test_request_email_approve_sends_once_with_variants_and_a_control_group(send, ep, campaign_id):
    subs = send.subscribers(1_200)
    key = f"drafts/{TENANT}/{campaign_id}.json"
    _draft(send, key, subs)
    request_id = _request(ep, campaign_id, key)
    mails = _mails_of(ep, request_id, campaign_id)

    # every approver got their own links, the requester a copy without buttons
    assert set(mails) == {*APPROVERS, REQUESTER}
    first, second = (mails[a] for a in APPROVERS[:2])
    assert "1,200 recipients" in first.subject
    assert set(first.links) == {"approve", "reject", "test", "device"}
    assert first.links["approve"].startswith(ep.api_url), "links point at the local API"
    assert '"title": "B: last hours"' in first.text and "control" in first.text
    assert mails[REQUESTER].links == {}

    # the approver's test push reaches their registered device, and nobody else
    device = send.subscribers(1)[0]
    code, _ = register_device(
        first.links["device"], {"endpoint": device["endpoint"], "keys": device["keys"]}
    )
    assert code == 201
    page, result = click(first.links["test"])
    assert page.status == 200 and result is not None and result.status == 200, result
    end = time.time() + 20
    while time.time() < end and not any(r["subscriber"] == device["id"] for r in send.received()):
        time.sleep(0.2)
    tests = [r for r in send.received() if r["subscriber"] == device["id"]]
    assert {r["payload"]["variant"] for r in tests} == {"a", "b"}
    assert all(r["payload"]["test"] for r in tests)
    assert not _receptions(send, campaign_id), "nothing is sent before the approval"

    # approve twice with the same link, and a second approver on top: one release, one send
    page, result = click(first.links["approve"])
    assert page.status == 200 and "Approve the campaign" in page.title
    assert result is not None and result.status == 200 and result.title == "Approved"
    again, _ = click(first.links["approve"])
    assert again.status == 409 and "already used" in again.text
    late, _ = click(second.links["approve"])
    assert late.status == 409 and "no longer waiting" in late.title
    status = wait_for_state(ep, TENANT, request_id, ("sent", "failed"), timeout_s=60)
    assert status["state"] == "sent" and status["released"] == 1_200

    etag = send.s3.head_object(Bucket=send.bucket, Key=status["audience_key"])["ETag"]
    view = send.wait_run(status["audience_key"], etag.strip('"'))
    assert view.state == "done"
    variants = tuple(Variant(v["id"], v["percent"], {}) for v in VARIANTS)
    groups = {s["id"]: assign(campaign_id, s["id"], variants, CONTROL) for s in subs}
    control = {sid for sid, g in groups.items() if g == "control"}
    got = _receptions(send, campaign_id)
    # the control group receives nothing but is counted; everybody else exactly once
    assert set(got) == set(groups) - control
    assert set(got.values()) == {1}
    assert view.counts["control"] == len(control) > 150
    assert view.counts["sent"] == len(subs) - len(control)
    by_variant = Counter(r["payload"]["variant"] for r in _campaign_pushes(send, campaign_id))
    assert by_variant == Counter(g for g in groups.values() if g != "control")
    titles = {
        r["payload"]["variant"]: r["payload"]["title"] for r in _campaign_pushes(send, campaign_id)
    }
    assert titles == {"a": "Flash sale", "b": "B: last hours"}
    # only one audience object was ever written for the request
    listed = send.s3.list_objects_v2(
        Bucket=send.bucket, Prefix=f"{t.AUDIENCE_PREFIX}{TENANT}/requests/"
    )
    assert [o["Key"] for o in listed["Contents"]].count(status["audience_key"]) == 1
    # the requester heard it went out; the trail says who did what
    assert any(
        "approved and sent" in m.subject
        for m in local_mails(ep.moto_url)
        if m.to == [REQUESTER] and campaign_id in m.text
    )
    trail = request_status(ep, TENANT, request_id)["decisions"]
    assert [(d["who"], d["action"]) for d in trail] == [
        (REQUESTER, "request"),
        ("pushpipe", "count"),
        (APPROVERS[0], "device"),
        (APPROVERS[0], "test"),
        (APPROVERS[0], "approve"),
        ("pushpipe", "release"),
    ]


def test_reject_never_sends_and_forged_links_change_nothing(send, ep, campaign_id):
    subs = send.subscribers(50)
    key = f"drafts/{TENANT}/{campaign_id}.json"
    _draft(send, key, subs)
    request_id = _request(ep, campaign_id, key)
    mails = _mails_of(ep, request_id, campaign_id)
    approve = mails[APPROVERS[0]].links["approve"]

    forged, _ = click(approve[:-4] + "AAAA")
    assert forged.status == 400 and "signature" in forged.text
    _, result = click(mails[APPROVERS[1]].links["reject"], reason="wrong discount")
    assert result is not None and result.status == 200 and result.title == "Rejected"
    refused, _ = click(approve)
    assert refused.status == 409 and "rejected" in refused.text

    status = request_status(ep, TENANT, request_id)
    assert status["state"] == "rejected" and status["reason"] == "wrong discount"
    time.sleep(1.0)
    assert send.cloud.runtime.wait_idle(30)
    listed = send.s3.list_objects_v2(
        Bucket=send.bucket, Prefix=f"{t.AUDIENCE_PREFIX}{TENANT}/requests/{request_id}"
    )
    assert listed["KeyCount"] == 0, "a rejected request writes no audience"
    assert not _receptions(send, campaign_id)
    rejected = wait_for_mails(
        ep.moto_url,
        lambda m: m.to == [REQUESTER] and "rejected" in m.subject and campaign_id in m.text,
    )
    assert "wrong discount" in rejected[0].text
