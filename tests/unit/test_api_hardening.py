"""Every route of the HTTP API answers a hostile body with a 4xx and a reason, never a
5xx: malformed JSON, JSON nested far deeper than any parser should follow, bodies over
the size limit, bytes that are not UTF-8, and a JSON value of the wrong type. A 5xx is a
Lambda error (it trips the errors alarm and can roll back a canary), so a caller must
not be able to cause one with a body."""

from __future__ import annotations

import json

import pytest
from moto import mock_aws

from pushpipe import topology as t
from pushpipe.approval import wiring as approval_wiring
from pushpipe.pings import wiring as ping_wiring
from tests.support import approval as approval_support
from tests.support.events import FakeContext, http_event
from tests.support.pings import provision, set_env

DEPTH = 2_000  # at most 12 KB: under every route's size limit, far over any parser's depth
HOSTILE: dict[str, tuple[bytes, str]] = {
    "malformed-json": (b'{"type": "delivered", "token": ', "application/json"),
    "deeply-nested-array": (b"[" * DEPTH + b"]" * DEPTH, "application/json"),
    "deeply-nested-object": (b'{"a":' * DEPTH + b"1" + b"}" * DEPTH, "application/json"),
    "nested-in-field": (
        b'{"tenant": "acme", "pings": ' + b"[" * DEPTH + b"]" * DEPTH + b"}",
        "application/json",
    ),
    "oversized": (b'{"x": "' + b"a" * (300 * 1024) + b'"}', "application/json"),
    "invalid-utf8": (b'{"tenant": "\xff\xfe\xc3\x28"}', "application/json"),
    "invalid-utf8-form": (b"tenant=\xff\xfe&key=\xc3\x28", "application/x-www-form-urlencoded"),
    "invalid-utf8-text": (b"\xff\xfe\xfd", "text/plain"),
    "wrong-type": (b"[1, 2, 3]", "application/json"),
    "json-scalar": (b'"just a string"', "application/json"),
    "json-null": (b"null", "application/json"),
    "huge-number": (b'{"ttl": 1' + b"0" * 5000 + b"}", "application/json"),
}


def _concrete(path: str) -> str:
    return (
        path.replace("{tenant}", "acme")
        .replace("{campaign}", "c1")
        .replace("{id}", "s1")
        .replace("{action}", "approve")
    )


@pytest.fixture(scope="module")
def handlers():
    with mock_aws(), pytest.MonkeyPatch.context() as monkeypatch:
        p = provision("unit")
        set_env(p)
        ping_wiring.reset()
        from functions.ping_handler.handler import handler as ping_handler

        approval_support.provision()
        approval_support.deploy_handler_env(
            monkeypatch,
            "https://api.example",
            "alice@example.com",
            {"acme": "acme-report-key-0123456789"},
            vapid_public="BPUB",
        )
        approval_wiring.reset()
        from functions.approval.handler import handler as approval_handler

        by_function = {"ping_handler": (ping_handler, p.env()), "approval": (approval_handler, {})}

        def call(route: t.Route, body: bytes, content_type: str) -> dict:
            fn, env = by_function[route.function]
            for k, v in env.items():
                monkeypatch.setenv(k, v)
            ping_wiring.reset()
            approval_wiring.reset()
            event = http_event(
                route.method,
                _concrete(route.path),
                body,
                headers={"content-type": content_type, "authorization": "Bearer x"},
                query={"t": "x", "tenant": "acme"},
            )
            return fn(event, FakeContext())

        yield call


ROUTES = [r for r in t.ROUTES if r.method in ("POST", "PUT", "PATCH", "DELETE", "GET")]


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_answers_a_hostile_body_with_a_4xx_and_a_reason(handlers, route, kind):
    body, content_type = HOSTILE[kind]
    resp = handlers(route, body, content_type)
    status = resp["statusCode"]
    if route.method in ("GET", "DELETE"):  # they read no body: whatever they answer, no 5xx
        assert status < 500, resp
        return
    assert 400 <= status < 500, resp
    assert json.loads(resp["body"])["message"] if "json" in _ctype(resp) else resp["body"]
    if route.method == "POST" and (kind.startswith("deeply") or kind == "nested-in-field"):
        assert status == 400 and "deeper" in resp["body"], resp


def _ctype(resp: dict) -> str:
    headers = {k.lower(): v for k, v in (resp.get("headers") or {}).items()}
    return headers.get("content-type", "")


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_no_response_is_recorded_in_a_trace(handlers, route, monkeypatch):
    """Link tokens, report data and keys travel in responses: X-Ray must never keep one."""
    from aws_lambda_powertools import Tracer

    recorded: list = []
    original = Tracer._add_response_as_metadata

    def spy(self, method_name=None, data=None, subsegment=None, capture_response=None):
        recorded.append(capture_response)
        return original(self, method_name, data, subsegment, capture_response)

    monkeypatch.setattr(Tracer, "_add_response_as_metadata", spy)
    handlers(route, b"{}", "application/json")
    assert recorded and not any(recorded)
