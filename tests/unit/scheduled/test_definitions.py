"""Scheduled campaigns as code: the definitions pass the audience format, the selections
by calendar day, one audience file per (day, tenant, definition) however often the
schedule fires."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from pushpipe import topology as t
from pushpipe.audience.format import iter_recipients, read_header
from pushpipe.audience.writer import AudienceWriter
from pushpipe.pings.counters import CounterStore
from pushpipe.scheduled.definitions import (
    CAMPAIGNS,
    SchedulerPorts,
    check_definitions,
    run_scheduled,
)
from pushpipe.subscriptions.models import Subscription, SubscriptionKeys
from pushpipe.subscriptions.store import SubscriptionStore
from pushpipe_local.cloud.provision import create_table
from tests.support.approval import real_keys

REGION = "us-east-1"
BUCKET = "aud"
RUN_AT = datetime(2026, 3, 30, 17, 5, tzinfo=UTC)  # day D = 2026-03-30, after every send hour


def test_every_definition_is_a_valid_campaign_with_variants_and_a_control_group():
    check_definitions()
    for c in CAMPAIGNS:
        header = c.header("acme", RUN_AT.date())
        assert header["variants"] and header["control_percent"] > 0
        assert header["id"] == f"{c.id}-20260330"


@pytest.fixture
def world():
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_table(ddb, t.SUBSCRIPTIONS_TABLE, "subs")
        create_table(ddb, t.COUNTERS_TABLE, "counters")
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        store = SubscriptionStore("subs", ddb)
        counters = CounterStore("counters", ddb)

        def marker_exists(key: str) -> bool:
            return s3.list_objects_v2(Bucket=BUCKET, Prefix=key)["KeyCount"] > 0

        ports = SchedulerPorts(
            subscriptions=store,
            writer=AudienceWriter(s3),
            clicks=counters.clicks_between,
            tenants=lambda: ["acme"],
            marker_exists=marker_exists,
            put_marker=lambda key, body: s3.put_object(
                Bucket=BUCKET, Key=key, Body=json.dumps(body).encode()
            ),
        )
        yield ports, store, ddb, s3


def _sub(store, sid: str, days_ago: float, topics=(), muted=False) -> None:
    store.put(
        Subscription(
            id=sid,
            tenant="acme",
            endpoint=f"https://fcm.googleapis.com/fcm/send/{sid}",
            keys=SubscriptionKeys(**real_keys()),
            topics=list(topics),
            muted=muted,
            created_at=RUN_AT - timedelta(days=days_ago),
        )
    )


def _click(ddb, sid: str, days_ago: float) -> None:
    ts = (RUN_AT - timedelta(days=days_ago)).timestamp()
    ddb.put_item(
        TableName="counters",
        Item={
            "pk": {"S": "K#acme"},
            "sk": {"S": f"{int(ts * 1000):013d}#w-{sid}#old"},
            "clicks": {"S": json.dumps([{"s": sid, "c": "old", "v": "a", "n": "n", "t": ts}])},
        },
    )


def _ids(s3, key: str) -> set[str]:
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    read_header(io.BytesIO(body))
    return {r.id for r in iter_recipients(io.BytesIO(body))}


def test_selections_by_day_and_one_file_per_day(world):
    ports, store, ddb, s3 = world
    _sub(store, "new-no-topics", 1)  # day1: subscribed yesterday, chose nothing
    _sub(store, "new-topics", 1, topics=["shoes"])  # yesterday, but finished: not day1
    _sub(store, "new-muted", 1, muted=True)  # muted: never
    _sub(store, "two-days", 2.1, topics=["hats"])  # day2
    _sub(store, "silent-21", 21)  # subscribed 21 days ago, never clicked: day21
    _sub(store, "clicked-21", 40)
    _click(ddb, "clicked-21", 21)  # last click 21 days ago: day21
    _sub(store, "clicked-recently", 40)
    _click(ddb, "clicked-recently", 21)
    _click(ddb, "clicked-recently", 3)  # active again since: not day21
    _sub(store, "old-and-quiet", 60)  # silent for longer: was nudged on its own day 21

    result = run_scheduled(RUN_AT, ports, BUCKET, "audiences/")
    keys = {w["key"]: w for w in result.written}
    prefix = "audiences/acme/scheduled/2026-03-30/"
    assert set(keys) == {
        f"{prefix}day1-unfinished-signup.json",
        f"{prefix}day2-engagement.json",
        f"{prefix}day21-inactive.json",
    }
    assert _ids(s3, f"{prefix}day1-unfinished-signup.json") == {"new-no-topics"}
    assert _ids(s3, f"{prefix}day2-engagement.json") == {"two-days"}
    assert _ids(s3, f"{prefix}day21-inactive.json") == {"silent-21", "clicked-21"}
    header = read_header(
        io.BytesIO(s3.get_object(Bucket=BUCKET, Key=f"{prefix}day2-engagement.json")["Body"].read())
    )
    assert header.id == "day2-engagement-20260330" and header.control_percent == 10

    # the schedule fires again (hourly, a retry): nothing is written twice
    again = run_scheduled(RUN_AT + timedelta(minutes=30), ports, BUCKET, "audiences/")
    assert again.written == [] and len(again.skipped) == 3


def test_nothing_before_the_send_hour_and_no_file_for_an_empty_audience(world):
    ports, store, _, s3 = world
    _sub(store, "two-days", 2.1)
    early = run_scheduled(RUN_AT.replace(hour=9), ports, BUCKET, "audiences/")
    assert early.written == [] and len(early.skipped) == 3  # sends at 10, 11, 16 UTC
    late = run_scheduled(RUN_AT.replace(hour=17), ports, BUCKET, "audiences/")
    assert [w["key"].rsplit("/", 1)[1] for w in late.written] == ["day2-engagement.json"]
    assert sorted(late.empty) == ["acme/day1-unfinished-signup", "acme/day21-inactive"]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="audiences/")["KeyCount"]
    assert listed == 1
