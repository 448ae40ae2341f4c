"""Subscriptions: validation, per-topic storage, segments, unsubscribe over the API."""

from __future__ import annotations

import base64
import json
import os

import boto3
import pytest
from moto import mock_aws

from pushpipe.pings import wiring as ping_wiring
from pushpipe.subscriptions.models import (
    TOPIC_SHARDS,
    Subscription,
    SubscriptionKeys,
    subscription_id,
)
from pushpipe.subscriptions.store import SubscriptionStore
from tests.support.events import http_event
from tests.support.pings import ACME_SITE, REGION, provision, set_env


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def keys() -> SubscriptionKeys:
    return SubscriptionKeys(p256dh=b64(b"\x04" + os.urandom(64)), auth=b64(os.urandom(16)))


@pytest.fixture
def subs():
    with mock_aws():
        p = provision("unit")
        set_env(p)
        ping_wiring.reset()
        yield SubscriptionStore(p.subscriptions_table, boto3.client("dynamodb", region_name=REGION))
        ping_wiring.reset()


def make(n: int, topics=(), tenant="acme", **kw) -> Subscription:
    endpoint = f"https://fcm.googleapis.com/fcm/send/ep/{n}"
    return Subscription(
        id=subscription_id(tenant, endpoint),
        tenant=tenant,
        endpoint=endpoint,
        keys=keys(),
        topics=list(topics),
        **kw,
    )


def test_segment_reads_topics_dedups_overlaps_and_skips_muted(subs):
    a = subs.put(make(1, ["football", "tennis"]))
    b = subs.put(make(2, ["tennis"]))
    c = subs.put(make(3, ["football"], muted=True))
    d = subs.put(make(4, ["golf"]))
    got = [s.id for s in subs.segment("acme", topics=["football", "tennis"])]
    assert sorted(got) == sorted([a.id, b.id])  # a once although it follows both
    assert c.id not in got and d.id not in got
    everyone = {s.id for s in subs.segment("acme")}
    assert everyone == {a.id, b.id, d.id}


def test_segment_narrows_by_country_and_language(subs):
    de = subs.put(make(1, ["news"], country="DE", language="de"))
    at = subs.put(make(2, ["news"], country="AT", language="de-AT"))
    subs.put(make(3, ["news"], country="FR", language="fr"))
    assert {s.id for s in subs.segment("acme", ["news"], languages=["de"])} == {de.id, at.id}
    assert [s.id for s in subs.segment("acme", ["news"], countries=["AT"])] == [at.id]


def test_shards_partition_a_topic_without_losing_anyone(subs):
    made = {subs.put(make(i, ["big"])).id for i in range(40)}
    seen = []
    for shard in range(TOPIC_SHARDS):
        seen += [s.id for s in subs.segment("acme", ["big"], shard=shard)]
    assert sorted(seen) == sorted(made)


def test_changing_topics_moves_the_subscription_and_delete_removes_it_everywhere(subs):
    s = subs.put(make(1, ["a", "b"]))
    subs.put(s.model_copy(update={"topics": ["b", "c"]}))
    assert [x.id for x in subs.segment("acme", ["a"])] == []
    assert [x.id for x in subs.segment("acme", ["c"])] == [s.id]
    assert subs.delete("acme", s.id) is True
    assert subs.get("acme", s.id) is None
    assert list(subs.segment("acme")) == [] and list(subs.segment("acme", ["b", "c"])) == []
    assert subs.delete("acme", s.id) is False


def test_tenants_are_apart(subs):
    subs.put(make(1, ["x"], tenant="acme"))
    assert list(subs.segment("globex", ["x"])) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"endpoint": "http://insecure.example/ep"}, "must be https"),
        ({"endpoint": "https://169.254.169.254/latest/meta-data"}, "link-local"),
        ({"endpoint": "https://127.0.0.1:9001/2018-06-01/runtime"}, "loopback"),
        ({"endpoint": "https://2130706433/x"}, "loopback"),
        ({"endpoint": "https://10.0.0.1/x"}, "private"),
        ({"endpoint": "https://[::ffff:10.0.0.1]/x"}, "private"),
        ({"endpoint": "https://push.attacker.example/x"}, "not a browser push service"),
        (
            {"keys": {"p256dh": b64(b"\x02" + os.urandom(32)), "auth": b64(os.urandom(16))}},
            "p256dh",
        ),
        ({"keys": {"p256dh": b64(b"\x04" + os.urandom(64)), "auth": b64(os.urandom(8))}}, "auth"),
        ({"topics": ["Not A Topic"]}, "topics"),
        ({"country": "germany"}, "country"),
    ],
)
def test_subscribe_endpoint_validates(subs, change, field, lambda_context):
    from functions.ping_handler.handler import handler

    sub = {"endpoint": "https://fcm.googleapis.com/fcm/send/ep/1", "keys": keys().model_dump()}
    body = {"tenant": "acme", "subscription": sub, "topics": ["news"], "country": "DE"}
    for k, v in change.items():
        (body["subscription"] if k in ("endpoint", "keys") else body)[k] = v
    resp = handler(http_event("POST", "/v1/subscriptions", body, ACME_SITE), lambda_context)
    out = json.loads(resp["body"])
    assert resp["statusCode"] == 422, out
    assert field in out["message"]
    assert list(subs.segment("acme")) == []


def _subscribe(handler, ctx, body, headers=ACME_SITE, extra=None):
    event = http_event("POST", "/v1/subscriptions", body, {**headers, **(extra or {})})
    resp = handler(event, ctx)
    return resp["statusCode"], json.loads(resp["body"]), resp


def _unsubscribe(handler, ctx, sub_id, auth, tenant="acme"):
    headers = {"X-Pushpipe-Auth": auth} if auth else {}
    event = http_event(
        "DELETE", f"/v1/subscriptions/{sub_id}", headers=headers, query={"tenant": tenant}
    )
    return handler(event, ctx)["statusCode"]


def _body(k: SubscriptionKeys, n: int = 9, **over) -> dict:
    return {
        "subscription": {
            "endpoint": f"https://fcm.googleapis.com/fcm/send/ep/{n}",
            "keys": k.model_dump(),
        },
        "topics": ["news"],
        "language": "de",
        **over,
    }


def test_subscribe_then_unsubscribe_over_the_api(subs, lambda_context):
    from functions.ping_handler.handler import handler

    k = keys()
    status, out, resp = _subscribe(handler, lambda_context, _body(k, tenant="acme"))
    assert status == 201 and out["tenant"] == "acme"
    assert resp["headers"]["Access-Control-Allow-Origin"] == "https://shop.acme.example"
    sub_id = out["id"]
    # subscribing again is the same subscription, not a second one
    assert _subscribe(handler, lambda_context, _body(k))[1]["id"] == sub_id
    assert [s.id for s in subs.segment("acme", ["news"])] == [sub_id]

    assert _unsubscribe(handler, lambda_context, sub_id, None) == 403
    assert _unsubscribe(handler, lambda_context, sub_id, b64(os.urandom(16))) == 403
    assert _unsubscribe(handler, lambda_context, sub_id, k.auth) == 204
    # already gone: still 204, so a browser's own unsubscribe never fails
    assert _unsubscribe(handler, lambda_context, sub_id, k.auth) == 204
    assert list(subs.segment("acme")) == []


@pytest.mark.parametrize(
    ("headers", "status", "says"),
    [
        ({}, 401, "site key"),
        (
            {"X-Pushpipe-Site-Key": "no-such-site-key-0000", "Origin": "https://shop.acme.example"},
            401,
            "not valid",
        ),
        ({**ACME_SITE, "Origin": "https://evil.example"}, 403, "origin"),
        ({"X-Pushpipe-Site-Key": "acme-site-key-0123456789"}, 403, "origin"),
        (
            {
                "X-Pushpipe-Site-Key": "globex-site-key-0123456789",
                "Origin": "https://shop.acme.example",
            },
            403,
            "origin",
        ),
    ],
)
def test_subscription_intake_needs_the_tenants_site_key_from_its_origins(
    subs, lambda_context, headers, status, says
):
    from functions.ping_handler.handler import handler

    got, out, resp = _subscribe(handler, lambda_context, _body(keys()), headers)
    assert (got, out["error"] != "") == (status, True), out
    assert says in out["message"]
    assert "Access-Control-Allow-Origin" not in resp["headers"] or resp["headers"][
        "Access-Control-Allow-Origin"
    ] in ("https://shop.acme.example",)
    assert list(subs.segment("acme")) == [] and list(subs.segment("globex")) == []


@pytest.mark.parametrize("tenant", ["globex", "no-such-tenant"])
def test_a_site_key_subscribes_to_its_own_tenant_only(subs, lambda_context, tenant):
    from functions.ping_handler.handler import handler

    status, out, _ = _subscribe(handler, lambda_context, _body(keys(), tenant=tenant))
    assert status == 403 and tenant in out["message"]
    assert list(subs.segment(tenant)) == [] and list(subs.segment("acme")) == []


def test_other_keys_for_a_known_endpoint_need_the_old_auth_secret(subs, lambda_context):
    """A takeover attempt (same endpoint, attacker's keys) is refused; the owner's
    unsubscribe still works; the owner's own key rotation (with proof) is accepted."""
    from functions.ping_handler.handler import handler

    owner, attacker, rotated = keys(), keys(), keys()
    sub_id = _subscribe(handler, lambda_context, _body(owner))[1]["id"]
    status, out, _ = _subscribe(handler, lambda_context, _body(attacker))
    assert status == 403 and out["error"] == "keys_change_refused"
    wrong = {"X-Pushpipe-Auth": attacker.auth}
    assert _subscribe(handler, lambda_context, _body(attacker), extra=wrong)[0] == 403
    assert subs.get("acme", sub_id).keys == owner
    proof = {"X-Pushpipe-Auth": owner.auth}
    assert _subscribe(handler, lambda_context, _body(rotated), extra=proof)[0] == 201
    assert subs.get("acme", sub_id).keys == rotated
    assert _unsubscribe(handler, lambda_context, sub_id, owner.auth) == 403  # old secret
    assert _unsubscribe(handler, lambda_context, sub_id, rotated.auth) == 204


def test_operators_may_replace_keys_without_proof(subs):
    first = subs.put(make(1))
    replaced = subs.put(first.model_copy(update={"keys": keys()}), operator=True)
    assert subs.get("acme", first.id).keys == replaced.keys


def test_subscription_intake_is_rate_limited_per_site_key(subs, lambda_context):
    from functions.ping_handler.handler import handler

    answers = [_subscribe(handler, lambda_context, _body(keys(), n=i)) for i in range(7)]
    assert [a[0] for a in answers] == [201] * 5 + [429] * 2  # acme: 5 per minute
    assert 1 <= int(answers[-1][2]["headers"]["Retry-After"]) <= 60
    assert len(list(subs.segment("acme"))) == 5
    # another tenant's budget is its own
    globex = {
        "X-Pushpipe-Site-Key": "globex-site-key-0123456789",
        "Origin": "https://globex.example",
    }
    assert _subscribe(handler, lambda_context, _body(keys(), n=99), globex)[0] == 201


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://shop.acme.example", True),
        ("https://globex.example", True),
        ("https://evil.example", False),
    ],
)
def test_preflights_name_only_the_tenants_origins(subs, lambda_context, origin, allowed):
    from functions.ping_handler.handler import handler

    event = http_event(
        "OPTIONS",
        "/v1/subscriptions",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-pushpipe-site-key",
        },
    )
    headers = handler(event, lambda_context)["headers"]
    assert headers.get("Access-Control-Allow-Origin") == (origin if allowed else None)
