"""The ping path in-process with moto: ping_handler -> Kinesis -> aggregate -> report.

Handlers are called with the events API Gateway (payload v2) and the Kinesis poller
build, so this is the same code the local cloud and Lambda run.
"""

from __future__ import annotations

import json
import random

import pytest
from moto import mock_aws

from pushpipe.pings import wiring as ping_wiring
from tests.support.events import FakeContext, http_event, kinesis_event
from tests.support.pings import TENANTS, provision, read_stream, set_env, token


@pytest.fixture
def loop():
    with mock_aws():
        p = provision("integ")
        set_env(p)
        ping_wiring.reset()
        from functions.aggregate.handler import handler as aggregate
        from functions.ping_handler.handler import handler as api

        yield p, api, aggregate
        ping_wiring.reset()


def post(api, pings):
    resp = api(http_event("POST", "/v1/pings", {"pings": pings}), FakeContext())
    return resp["statusCode"]


def run_aggregate(p, aggregate, batch_size=300, records=None):
    """What Lambda's Kinesis poller does: per shard, in order, batches of ``batch_size``."""
    records = list(read_stream(p.pings_stream)) if records is None else records
    by_shard: dict[str, list] = {}
    for r in records:
        by_shard.setdefault(r["ShardId"], []).append(r)
    failures = []
    for shard_records in by_shard.values():
        for i in range(0, len(shard_records), batch_size):
            event = kinesis_event(shard_records[i : i + batch_size])
            failures += aggregate(event, FakeContext())["batchItemFailures"]
    return records, failures


def report(api, campaign="spring", tenant="acme"):
    key = TENANTS[tenant]["report_keys"][0]
    event = http_event(
        "GET",
        f"/v1/tenants/{tenant}/campaigns/{campaign}/report",
        headers={"Authorization": f"Bearer {key}"},
    )
    resp = api(event, FakeContext())
    assert resp["statusCode"] == 200, resp["body"]
    body = json.loads(resp["body"])
    return {v["variant"]: v for v in body["variants"]}


def test_pings_flow_into_counters_once_however_often_they_arrive(loop):
    p, api, aggregate = loop
    rng = random.Random(7)
    # GIVEN 600 notifications over two variants, 40% pinged delivered, 10% of those clicked
    tokens = [token(subscriber=f"s{i}", variant="ab"[i % 2])[0] for i in range(600)]
    delivered = [i for i in range(600) if rng.random() < 0.4]
    clicked = [i for i in delivered if rng.random() < 0.1]
    pings = [{"type": "delivered", "token": tokens[i]} for i in delivered]
    pings += [{"type": "clicked", "token": tokens[i]} for i in clicked]
    # AND browsers retrying: a fifth of the pings arrive twice
    pings += rng.sample(pings, len(pings) // 5)
    rng.shuffle(pings)
    for i in range(0, len(pings), 20):
        assert post(api, pings[i : i + 20]) == 202

    # WHEN the aggregate reads the stream, and then the poller replays every batch
    records, failures = run_aggregate(p, aggregate)
    assert failures == []
    run_aggregate(p, aggregate, batch_size=170, records=records)

    # THEN every notification counts once per type
    rows = report(api)
    for v in "ab":
        assert rows[v]["delivered"] == sum(1 for i in delivered if "ab"[i % 2] == v)
        assert rows[v]["clicked"] == sum(1 for i in clicked if "ab"[i % 2] == v)


def test_forged_and_expired_pings_are_counted_nowhere(loop):
    import time

    p, api, aggregate = loop
    good, _ = token(subscriber="ok")
    assert post(api, [{"type": "delivered", "token": good}]) == 202
    assert post(api, [{"type": "delivered", "token": good[:-2] + "zz"}]) == 401
    expired, _ = token(subscriber="late", exp=int(time.time()) - 5)
    assert post(api, [{"type": "delivered", "token": expired}]) == 403
    other, _ = token(tenant="globex", subscriber="ok")
    body = other.split(".")[2]
    forged = other.replace(body, body[:-2] + "AA")
    assert post(api, [{"type": "delivered", "token": forged}]) == 401
    run_aggregate(p, aggregate)
    assert report(api)["a"]["delivered"] == 1
    assert report(api, tenant="globex") == {}


def test_a_record_that_is_not_a_ping_is_a_partial_failure_the_rest_counts(loop):
    p, api, aggregate = loop
    for i in range(3):
        assert post(api, [{"type": "delivered", "token": token(subscriber=f"s{i}")[0]}]) == 202
    records = list(read_stream(p.pings_stream))
    shard = [r for r in records if r["ShardId"] == records[0]["ShardId"]]
    bad = {**shard[-1], "Data": b"not json", "SequenceNumber": shard[-1]["SequenceNumber"] + "9"}
    out = aggregate(kinesis_event([*shard, bad]), FakeContext())
    assert out["batchItemFailures"] == [{"itemIdentifier": bad["SequenceNumber"]}]
    assert report(api)["a"]["delivered"] == len(shard)
