"""The local push service over real HTTP, driven by pywebpush and py_vapid.

One service runs in a background thread for the module (``PushServiceThread``); each test
resets its deliveries, counters and faults and makes the subscribers it needs.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from py_vapid import Vapid
from pywebpush import WebPusher, WebPushException, webpush

from pushpipe_local.pushservice import (
    PushServiceThread,
    b64url_decode,
    generate_subscribers,
    start_pushservice_process,
)

CONTACT = "mailto:ops@example.com"

# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def push_service() -> Iterator[PushServiceThread]:
    with PushServiceThread(port=0) as service:
        yield service


@pytest.fixture(autouse=True)
def _fresh_service(push_service: PushServiceThread) -> None:
    push_service.reset()


@pytest.fixture(scope="module")
def vapid() -> Vapid:
    key = Vapid()
    key.generate_keys()
    return key


def subscribe(service: PushServiceThread, count: int) -> list[dict[str, Any]]:
    response = requests.post(f"{service.url}/_admin/subscriptions", json={"count": count})
    assert response.status_code == 201, response.text
    return response.json()["subscriptions"]


def send(
    subscription: dict[str, Any], payload: Any, vapid: Vapid, **kwargs: Any
) -> requests.Response:
    """One push exactly as an application server sends it with pywebpush."""
    kwargs.setdefault("ttl", 60)
    kwargs.setdefault("vapid_claims", {"sub": CONTACT})
    return webpush(
        subscription,
        json.dumps(payload) if not isinstance(payload, str) else payload,
        vapid_private_key=vapid,
        **kwargs,
    )


def status_of(call) -> int:
    """The HTTP status of a push, whether pywebpush returned or raised."""
    try:
        return call().status_code
    except WebPushException as exc:
        return exc.status_code


def pick(mapping: dict[str, Any], *keys: str) -> tuple[Any, ...]:
    return tuple(mapping[k] for k in keys)


def admin(service: PushServiceThread, method: str, path: str, **kwargs: Any) -> Any:
    response = requests.request(method, f"{service.url}/_admin/{path}", timeout=10, **kwargs)
    assert response.ok, response.text
    return response.json() if response.content else None


# ---------------------------------------------------------------- subscriptions and delivery


def test_subscriptions_look_like_a_browsers(push_service: PushServiceThread) -> None:
    subs = subscribe(push_service, 3)

    assert len({s["id"] for s in subs}) == 3
    for sub in subs:
        assert sub["endpoint"] == f"{push_service.url}/wpush/v2/{sub['id']}"
        point = b64url_decode(sub["keys"]["p256dh"])
        assert len(point) == 65 and point[0] == 4
        assert len(b64url_decode(sub["keys"]["auth"])) == 16
    listed = admin(push_service, "GET", "subscriptions", params={"limit": 100000})
    assert {s["id"] for s in subs} <= {s["id"] for s in listed["subscriptions"]}


def test_a_pywebpush_push_is_accepted_decrypted_and_recorded(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)

    response = send(
        sub, {"nid": "n-1", "title": "Sale"}, vapid, headers={"Urgency": "high", "Topic": "sale"}
    )

    assert response.status_code == 201
    message = requests.get(response.headers["Location"], timeout=5).json()
    assert message["payload"] == {"nid": "n-1", "title": "Sale"}
    (record,) = admin(push_service, "GET", "received", params={"after": 0})["records"]
    assert record == message
    assert (record["subscriber"], record["ttl"], record["urgency"], record["topic"]) == (
        sub["id"],
        60,
        "high",
        "sale",
    )
    assert record["vapid_sub"] == CONTACT


def test_a_py_vapid_signed_push_through_webpusher_is_accepted(
    push_service: PushServiceThread,
) -> None:
    (sub,) = subscribe(push_service, 1)
    server_key = Vapid()
    server_key.generate_keys()
    headers = server_key.sign(
        {"aud": push_service.url, "sub": "https://shop.example", "exp": int(time.time()) + 3600}
    )

    response = WebPusher(sub).send('{"nid": "v-1"}', headers, ttl=30)

    assert response.status_code == 201
    (record,) = push_service.received()["records"]
    assert (record["nid"], record["ttl"], record["vapid_sub"]) == (
        "v-1",
        30,
        "https://shop.example",
    )


def test_every_subscriber_receives_its_notification_exactly_once(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    subs = subscribe(push_service, 10)

    for sub in subs:
        send(sub, {"nid": f"welcome-{sub['id']}"}, vapid)
    stats = push_service.stats()
    assert (stats["receptions"], stats["distinct_notifications"], stats["duplicates"]) == (
        10,
        10,
        0,
    )

    send(subs[0], {"nid": f"welcome-{subs[0]['id']}"}, vapid)  # a retry after a crash
    stats = push_service.stats()
    assert (stats["receptions"], stats["distinct_notifications"], stats["duplicates"]) == (
        11,
        10,
        1,
    )
    assert stats["first_received_at"] <= stats["last_received_at"]
    assert sum(count for _, count in stats["received_per_second"]) == 11


def test_the_received_cursor_pages_in_arrival_order(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    for i in range(5):
        send(sub, {"nid": f"n{i}"}, vapid)

    page1 = admin(push_service, "GET", "received", params={"after": 0, "limit": 2})
    page2 = admin(push_service, "GET", "received", params={"after": page1["next"], "limit": 10})
    page3 = admin(push_service, "GET", "received", params={"after": page2["next"]})

    assert [r["nid"] for r in page1["records"]] == ["n0", "n1"]
    assert [r["nid"] for r in page2["records"]] == ["n2", "n3", "n4"]
    assert page3["records"] == [] and page3["next"] == page2["next"]


def test_a_repeated_topic_replaces_the_pending_message(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)

    send(sub, {"nid": "score-1"}, vapid, headers={"Topic": "match42"})
    send(sub, {"nid": "score-2"}, vapid, headers={"Topic": "match42"})
    send(sub, {"nid": "other"}, vapid)

    pending = admin(push_service, "GET", f"subscriptions/{sub['id']}/pending")["messages"]
    assert [m["nid"] for m in pending] == ["score-2", "other"]
    stats = push_service.stats()
    assert (stats["receptions"], stats["topic_replacements"], stats["pending_messages"]) == (
        3,
        1,
        2,
    )
    drained = admin(push_service, "GET", f"subscriptions/{sub['id']}/pending?drain=1")
    assert len(drained["messages"]) == 2
    assert push_service.pending(sub["id"]) == []


# ---------------------------------------------------------------- refusals


def test_vapid_for_another_origin_is_forbidden_and_missing_vapid_unauthorized(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)

    with pytest.raises(WebPushException) as wrong_aud:
        send(sub, {"nid": "x"}, vapid, vapid_claims={"sub": CONTACT, "aud": "https://fcm.example"})
    assert wrong_aud.value.status_code == 403
    assert "does not match the push resource origin" in wrong_aud.value.response.text

    with pytest.raises(WebPushException) as anonymous:
        webpush(sub, "hello", ttl=60)
    assert anonymous.value.status_code == 401
    assert anonymous.value.response.headers["WWW-Authenticate"] == "vapid"
    assert push_service.stats()["receptions"] == 0


def test_oversized_unknown_and_undecryptable_pushes_over_http(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    headers = {"TTL": "60", "Content-Encoding": "aes128gcm"}
    headers |= vapid.sign({"aud": push_service.url, "sub": CONTACT})
    (stranger,) = generate_subscribers(1)  # keys the service never issued
    foreign = WebPusher(stranger.subscription(push_service.url)).encode(b"hello")["body"]

    too_big = requests.post(sub["endpoint"], data=b"\0" * 5000, headers=headers, timeout=5)
    garbled = requests.post(sub["endpoint"], data=foreign, headers=headers, timeout=5)
    unknown = requests.post(
        f"{push_service.url}/wpush/v2/nosuchsubscription", data=foreign, headers=headers, timeout=5
    )
    no_ttl = requests.post(
        sub["endpoint"],
        data=foreign,
        headers={k: v for k, v in headers.items() if k != "TTL"},
        timeout=5,
    )

    assert (too_big.status_code, garbled.status_code, unknown.status_code) == (413, 400, 404)
    assert "4096" in too_big.text and "decryption failed" in garbled.text
    assert (no_ttl.status_code, "missing TTL" in no_ttl.text) == (400, True)


def test_an_unsubscribed_browser_answers_410(push_service: PushServiceThread, vapid: Vapid) -> None:
    sub, other = subscribe(push_service, 2)

    assert (
        requests.delete(f"{push_service.url}/_admin/subscriptions/{sub['id']}").status_code == 204
    )

    assert status_of(lambda: send(sub, {"nid": "x"}, vapid)) == 410
    assert status_of(lambda: send(other, {"nid": "x"}, vapid)) == 201


# ---------------------------------------------------------------- fault injection


def test_a_410_fault_marks_the_subscription_gone(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    dead, alive = subscribe(push_service, 2)
    admin(
        push_service,
        "POST",
        "faults",
        json={"rules": [{"status": 410, "subscribers": [dead["id"]], "times": 1}]},
    )

    assert status_of(lambda: send(dead, {"nid": "a"}, vapid)) == 410
    assert status_of(lambda: send(dead, {"nid": "a"}, vapid)) == 410  # gone stays gone
    assert status_of(lambda: send(alive, {"nid": "a"}, vapid)) == 201
    stats = push_service.stats()
    assert stats["by_status"] == {"410": 2, "201": 1}
    assert stats["gone"] == 1


def test_a_429_carries_retry_after_and_the_retry_succeeds(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    push_service.set_faults(rules=[{"status": 429, "retry_after": 7, "times": 1}])

    with pytest.raises(WebPushException) as throttled:
        send(sub, {"nid": "r"}, vapid)
    assert throttled.value.status_code == 429
    assert throttled.value.retry_after == "7"

    assert send(sub, {"nid": "r"}, vapid).status_code == 201
    assert admin(push_service, "GET", "faults")["rules"][0]["fired"] == 1


def test_a_fraction_of_subscribers_gets_a_503_once(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    subs = subscribe(push_service, 40)
    admin(
        push_service,
        "POST",
        "faults",
        json={"rules": [{"status": 503, "fraction": 0.5, "seed": "t", "times": 1}]},
    )

    first = {s["id"]: status_of(lambda s=s: send(s, {"nid": "f"}, vapid)) for s in subs}
    second = {s["id"]: status_of(lambda s=s: send(s, {"nid": "f"}, vapid)) for s in subs}

    failed = {sid for sid, status in first.items() if status == 503}
    assert 5 <= len(failed) <= 35
    assert {status for sid, status in first.items() if sid not in failed} == {201}
    assert set(second.values()) == {201}
    assert push_service.stats()["distinct_notifications"] == 40


def test_added_latency_is_observable_and_cleared(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    admin(push_service, "POST", "faults", json={"latency_ms": 300})

    started = time.monotonic()
    assert send(sub, {"nid": "slow"}, vapid).status_code == 201
    assert time.monotonic() - started >= 0.3

    cleared = requests.delete(f"{push_service.url}/_admin/faults", timeout=5).json()
    assert cleared == {"latency_ms": 0.0, "rules": []}


def test_a_timeout_fault_holds_the_request_and_then_drops_it(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    push_service.set_faults(rules=[{"timeout": 1.0, "times": 1}])

    with pytest.raises(requests.exceptions.Timeout):
        send(sub, {"nid": "t"}, vapid, timeout=0.3)
    assert send(sub, {"nid": "t"}, vapid, timeout=5).status_code == 201

    assert push_service.stats()["faults_injected"] == {"timeout": 1}


def test_a_slow_but_successful_push_is_delivered(
    push_service: PushServiceThread, vapid: Vapid
) -> None:
    (sub,) = subscribe(push_service, 1)
    push_service.set_faults(rules=[{"timeout": 0.2, "then": "deliver"}])

    started = time.monotonic()
    assert send(sub, {"nid": "late"}, vapid, timeout=5).status_code == 201
    assert time.monotonic() - started >= 0.2


def test_a_bad_fault_rule_is_refused_with_a_reason(push_service: PushServiceThread) -> None:
    response = requests.post(
        f"{push_service.url}/_admin/faults", json={"rules": [{"status": 418}]}, timeout=5
    )

    assert response.status_code == 400
    assert "not supported" in response.text
    assert admin(push_service, "GET", "faults")["rules"] == []


# ---------------------------------------------------------------- child process


def test_the_child_process_keeps_subscribers_across_a_restart(tmp_path, vapid: Vapid) -> None:
    state = tmp_path / "pushservice-state.json"

    with start_pushservice_process(state_file=state, subscribers=2) as first:
        subs = requests.get(f"{first.url}/_admin/subscriptions", timeout=5).json()["subscriptions"]
    with start_pushservice_process(state_file=state) as second:
        listed = requests.get(f"{second.url}/_admin/subscriptions", timeout=5).json()
        sub = dict(subs[0], endpoint=f"{second.url}/wpush/v2/{subs[0]['id']}")
        response = send(sub, {"nid": "after-restart"}, vapid)
        received = requests.get(f"{second.url}/_admin/received", timeout=5).json()

    assert [s["keys"] for s in listed["subscriptions"]] == [s["keys"] for s in subs]
    assert response.status_code == 201
    assert received["records"][0]["payload"] == {"nid": "after-restart"}
