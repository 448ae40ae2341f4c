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
from tests.support.pings import REGION, provision, set_env


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
    resp = handler(http_event("POST", "/v1/subscriptions", body), lambda_context)
    out = json.loads(resp["body"])
    assert resp["statusCode"] == 422, out
    assert field in out["message"]
    assert list(subs.segment("acme")) == []


def test_subscribe_then_unsubscribe_over_the_api(subs, lambda_context):
    from functions.ping_handler.handler import handler

    k = keys()
    body = {
        "tenant": "acme",
        "subscription": {
            "endpoint": "https://fcm.googleapis.com/fcm/send/ep/9",
            "keys": k.model_dump(),
        },
        "topics": ["news"],
        "language": "de",
    }
    resp = handler(http_event("POST", "/v1/subscriptions", body), lambda_context)
    assert resp["statusCode"] == 201
    sub_id = json.loads(resp["body"])["id"]
    # subscribing again is the same subscription, not a second one
    again = handler(http_event("POST", "/v1/subscriptions", body), lambda_context)
    assert json.loads(again["body"])["id"] == sub_id
    assert [s.id for s in subs.segment("acme", ["news"])] == [sub_id]

    def delete(auth):
        headers = {"X-Pushpipe-Auth": auth} if auth else {}
        event = http_event(
            "DELETE", f"/v1/subscriptions/{sub_id}", headers=headers, query={"tenant": "acme"}
        )
        return handler(event, lambda_context)["statusCode"]

    assert delete(None) == 403
    assert delete(b64(os.urandom(16))) == 403
    assert delete(k.auth) == 204
    assert delete(k.auth) == 404
    assert list(subs.segment("acme")) == []
