"""WebPushSender against a tiny scripted push service on 127.0.0.1 (no external network).

The service runs in a background thread with its own event loop, so the tests drive
the sender through its synchronous facade exactly as the send_batch Lambda does.
Every push it accepts is decrypted with the subscriber's private key (http_ece), and
its VAPID header verified, so "sent" means a browser could have read it.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import http_ece
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid.jwt import decode as jwt_decode

from pushpipe.push.endpoints import EndpointPolicy
from pushpipe.push.models import MAX_PLAINTEXT, Outcome, PushMessage
from pushpipe.push.outcomes import RetryPolicy
from pushpipe.push.sender import WebPushSender
from pushpipe.push.vapid import VapidSigner, generate_vapid_keypair

SUBJECT = "mailto:ops@example.com"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=2, max_total_wait_s=5)


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class Subscriber:
    """A browser's side of a PushSubscription: real P-256 keys and an auth secret."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        return b64url(
            self.private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        )

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)

    def decrypt(self, body: bytes) -> bytes:
        return http_ece.decrypt(
            body, private_key=self.private_key, auth_secret=self.auth_secret, version="aes128gcm"
        )


@dataclass
class Received:
    path: str
    at: float
    headers: dict[str, str]
    body: bytes
    peer_port: int
    plaintext: bytes | None = None  # set when the body decrypts for its subscriber
    decrypt_error: str | None = None
    answered_at: float | None = None


@dataclass
class Reply:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    delay_s: float = 0.0
    drop: bool = False  # close the connection instead of answering


class PushService:
    """Scripted RFC 8030 receiver: per path, a queue of replies (then 201s)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.subscribers: dict[str, Subscriber] = {}
        self.delay_s = 0.0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        app = web.Application()
        app.router.add_post("/push/{sid}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._started.set()
        self._loop.run_forever()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        sid = request.match_info["sid"]
        peer = request.transport.get_extra_info("peername") if request.transport else None
        record = Received(
            request.path, time.monotonic(), dict(request.headers), body, peer[1] if peer else 0
        )
        subscriber = self.subscribers.get(sid)
        if subscriber is not None:
            try:
                record.plaintext = subscriber.decrypt(body)
            except Exception as exc:  # recorded, asserted on by the tests
                record.decrypt_error = repr(exc)
        self.received.append(record)
        script = self.scripts.get(sid)
        reply = script.pop(0) if script else Reply()
        await asyncio.sleep(reply.delay_s or self.delay_s)
        record.answered_at = time.monotonic()
        if reply.drop and request.transport is not None:
            request.transport.close()  # what a stale keep-alive connection looks like
            raise web.HTTPInternalServerError()  # never reaches the client
        return web.Response(status=reply.status, headers=reply.headers, text=reply.body)

    async def _shutdown(self) -> None:
        await self._runner.cleanup()
        current = asyncio.current_task()
        stragglers = [t for t in asyncio.all_tasks() if t is not current]
        for task in stragglers:  # handlers still sleeping out a scripted delay
            task.cancel()
        await asyncio.gather(*stragglers, return_exceptions=True)

    def endpoint(self, sid: str) -> str:
        return f"http://127.0.0.1:{self.port}/push/{sid}"

    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests_to(self, sid: str) -> list[Received]:
        return [r for r in self.received if r.path == f"/push/{sid}"]

    def max_in_flight(self, prefix: str) -> int:
        """Most requests under /push/<prefix>... being handled at the same moment."""
        events = []
        for r in self.received:
            if r.path.startswith(f"/push/{prefix}") and r.answered_at is not None:
                events += [(r.at, 1), (r.answered_at, -1)]
        level = peak = 0
        for _, step in sorted(events, key=lambda e: (e[0], e[1])):
            level += step
            peak = max(peak, level)
        return peak

    def reset(self) -> None:
        self.received.clear()
        self.scripts.clear()
        self.subscribers.clear()
        self.delay_s = 0.0

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def service() -> Iterator[PushService]:
    svc = PushService()
    yield svc
    svc.stop()


@pytest.fixture
def push(service: PushService) -> PushService:
    service.reset()
    return service


@pytest.fixture(scope="module")
def vapid_keys() -> tuple[str, str]:
    return generate_vapid_keypair()


@pytest.fixture
def signer(vapid_keys: tuple[str, str]) -> VapidSigner:
    return VapidSigner(vapid_keys[0], SUBJECT)


@pytest.fixture
def local_policy(service: PushService) -> EndpointPolicy:
    """The test push service on loopback, allowed by its exact origin (as the local
    cloud's is); every other endpoint goes through the browsers-only policy."""
    return EndpointPolicy.from_settings(origins=[service.origin()])


@pytest.fixture
def make_sender(signer: VapidSigner, local_policy: EndpointPolicy) -> Iterator:
    made: list[WebPushSender] = []

    def make(**kwargs) -> WebPushSender:
        kwargs.setdefault("retry", FAST_RETRY)
        kwargs.setdefault("policy", local_policy)
        kwargs.setdefault("rng", random.Random(3))
        sender = WebPushSender(signer, **kwargs)
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.close()


def message(
    push: PushService,
    sid: str,
    payload: bytes = b'{"title":"hi"}',
    subscriber: Subscriber | None = None,
    **kwargs,
) -> PushMessage:
    sub = subscriber or Subscriber()
    push.subscribers[sid] = sub
    return PushMessage(
        recipient_id=f"r-{sid}",
        endpoint=push.endpoint(sid),
        p256dh=sub.p256dh,
        auth=sub.auth,
        payload=payload,
        **kwargs,
    )


# ------------------------------------------------------------------ delivery


def test_201_is_sent_and_the_browser_can_decrypt_it(push, make_sender, signer) -> None:
    payload = b'{"title":"Sale","body":"50% off","nid":"n-1"}'
    msg = message(push, "a", payload, ttl=3600, urgency="high", topic="campaign-7")
    [result] = make_sender().send([msg])

    assert result.outcome is Outcome.SENT
    assert (result.status, result.reason, result.attempts) == (201, None, 1)
    [got] = push.requests_to("a")
    assert got.decrypt_error is None
    assert got.plaintext == payload
    assert got.headers["Content-Encoding"] == "aes128gcm"
    assert got.headers["TTL"] == "3600"
    assert got.headers["Urgency"] == "high"
    assert got.headers["Topic"] == "campaign-7"
    assert len(got.body) == int(got.headers["Content-Length"])
    scheme, _, params = got.headers["Authorization"].partition(" ")
    assert scheme == "vapid"
    parts = dict(p.strip().split("=", 1) for p in params.split(","))
    assert parts["k"] == signer.public_key
    claims = jwt_decode(parts["t"], parts["k"])  # signature checked here
    assert claims["aud"] == push.origin()
    assert claims["sub"] == SUBJECT
    assert 0 < claims["exp"] - time.time() <= 24 * 3600


def test_200_is_sent_too(push, make_sender) -> None:
    push.scripts["ok200"] = [Reply(200)]
    [result] = make_sender().send([message(push, "ok200")])
    assert (result.outcome, result.status, result.attempts) == (Outcome.SENT, 200, 1)


def test_default_headers_and_no_topic(push, make_sender) -> None:
    [result] = make_sender().send([message(push, "plain")])
    assert result.outcome is Outcome.SENT
    [got] = push.requests_to("plain")
    assert got.headers["TTL"] == "86400"
    assert got.headers["Urgency"] == "normal"
    assert "Topic" not in got.headers


def test_a_batch_keeps_its_order_and_every_payload_decrypts(push, make_sender) -> None:
    msgs = [message(push, f"b{i}", f'{{"n":{i}}}'.encode()) for i in range(60)]
    results = make_sender(concurrency=8).send(msgs)
    assert [r.recipient_id for r in results] == [m.recipient_id for m in msgs]
    assert all(r.outcome is Outcome.SENT for r in results)
    assert len(push.received) == 60
    for i in range(60):
        [got] = push.requests_to(f"b{i}")
        assert got.plaintext == f'{{"n":{i}}}'.encode()


def test_largest_payload_fits_one_4096_byte_record(push, make_sender) -> None:
    payload = os.urandom(MAX_PLAINTEXT)
    [result] = make_sender().send([message(push, "max", payload)])
    assert result.outcome is Outcome.SENT
    [got] = push.requests_to("max")
    assert len(got.body) == 4096
    assert got.plaintext == payload


def test_one_jwt_per_origin_for_a_whole_batch(push, make_sender, signer) -> None:
    make_sender().send([message(push, f"j{i}") for i in range(30)])
    assert len({r.headers["Authorization"] for r in push.received}) == 1
    assert signer.signatures == 1


# ------------------------------------------------------------------ feedback


def test_410_is_pruned_with_exactly_one_request(push, make_sender) -> None:
    push.scripts["gone"] = [Reply(410, body="push subscription has unsubscribed or expired")]
    [result] = make_sender().send([message(push, "gone")])
    assert result.outcome is Outcome.PRUNED
    assert (result.status, result.attempts) == (410, 1)
    assert result.reason is not None and "unsubscribed" in result.reason
    assert len(push.requests_to("gone")) == 1


def test_404_is_pruned(push, make_sender) -> None:
    push.scripts["nf"] = [Reply(404)]
    [result] = make_sender().send([message(push, "nf")])
    assert (result.outcome, result.status) == (Outcome.PRUNED, 404)
    assert len(push.requests_to("nf")) == 1


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (413, "payload too big", "413 Request Entity Too Large: payload too big"),
        (400, "bad TTL header", "400 Bad Request: bad TTL header"),
        (403, "VAPID key mismatch", "403 Forbidden: VAPID key mismatch"),
        (401, "", "401 Unauthorized"),
        (302, "", "302 Found"),
    ],
)
def test_client_errors_fail_with_reason_and_one_request(
    push, make_sender, status: int, body: str, expected: str
) -> None:
    headers = {"Location": push.endpoint("elsewhere")} if status == 302 else {}
    push.scripts["bad"] = [Reply(status, headers, body)]
    [result] = make_sender().send([message(push, "bad")])
    assert result.outcome is Outcome.FAILED
    assert (result.status, result.reason, result.attempts) == (status, expected, 1)
    assert len(push.received) == 1


def test_429_honours_retry_after_then_sends(push, make_sender) -> None:
    push.scripts["busy"] = [Reply(429, {"Retry-After": "1"}, "slow down")]
    [result] = make_sender().send([message(push, "busy", b"again")])
    assert (result.outcome, result.status, result.attempts) == (Outcome.SENT, 201, 2)
    first, second = push.requests_to("busy")
    assert second.at - first.at >= 0.95
    assert second.plaintext == b"again"


def test_a_waiting_retry_does_not_hold_up_the_batch(push, make_sender) -> None:
    push.scripts["slow"] = [Reply(429, {"Retry-After": "1"})]
    msgs = [message(push, "slow")] + [message(push, f"n{i}") for i in range(5)]
    results = make_sender(concurrency=1).send(msgs)  # one request in flight at a time
    assert all(r.outcome is Outcome.SENT for r in results)
    first, second = push.requests_to("slow")
    others = [push.requests_to(f"n{i}")[0].at for i in range(5)]
    # The only worker moved on to the rest of the batch while "slow" waited its second.
    assert first.at < min(others) and max(others) < second.at


def test_503_is_retried_then_deferred_with_the_reason(push, make_sender) -> None:
    push.scripts["down"] = [Reply(503, body="maintenance")] * 5
    [result] = make_sender().send([message(push, "down")])
    assert result.outcome is Outcome.DEFERRED  # transient: the caller carries it
    assert result.status == 503
    assert result.attempts == 3
    assert result.reason == (
        "retries exhausted after 3 attempts: 503 Service Unavailable: maintenance"
    )
    assert len(push.requests_to("down")) == 3


def test_503_then_201_is_sent(push, make_sender) -> None:
    push.scripts["blip"] = [Reply(503), Reply(502)]
    [result] = make_sender().send([message(push, "blip")])
    assert (result.outcome, result.attempts) == (Outcome.SENT, 3)


def test_retry_after_longer_than_allowed_defers_without_waiting(push, make_sender) -> None:
    push.scripts["later"] = [Reply(429, {"Retry-After": "3600"})]
    started = time.monotonic()
    [result] = make_sender().send([message(push, "later")])
    assert time.monotonic() - started < 60  # it did not sit out the hour
    assert result.outcome is Outcome.DEFERRED  # transient: the caller carries it
    assert result.reason is not None and "3600s" in result.reason
    assert len(push.requests_to("later")) == 1


def test_a_timeout_is_retried(push, make_sender) -> None:
    push.scripts["hang"] = [Reply(201, delay_s=5.0)]
    [result] = make_sender(timeout_s=1.0).send([message(push, "hang", b"late")])
    assert (result.outcome, result.attempts) == (Outcome.SENT, 2)
    assert [r.plaintext for r in push.requests_to("hang")] == [b"late", b"late"]


def test_timeouts_exhaust_into_a_deferral(push, make_sender) -> None:
    push.scripts["dead"] = [Reply(201, delay_s=1.0)] * 3
    [result] = make_sender(timeout_s=0.1).send([message(push, "dead")])
    assert result.outcome is Outcome.DEFERRED  # transient: the caller carries it
    assert result.status is None
    assert result.attempts == 3
    assert result.reason is not None and "timeout" in result.reason


def test_a_dropped_connection_is_retried_at_once(push, make_sender) -> None:
    push.scripts["stale"] = [Reply(drop=True)]
    slow_backoff = RetryPolicy(max_attempts=3, base_delay_s=10, max_total_wait_s=30)
    [result] = make_sender(retry=slow_backoff).send([message(push, "stale", b"hello")])
    assert (result.outcome, result.attempts) == (Outcome.SENT, 2)
    first, second = push.requests_to("stale")
    assert second.at - first.at < 5  # not the 8-10 s backoff
    assert second.plaintext == b"hello"


def test_connection_refused_is_retried_then_deferred(push, make_sender) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sub = Subscriber()
    msg = PushMessage("r-x", f"http://127.0.0.1:{port}/push/x", sub.p256dh, sub.auth, b"x")
    policy = EndpointPolicy.from_settings(origins=[f"http://127.0.0.1:{port}"])
    [result] = make_sender(policy=policy).send([msg])
    assert result.outcome is Outcome.DEFERRED  # transient: the caller carries it
    assert result.attempts == 3
    assert result.reason is not None and "connection error" in result.reason


def test_budget_stops_retrying_and_defers_when_the_batch_is_out_of_time(push, make_sender) -> None:
    push.scripts["tight"] = [Reply(503, {"Retry-After": "20"})]
    patient = RetryPolicy(max_attempts=5, max_delay_s=60, max_total_wait_s=120)
    started = time.monotonic()
    [result] = make_sender(retry=patient).send([message(push, "tight")], budget_s=2)
    assert time.monotonic() - started < 15  # gave up instead of waiting the 20 s
    assert result.outcome is Outcome.DEFERRED  # transient: the caller carries it
    assert result.reason is not None and "out of time" in result.reason
    assert len(push.requests_to("tight")) == 1


def test_a_mixed_batch_gets_one_verdict_per_message(push, make_sender) -> None:
    push.scripts.update(
        {
            "m-gone": [Reply(410)],
            "m-flaky": [Reply(503), Reply(429, {"Retry-After": "0"})],
            "m-bad": [Reply(400, body="bad header")],
        }
    )
    for i in range(12):
        push.scripts[f"m-retry{i}"] = [Reply(502)]
    msgs = [
        message(push, "m-ok"),
        message(push, "m-gone"),
        message(push, "m-flaky"),
        message(push, "m-bad"),
        message(push, "m-big", b"x" * 4000),
        *(message(push, f"m-retry{i}") for i in range(12)),
    ]
    results = make_sender(concurrency=4).send(msgs)
    summary = [(r.recipient_id, r.outcome, r.attempts) for r in results[:5]]
    assert summary == [
        ("r-m-ok", Outcome.SENT, 1),
        ("r-m-gone", Outcome.PRUNED, 1),
        ("r-m-flaky", Outcome.SENT, 3),
        ("r-m-bad", Outcome.FAILED, 1),
        ("r-m-big", Outcome.FAILED, 0),
    ]
    assert all((r.outcome, r.attempts) == (Outcome.SENT, 2) for r in results[5:])
    assert len(push.received) == 1 + 1 + 3 + 1 + 24


# ------------------------------------------------------------------ bad input


def test_oversized_payload_never_leaves(push, make_sender) -> None:
    msgs = [message(push, "big", b"x" * (MAX_PLAINTEXT + 1)), message(push, "fine")]
    big, fine = make_sender().send(msgs)
    assert big.outcome is Outcome.FAILED
    assert big.reason is not None and big.reason.startswith("payload too large")
    assert "3994 bytes" in big.reason
    assert (big.status, big.attempts) == (None, 0)
    assert push.requests_to("big") == []
    assert fine.outcome is Outcome.SENT


def _bad_point() -> str:
    raw = bytes([4]) + b"\x01" * 64  # right length and prefix, not on the curve
    return b64url(raw)


@pytest.mark.parametrize(
    ("field_name", "value", "reason"),
    [
        ("p256dh", "", "p256dh is missing"),
        ("p256dh", "%%%not-base64%%%", "p256dh is not base64url"),
        (
            "p256dh",
            "BAD key with spaces and 65 bytes worth of text to look long enough!!!",
            "p256dh is not base64url",
        ),
        ("auth", "ab$cdefghijklmnopqrstu", "auth is not base64url"),
        ("p256dh", b64url(b"\x04" * 33), "uncompressed P-256 point"),
        ("p256dh", _bad_point(), "p256dh rejected"),
        ("auth", b64url(b"short"), "auth must be 16 bytes"),
        ("endpoint", "not a url", "endpoint refused: endpoint has spaces"),
        ("endpoint", "ftp://push.example.com/x", "endpoint refused: endpoint must be https"),
        ("endpoint", "https://169.254.169.254/latest", "link-local address"),
        ("endpoint", "http://127.0.0.1:9001/2018-06-01/runtime", "must be https"),
        ("endpoint", "https://2130706433/x", "127.0.0.1 is a loopback address"),
        ("endpoint", "https://push.example.com/x", "not a browser push service"),
    ],
)
def test_invalid_subscription_fails_without_a_request(
    push, make_sender, field_name: str, value: str, reason: str
) -> None:
    good = message(push, "k")
    bad = PushMessage(**{**{f: getattr(good, f) for f in good.__slots__}, field_name: value})
    [result] = make_sender().send([bad])
    assert result.outcome is Outcome.FAILED
    assert result.reason is not None and reason in result.reason
    assert result.attempts == 0
    assert push.received == []


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"ttl": -1}, "invalid TTL"),
        ({"urgency": "urgent"}, "invalid urgency"),
        ({"topic": "has spaces"}, "invalid topic"),
        ({"topic": "t" * 33}, "invalid topic"),
        ({"payload": b""}, "empty payload"),
    ],
)
def test_invalid_message_fields_fail_without_a_request(
    push, make_sender, kwargs: dict, reason: str
) -> None:
    [result] = make_sender().send([message(push, "f", **kwargs)])
    assert result.outcome is Outcome.FAILED
    assert result.reason is not None and reason in result.reason
    assert push.received == []


def test_ttl_beyond_28_days_is_capped(push, make_sender) -> None:
    make_sender().send([message(push, "ttl", ttl=90 * 24 * 3600)])
    [got] = push.requests_to("ttl")
    assert got.headers["TTL"] == str(28 * 24 * 3600)


def test_plain_base64_keys_from_a_careless_client_still_work(push, make_sender) -> None:
    sub = Subscriber()
    msg = message(push, "std", b"ok", subscriber=sub)
    raw = base64.urlsafe_b64decode(sub.p256dh + "==")
    std = base64.b64encode(raw).decode()  # '+', '/' and '=' padding
    [result] = make_sender().send(
        [PushMessage(msg.recipient_id, msg.endpoint, std, sub.auth, b"ok")]
    )
    assert result.outcome is Outcome.SENT
    assert push.requests_to("std")[0].plaintext == b"ok"


# ------------------------------------------------------------------ dry run


def test_dry_run_sends_only_to_the_allow_list(push, make_sender) -> None:
    msgs = [message(push, f"d{i}") for i in range(6)]
    sender = make_sender(dry_run=True, allow_list=frozenset({"r-d2", "r-d4"}))
    results = sender.send(msgs)
    by_id = {r.recipient_id: r for r in results}
    assert by_id["r-d2"].outcome is Outcome.SENT
    assert by_id["r-d4"].outcome is Outcome.SENT
    skipped = [r for r in results if r.outcome is Outcome.SKIPPED]
    assert {r.recipient_id for r in skipped} == {"r-d0", "r-d1", "r-d3", "r-d5"}
    assert all(r.attempts == 0 and r.status is None for r in skipped)
    assert sorted(r.path for r in push.received) == ["/push/d2", "/push/d4"]


def test_dry_run_still_validates_and_encrypts(push, make_sender, monkeypatch) -> None:
    from pywebpush import WebPusher

    encoded: list[bytes] = []
    original = WebPusher.encode

    def spy(self, data, content_encoding="aes128gcm"):
        encoded.append(data)
        return original(self, data, content_encoding)

    monkeypatch.setattr(WebPusher, "encode", spy)
    msgs = [message(push, "ok", b"payload"), message(push, "big", b"x" * 5000)]
    ok, big = make_sender().send(msgs, dry_run=True)
    assert ok.outcome is Outcome.SKIPPED
    assert big.outcome is Outcome.FAILED and "payload too large" in (big.reason or "")
    assert encoded == [b"payload"]
    assert push.received == []


def test_per_batch_dry_run_overrides_the_sender(push, make_sender) -> None:
    sender = make_sender(dry_run=True)
    [live] = sender.send([message(push, "live")], dry_run=False)
    [dry] = sender.send([message(push, "dry")])
    assert (live.outcome, dry.outcome) == (Outcome.SENT, Outcome.SKIPPED)
    assert [r.path for r in push.received] == ["/push/live"]


# ------------------------------------------------------------------ machinery


def test_concurrency_bounds_the_requests_in_flight(push, make_sender) -> None:
    push.delay_s = 0.1
    results = make_sender(concurrency=3).send([message(push, f"c{i}") for i in range(15)])
    assert all(r.outcome is Outcome.SENT for r in results)
    assert push.max_in_flight("c") == 3


def test_connections_and_loop_survive_between_batches(push, make_sender) -> None:
    sender = make_sender(concurrency=1)
    sender.send([message(push, "w1")])
    loop = sender._loop
    sender.send([message(push, "w2")])  # a warm invocation
    assert sender._loop is loop
    ports = {r.peer_port for r in push.received}
    assert len(ports) == 1  # the same keep-alive connection carried both


def test_send_runs_on_the_loop_the_factory_makes(push, make_sender) -> None:
    made: list[asyncio.AbstractEventLoop] = []

    def factory() -> asyncio.AbstractEventLoop:
        made.append(asyncio.new_event_loop())
        return made[-1]

    sender = make_sender(loop_factory=factory)
    sender.send([message(push, "lf1")])
    sender.send([message(push, "lf2")])
    assert len(made) == 1 and sender._loop is made[0]
    sender.close()
    assert made[0].is_closed()


def test_close_then_send_again_starts_afresh(push, make_sender) -> None:
    sender = make_sender()
    sender.send([message(push, "c1")])
    sender.close()
    [result] = sender.send([message(push, "c2")])
    assert result.outcome is Outcome.SENT
    sender.close()
    sender.close()  # idempotent


def test_empty_batch_makes_no_session(make_sender) -> None:
    sender = make_sender()
    assert sender.send([]) == []
    assert sender._session is None


def test_send_async_works_inside_an_event_loop(push, signer, local_policy) -> None:
    msgs = [message(push, f"as{i}") for i in range(4)]

    async def run() -> list:
        async with WebPushSender(signer, retry=FAST_RETRY, policy=local_policy) as sender:
            with pytest.raises(RuntimeError, match="send_async"):
                sender.send(msgs)
            return await sender.send_async(msgs)

    results = asyncio.run(run())
    assert [r.outcome for r in results] == [Outcome.SENT] * 4


def test_constructor_rejects_nonsense(signer) -> None:
    with pytest.raises(ValueError, match="concurrency"):
        WebPushSender(signer, concurrency=0)
    with pytest.raises(ValueError, match="timeout_s"):
        WebPushSender(signer, timeout_s=0)
    assert WebPushSender(signer, max_attempts=7).retry.max_attempts == 7


class _RebindingDns(AbstractResolver):
    """DNS that answers a private address for a push-service name (a rebinding attack)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.asked: list[str] = []

    async def resolve(self, host, port=0, family=socket.AF_INET):
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": self.address,
                "port": port,
                "family": socket.AF_INET6 if ":" in self.address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
        ]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "address, why",
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "not a globally routable"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("fd00::1", "private"),
    ],
)
def test_dns_that_answers_a_private_address_is_refused_at_connect_time(
    make_sender, address, why
) -> None:
    dns = _RebindingDns(address)
    sub = Subscriber()
    msg = PushMessage(
        "r-rebind", "https://rebind.fcm.googleapis.com/fcm/send/x", sub.p256dh, sub.auth, b"x"
    )
    [result] = make_sender(policy=EndpointPolicy(), dns=dns).send([msg])
    assert dns.asked == ["rebind.fcm.googleapis.com"]
    assert result.outcome is Outcome.FAILED and result.attempts == 1  # permanent, no retry
    assert (
        result.reason is not None and "endpoint refused" in result.reason and why in result.reason
    )


# ------------------------------------------------------------------ per origin


def test_a_429_holds_back_the_whole_origin_not_just_its_message(push, make_sender) -> None:
    push.scripts["o-first"] = [Reply(429, {"Retry-After": "1"})]
    msgs = [message(push, "o-first"), *(message(push, f"o-{i}") for i in range(6))]
    results = make_sender(concurrency=1).send(msgs)
    assert [r.outcome for r in results] == [Outcome.SENT] * 7
    first_429 = min(r.at for r in push.received if r.path.endswith("/o-first"))
    others = [r.at for r in push.received if not r.path.endswith("/o-first")]
    # nobody else asked the origin again before its Retry-After had passed
    assert len(others) == 6 and min(others) - first_429 >= 0.95
    assert len(push.received) == 8  # one 429, then each message once


def test_repeated_server_errors_open_a_circuit_for_that_origin_only(
    push, signer, local_policy
) -> None:
    from pushpipe.push.origins import FAILURES_TO_OPEN

    other = PushService()
    try:
        policy = EndpointPolicy.from_settings(origins=[push.origin(), other.origin()])
        down = [f"down{i}" for i in range(FAILURES_TO_OPEN + 15)]
        for sid in down:
            push.scripts[sid] = [Reply(503)] * 10
        msgs = [message(push, sid) for sid in down] + [message(other, f"up{i}") for i in range(5)]
        with WebPushSender(signer, concurrency=1, retry=FAST_RETRY, policy=policy) as sender:
            results = sender.send(msgs)
        by_id = {r.recipient_id: r for r in results}
        assert all(by_id[f"r-up{i}"].outcome is Outcome.SENT for i in range(5))
        deferred = [by_id[f"r-{sid}"] for sid in down]
        assert all(r.outcome is Outcome.DEFERRED for r in deferred)  # carried, not failed
        assert any("circuit open" in (r.reason or "") for r in deferred)
        # the open circuit spared the failing origin most of the requests
        assert len(push.received) < len(down) * FAST_RETRY.max_attempts
    finally:
        other.stop()


def test_throttles_travel_between_senders_as_wall_clock_times(signer) -> None:
    from pushpipe.push.origins import OriginGates

    a, b = OriginGates(), OriginGates()
    a.throttled("https://fcm.googleapis.com", 30.0)
    shared = a.throttles()
    assert set(shared) == {"https://fcm.googleapis.com"}
    assert shared["https://fcm.googleapis.com"] == pytest.approx(time.time() + 30, abs=0.5)
    b.adopt(shared)
    assert b.wait_s("https://fcm.googleapis.com") == pytest.approx(30, abs=0.5)
    b.adopt({"https://old.example": time.time() - 5})  # over already: ignored
    assert b.wait_s("https://old.example") == 0
