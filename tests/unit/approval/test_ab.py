"""A/B variants and the control group: the split, the send path holding the control group
out while counting it, orders counted per group, and the report's side-by-side with lift."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from pushpipe import topology as t
from pushpipe.audience.format import Variant
from pushpipe.audience.variants import assign
from pushpipe.pings.attribution import OrderIn, record_order
from pushpipe.pings.counters import CounterStore, send_counter_items
from pushpipe.pings.exposures import exposure_items, subscriber_hash
from pushpipe.pings.reports import build_report
from pushpipe.sending import service as sending
from pushpipe.sending.run_store import RunStore
from pushpipe.sending.service import SendConfig, SendPorts, admit, run_chain
from pushpipe.shared.aws import ArchiveStream, AudienceObjects
from pushpipe.shared.tokens import SigningKeys
from pushpipe_local.cloud.provision import create_table
from pushpipe_local.sim.audiences import audience_bytes, demo_campaign
from tests.support.sending import RecordingInvoker, RecordingSender

REGION = "us-east-1"
P256DH, AUTH = "B" + "A" * 86, "A" * 22


def test_uneven_variants_split_100k_subscribers_within_tolerance():
    variants = (Variant("a", 50, {}), Variant("b", 25, {}), Variant("c", 15, {}))
    n = 100_000
    counts = Counter(assign("launch", f"user-{i}", variants, 10) for i in range(n))
    for group, percent in (("a", 50), ("b", 25), ("c", 15), ("control", 10)):
        p = percent / 100
        sigma = math.sqrt(n * p * (1 - p))
        assert abs(counts[group] - n * p) < 4 * sigma, (group, counts[group])
    # deterministic: a retry, a recursion or another chain puts everyone in the same place
    again = Counter(assign("launch", f"user-{i}", variants, 10) for i in range(n))
    assert again == counts


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        for b in ("aud", "archive"):
            s3.create_bucket(Bucket=b)
        ddb = boto3.client("dynamodb", region_name=REGION)
        create_table(ddb, t.RUNS_TABLE, "runs")
        create_table(ddb, t.COUNTERS_TABLE, "counters")
        boto3.client("firehose", region_name=REGION).create_delivery_stream(
            DeliveryStreamName="sends",
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/f",
                "BucketARN": "arn:aws:s3:::archive",
                "Prefix": "sends/",
            },
        )
        ports = SendPorts(
            runs=RunStore("runs", ddb),
            objects=AudienceObjects(s3),
            archive=ArchiveStream("sends", boto3.client("firehose", region_name=REGION)),
            invoker=RecordingInvoker(),
            sender=RecordingSender(),
            signing_keys=SigningKeys.from_secret({"active": "k", "keys": {"k": "k" * 43}}),
            ping_url="https://api.example/v1/pings",
            counter_items=lambda tenant, campaign, by_variant, now, chain: send_counter_items(
                "counters", shard=f"s{chain}"
            )(tenant, campaign, by_variant, now),
            exposure_items=lambda tenant, campaign, groups, now, batch: exposure_items(
                "counters", tenant, campaign, groups, now, batch
            ),
        )
        sending.forget_streams()
        yield ports, s3, CounterStore("counters", ddb)
        sending.forget_streams()


def _send(ports, s3, campaign: str, n: int, variants: list[dict], control: float) -> None:
    recipients = [
        {
            "id": f"u{i}",
            "subscription": {
                "endpoint": f"https://fcm.googleapis.com/fcm/send/{i}",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        }
        for i in range(n)
    ]
    header = demo_campaign(campaign, tenant="acme", variants=variants, control_percent=control)
    etag = s3.put_object(
        Bucket="aud", Key=f"audiences/acme/{campaign}.json", Body=audience_bytes(header, recipients)
    )["ETag"]
    config = SendConfig(chains=2, batch_size=100)
    admit("aud", f"audiences/acme/{campaign}.json", etag, ports, config, lease_ms=60_000)
    while ports.invoker.events:
        event = ports.invoker.events.pop(0)
        run_chain(sending.Cursor.from_event(event["cursor"]), ports, config, lambda: 900_000)


def _order(subscriber: str, amount: str, order_id: str, at: datetime) -> OrderIn:
    return OrderIn(
        order_id=order_id, subscriber=subscriber, amount=Decimal(amount), currency="EUR", ts=at
    )


def test_the_control_group_receives_nothing_is_counted_and_its_orders_compared(world):
    ports, s3, store = world
    variants = [{"id": "a", "percent": 40}, {"id": "b", "percent": 40}]
    _send(ports, s3, "spring", 1_000, variants, 20)
    parsed = tuple(Variant(v["id"], v["percent"], {}) for v in variants)
    group = {f"u{i}": assign("spring", f"u{i}", parsed, 20) for i in range(1_000)}
    control = {s for s, g in group.items() if g == "control"}

    # nobody of the control group got a push; everybody else exactly once
    sent = Counter(ports.sender.sent)
    assert set(sent) == set(group) - control and set(sent.values()) == {1}
    report = build_report("acme", "spring", store.campaign_rows("acme", "spring"))
    by = {v.variant: v for v in report.variants}
    assert by["control"].control == len(control) > 150
    assert by["a"].sent + by["b"].sent == 1_000 - len(control)

    # orders: a third of group a buys, a tenth of the control group buys, b nobody
    now = datetime.now(UTC)
    buyers_a = [s for s, g in sorted(group.items()) if g == "a"][::3]
    buyers_c = [s for s, g in sorted(group.items()) if g == "control"][::10]
    for i, s in enumerate(buyers_a + buyers_c):
        result = record_order(_order(s, "10.00", f"o{i}", now), "acme", 24, store, now.timestamp())
        assert [(c.campaign, c.group) for c in result.conversions] == [("spring", group[s])]
        assert not result.attributed, "nobody clicked: no click attribution"
    # a redelivered webhook counts nothing twice
    again = record_order(
        _order(buyers_a[0], "10.00", "o0", now), "acme", 24, store, now.timestamp()
    )
    assert again.duplicate
    # a subscriber outside the campaign converts nowhere
    outsider = record_order(
        _order("stranger", "99", "o-x", now), "acme", 24, store, now.timestamp()
    )
    assert outsider.conversions == []

    report = build_report("acme", "spring", store.campaign_rows("acme", "spring"))
    cmp = report.comparison
    assert cmp is not None
    assert cmp.control.recipients == len(control)
    assert cmp.control.conversions == len(buyers_c)
    assert cmp.control.conversion_rate == pytest.approx(len(buyers_c) / len(control), abs=1e-6)
    a = next(v for v in cmp.variants if v.group == "a")
    b = next(v for v in cmp.variants if v.group == "b")
    assert a.conversions == len(buyers_a) and b.conversions == 0
    expected_lift = (len(buyers_a) / by["a"].sent) / (len(buyers_c) / len(control)) - 1
    assert a.conversion_lift == pytest.approx(expected_lift, abs=1e-4)
    assert b.conversion_lift == pytest.approx(-1.0)
    assert a.revenue_per_recipient["EUR"] == (Decimal(10) * len(buyers_a) / by["a"].sent).quantize(
        Decimal("0.0001")
    )
    assert a.revenue_lift["EUR"] == pytest.approx(expected_lift, abs=1e-3)


def test_an_order_outside_the_window_is_no_conversion(world):
    ports, s3, store = world
    _send(ports, s3, "w", 200, [{"id": "a", "percent": 50}], 50)
    later = datetime.now(UTC).timestamp() + 25 * 3600
    result = record_order(
        _order("u1", "5", "late", datetime.fromtimestamp(later, UTC)), "acme", 24, store, later
    )
    assert result.conversions == []


def test_campaigns_without_a_control_group_write_no_exposures(world):
    ports, s3, store = world
    _send(ports, s3, "plain", 300, [{"id": "a", "percent": 50}, {"id": "b", "percent": 50}], 0)
    items = store.client.query(
        TableName="counters",
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "X#acme"}},
    )["Items"]
    assert items == []
    assert build_report("acme", "plain", store.campaign_rows("acme", "plain")).comparison is None


def test_exposure_fragments_are_compact():
    [put] = exposure_items(
        "t", "acme", "c", {"a": [f"s{i}" for i in range(450)], "control": ["x"]}, 1.0, "r.0.0"
    )
    groups = put["Put"]["Item"]["g"]["M"]
    assert len(groups["a"]["B"]) == 450 * 8
    assert groups["control"]["B"] == subscriber_hash("x")
