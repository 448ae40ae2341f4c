"""ping_handler in-process with moto: what is accepted, what is refused, and that nothing
refused reaches the stream."""

from __future__ import annotations

import json
import time

import boto3
import pytest
from moto import mock_aws

from pushpipe.pings import wiring as ping_wiring
from pushpipe.shared.tokens import PingClaims, SigningKeys, sign
from tests.support.events import FakeContext, http_event
from tests.support.pings import REGION, provision, read_stream, set_env, token


@pytest.fixture
def api():
    with mock_aws():
        p = provision("unit")
        set_env(p)
        ping_wiring.reset()
        from functions.ping_handler.handler import handler

        def call(event):
            resp = handler(event, FakeContext())
            body = resp.get("body")
            return resp["statusCode"], (json.loads(body) if body else None), resp

        yield call, p
        ping_wiring.reset()


def stream_records(p) -> list[dict]:
    return [json.loads(r["Data"]) for r in read_stream(p.pings_stream)]


def test_a_delivery_ping_is_verified_and_put_on_the_stream(api):
    call, p = api
    tok, nid = token(subscriber="sub-1", variant="b")
    status, body, resp = call(
        http_event(
            "POST",
            "/v1/pings",
            {"type": "delivered", "token": tok, "ts": "2026-01-01T00:00:00Z"},
            headers={"Origin": "https://shop.example"},
        )
    )
    assert (status, body) == (202, {"accepted": 1})
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*"
    [record] = stream_records(p)
    assert record["notification"] == nid and record["variant"] == "b"
    assert record["type"] == "delivered" and record["subscriber"] == "sub-1"
    assert record["seen_at"] == "2026-01-01T00:00:00.000Z"
    assert abs(time.time() - _epoch(record["ts"])) < 60


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_text_plain_pings_are_read_as_json(api):
    """sw.js sends text/plain so the browser needs no CORS preflight per ping."""
    call, p = api
    tok, _ = token()
    status, _, _ = call(
        http_event(
            "POST",
            "/v1/pings",
            json.dumps({"type": "clicked", "token": tok}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
    )
    assert status == 202
    assert [r["type"] for r in stream_records(p)] == ["clicked"]


def test_a_batch_is_all_or_nothing(api):
    call, p = api
    good = [{"type": "delivered", "token": token()[0]} for _ in range(3)]
    status, body, _ = call(http_event("POST", "/v1/pings", {"pings": good}))
    assert (status, body["accepted"]) == (202, 3)
    forged = good[0]["token"][:-4] + "AAAA"
    status, body, _ = call(
        http_event("POST", "/v1/pings", {"pings": [*good, {"type": "clicked", "token": forged}]})
    )
    assert status == 401 and body["error"] == "token_invalid"
    assert len(stream_records(p)) == 3


@pytest.mark.parametrize(
    ("make", "status", "error"),
    [
        pytest.param(lambda: token()[0][:-3] + "xyz", 401, "token_invalid", id="forged-signature"),
        pytest.param(lambda: "v1.k1.e30.AAAA", 401, "token_invalid", id="garbage"),
        pytest.param(
            lambda: sign(
                PingClaims("acme", "c", "a", "n" * 24, "s", int(time.time()) + 60),
                SigningKeys(active="k9", keys={"k9": b"z" * 32}),
            ),
            401,
            "token_invalid",
            id="unknown-key",
        ),
        pytest.param(
            lambda: token(exp=int(time.time()) - 1)[0], 403, "token_expired", id="expired"
        ),
    ],
)
def test_bad_tokens_are_refused_and_nothing_reaches_the_stream(api, make, status, error):
    call, p = api
    got, body, _ = call(http_event("POST", "/v1/pings", {"type": "delivered", "token": make()}))
    assert (got, body["error"]) == (status, error)
    assert stream_records(p) == []


def test_a_token_moved_to_another_tenant_is_forged(api):
    """Cross-tenant: rewrite the claims of a valid acme token to globex, keep the MAC."""
    import base64

    call, p = api
    tok, _ = token(tenant="acme")
    v, kid, body, mac = tok.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["tenant"] = "globex"
    moved = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    status, resp, _ = call(
        http_event("POST", "/v1/pings", {"type": "delivered", "token": f"{v}.{kid}.{moved}.{mac}"})
    )
    assert (status, resp["error"]) == (401, "token_invalid")
    assert stream_records(p) == []


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ('{"type": "delivered", "token": ', 400, "malformed_json"),
        ({"type": "seen", "token": "v1.k1.abcdefgh.ijkl"}, 422, "invalid_request"),
        ({"type": "delivered"}, 422, "invalid_request"),
        ({"pings": []}, 422, "invalid_request"),
        ({"type": "delivered", "token": "v1.k1.abcdefgh.ijkl", "extra": 1}, 422, "invalid_request"),
    ],
)
def test_malformed_requests_get_a_clear_error(api, body, status, error):
    call, p = api
    got, resp, _ = call(
        http_event("POST", "/v1/pings", body, headers={"content-type": "application/json"})
    )
    assert (got, resp["error"]) == (status, error)
    assert resp["message"]
    assert stream_records(p) == []


def test_over_16_kb_is_refused_unparsed(api):
    call, p = api
    pings = [{"type": "delivered", "token": token()[0] + "x" * 1500} for _ in range(12)]
    status, body, resp = call(http_event("POST", "/v1/pings", {"pings": pings}))
    assert (status, body["error"]) == (413, "too_large")
    assert "16384" in body["message"]
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*"
    assert stream_records(p) == []


def test_ping_preflights_are_open_to_any_origin(api):
    """Pings come from every shop's service worker (subscription routes, bound to the
    tenants' origins, are tested in tests/unit/subscriptions)."""
    call, _ = api
    status, _, resp = call(
        http_event(
            "OPTIONS",
            "/v1/pings",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
        )
    )
    assert status == 204
    assert resp["headers"]["Access-Control-Allow-Origin"] == "*"


def test_openapi_is_generated_from_the_code(api):
    call, _ = api
    status, doc, _ = call(http_event("GET", "/openapi.json"))
    assert status == 200
    paths = doc["paths"]
    assert {"/v1/pings", "/v1/orders", "/v1/subscriptions"} <= set(paths)
    assert "/v1/tenants/{tenant}/campaigns/{campaign}/report" in paths
    body_schema = json.dumps(paths["/v1/pings"]["post"]["requestBody"])
    assert "PingIn" in body_schema and "PingBatchIn" in body_schema
    assert set(doc["components"]["schemas"]["PingType"]["enum"]) == {
        "delivered",
        "clicked",
        "closed",
    }


def test_stream_failures_answer_503(api, monkeypatch):
    call, _ = api
    from botocore.exceptions import ClientError

    ports = ping_wiring.api_ports()

    def boom(**kwargs):
        raise ClientError(
            {"Error": {"Code": "ResourceNotFoundException", "Message": "no stream"}}, "PutRecords"
        )

    monkeypatch.setattr(ports.writer.client, "put_records", boom)
    status, body, _ = call(
        http_event("POST", "/v1/pings", {"type": "delivered", "token": token()[0]})
    )
    assert (status, body["error"]) == (503, "store_unavailable")
    assert "no stream" in body["message"]


def test_kinesis_partial_failures_are_retried(api, monkeypatch):
    call, p = api
    ports = ping_wiring.api_ports()
    real = ports.writer.client.put_records
    calls = []

    def flaky(**kwargs):
        calls.append(len(kwargs["Records"]))
        if len(calls) == 1:
            out = real(StreamName=kwargs["StreamName"], Records=kwargs["Records"][:1])
            return {
                "FailedRecordCount": len(kwargs["Records"]) - 1,
                "Records": out["Records"]
                + [{"ErrorCode": "ProvisionedThroughputExceededException"}]
                * (len(kwargs["Records"]) - 1),
            }
        return real(**kwargs)

    monkeypatch.setattr(ports.writer.client, "put_records", flaky)
    pings = [{"type": "delivered", "token": token()[0]} for _ in range(3)]
    status, _, _ = call(http_event("POST", "/v1/pings", {"pings": pings}))
    assert status == 202
    assert calls == [3, 2]
    assert len(stream_records(p)) == 3
    assert boto3.client("kinesis", region_name=REGION)  # the stream is still there
