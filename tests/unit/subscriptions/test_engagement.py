"""Stale subscriptions: the archive query (run by DuckDB over Firehose-shaped objects, as
the local cloud runs it), and the prune of what it finds."""

from __future__ import annotations

import gzip
import json
import os
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from pushpipe.audience.format import CampaignHeader
from pushpipe.pings.audit import PINGS, SENDS
from pushpipe.push.endpoints import endpoint_fingerprint, service_of
from pushpipe.push.models import Outcome, SendResult
from pushpipe.sending.batch import record, utc
from pushpipe.sending.runs import Cursor
from pushpipe.shared.tokens import notification_id
from pushpipe.subscriptions.engagement import (
    ENDPOINT_CHANGED,
    NOT_STORED,
    PRUNED,
    REPORT_PREFIX,
    StalePolicy,
    prune_stale,
    stale_query,
)
from pushpipe.subscriptions.models import Subscription, SubscriptionKeys, subscription_id
from pushpipe.subscriptions.store import SubscriptionStore
from pushpipe_local.cloud.athena import LocalAthena
from tests.support.pings import REGION, provision

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TENANT = "acme"
APPLE = "https://web.push.apple.com/QG{n}"
FCM = "https://fcm.googleapis.com/fcm/send/x{n}"
MESSAGE = {"title": "t", "body": "b", "url": "https://shop.example/"}


def keys() -> SubscriptionKeys:
    import base64

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return SubscriptionKeys(p256dh=b64(b"\x04" + os.urandom(64)), auth=b64(os.urandom(16)))


class Archive:
    """Writes send and ping records the way Firehose archives them (gzip JSON Lines under
    ``<prefix>yyyy/MM/dd/HH/``), and answers the SQL as the local Athena does."""

    def __init__(self, s3, bucket: str, cache) -> None:
        self.s3, self.bucket = s3, bucket
        self.athena = LocalAthena(s3, bucket, cache)
        self.n = 0

    def _put(self, prefix: str, when: datetime, records: list[dict]) -> None:
        self.n += 1
        body = gzip.compress(b"".join(json.dumps(r).encode() + b"\n" for r in records))
        key = f"{prefix}{when:%Y/%m/%d/%H}/stream-{self.n}.gz"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

    def send(self, sub: str, endpoint: str, campaign: str, when: datetime, outcome="sent"):
        header = CampaignHeader.parse({"id": campaign, "tenant": TENANT, "message": MESSAGE})
        cursor = Cursor(f"run-{campaign}", campaign, "b", "k", "e", 0, 1)
        status = {"sent": 201, "failed": 500, "pruned": 410}[outcome]
        result = SendResult(sub, Outcome(outcome), status, None, 1)
        rec = record(header, cursor, sub, "a", outcome, utc(when.timestamp()), result,
                     b"{}", endpoint)  # fmt: skip
        self._put(SENDS.prefix, when, [rec])

    def ping(self, sub: str, campaign: str, when: datetime, kind="delivered"):
        rec = {
            "v": 1,
            "ts": utc(when.timestamp()),
            "seen_at": utc(when.timestamp()),
            "type": kind,
            "tenant": TENANT,
            "campaign": campaign,
            "variant": "a",
            "notification": notification_id(campaign, sub),
            "subscriber": sub,
            "exp": int(when.timestamp()) + 86400,
        }
        self._put(PINGS.prefix, when, [rec])


class Reports:
    def __init__(self) -> None:
        self.objects: dict[str, list[dict]] = {}

    def put(self, key: str, body: bytes) -> None:
        self.objects[key] = [json.loads(line) for line in body.splitlines()]


@pytest.fixture
def world(tmp_path):
    with mock_aws():
        p = provision("eng")
        s3 = boto3.client("s3", region_name=REGION)
        store = SubscriptionStore(
            p.subscriptions_table, boto3.client("dynamodb", region_name=REGION)
        )
        yield Archive(s3, p.archive_bucket, tmp_path / "cache"), store


def subscribe(store: SubscriptionStore, endpoint: str) -> Subscription:
    sub = Subscription(
        id=subscription_id(TENANT, endpoint), tenant=TENANT, endpoint=endpoint, keys=keys()
    )
    return store.put(sub)


def sends(archive: Archive, sub: Subscription | str, endpoint: str, n: int, start_days: float):
    """``n`` campaigns, one a day from ``start_days`` ago."""
    sid = sub if isinstance(sub, str) else sub.id
    for i in range(n):
        archive.send(sid, endpoint, f"c{i}", NOW - timedelta(days=start_days - i))


POLICY = StalePolicy(services=("apple",), silent_sends=5, lookback_days=30, grace_hours=48)


def test_send_records_name_the_push_service_and_the_endpoint_and_match_the_archive_table():
    header = CampaignHeader.parse({"id": "c", "tenant": "t", "message": MESSAGE})
    rec = record(header, Cursor("r", "c", "b", "k", "e", 0, 1), "s", "a", "sent", "ts",
                 None, None, APPLE.format(n=1))  # fmt: skip
    assert set(rec) == {name for name, _ in SENDS.columns}
    assert rec["service"] == "apple" and rec["ep"] == endpoint_fingerprint(APPLE.format(n=1))
    assert {
        service_of("https://web.push.apple.com/abc"): 1,
        service_of("https://fcm.googleapis.com/fcm/send/abc"): 2,
        service_of("https://updates.push.services.mozilla.com/wpush/v2/x"): 3,
        service_of("https://wns2-par02p.notify.windows.com/w/?token=x"): 4,
        service_of("https://push.example.net:8443/x"): 5,
        service_of("https://web.push.apple.com.evil.example/x"): 6,
    } == {"apple": 1, "fcm": 2, "mozilla": 3, "wns": 4, "other": 6}


def test_silent_safari_subscriptions_are_pruned_and_reported_and_engaged_ones_kept(world):
    archive, store = world
    # GIVEN an Apple subscriber whose 7 sends never pinged back (revoked: Apple still 201s)
    silent = subscribe(store, APPLE.format(n=1))
    sends(archive, silent, silent.endpoint, 7, start_days=10)
    # AND an Apple subscriber whose browser pinged every delivery
    alive = subscribe(store, APPLE.format(n=2))
    sends(archive, alive, alive.endpoint, 7, start_days=10)
    for i in range(7):
        archive.ping(alive.id, f"c{i}", NOW - timedelta(days=10 - i, hours=-1))
    # AND an FCM subscriber that never pings (FCM answers 404/410 for revoked ones)
    fcm = subscribe(store, FCM.format(n=3))
    sends(archive, fcm, fcm.endpoint, 7, start_days=10)
    reports = Reports()

    # WHEN the daily job runs
    result = prune_stale(NOW, POLICY, archive.athena, store, reports)

    # THEN only the silent Safari subscription is gone, from every topic
    assert result.stale == 1 and result.actions == {PRUNED: 1}
    assert store.get(TENANT, silent.id) is None
    assert store.get(TENANT, alive.id) is not None and store.get(TENANT, fcm.id) is not None
    assert silent.id not in {s.id for s in store.segment(TENANT)}
    # AND the tenant's report says who, how silent, and what was done
    (key,) = reports.objects
    assert key == f"{REPORT_PREFIX}2026-12-03/{TENANT}.jsonl"
    (line,) = reports.objects[key]
    assert line["subscriber"] == silent.id and line["action"] == PRUNED
    assert line["silent_sends"] == 7 and line["service"] == "apple"


def test_only_sends_after_the_last_answered_one_count_and_recent_ones_wait_for_grace(world):
    archive, store = world
    # 4 silent sends after an answered one: below 5
    recovering = subscribe(store, APPLE.format(n=1))
    sends(archive, recovering, recovering.endpoint, 8, start_days=12)
    archive.ping(recovering.id, "c3", NOW - timedelta(days=8), kind="clicked")
    # 6 sends, but 3 of them inside the 48 h grace (a device may just be offline)
    recent = subscribe(store, APPLE.format(n=2))
    sends(archive, recent, recent.endpoint, 6, start_days=4.5)
    # failed and pruned sends never reached anyone: they do not count as silent
    failing = subscribe(store, APPLE.format(n=3))
    for i in range(6):
        archive.send(failing.id, failing.endpoint, f"f{i}", NOW - timedelta(days=9 - i), "failed")
    # sends older than the lookback are not read at all
    old = subscribe(store, APPLE.format(n=4))
    sends(archive, old, old.endpoint, 6, start_days=40)

    result = prune_stale(NOW, POLICY, archive.athena, store, Reports())

    assert result.stale == 0, result
    assert len(list(store.segment(TENANT))) == 4
    # with a lower threshold the recovering one is stale: its 4 later sends count
    stricter = StalePolicy(services=("apple",), silent_sends=4, grace_hours=48)
    again = prune_stale(NOW, stricter, archive.athena, store, Reports())
    assert again.actions == {PRUNED: 1} and store.get(TENANT, recovering.id) is None


def test_a_resubscribed_endpoint_is_kept_and_subscribers_outside_the_store_are_reported(world):
    archive, store = world
    # a file audience's subscriber (its own id, not in the store), silent on Safari
    sends(archive, "crm-42", APPLE.format(n=9), 6, start_days=10)
    # a store subscription whose silent sends went to the endpoint it had before
    moved = subscribe(store, APPLE.format(n=1))
    sends(archive, moved, APPLE.format(n=0), 6, start_days=10)
    reports = Reports()

    first = prune_stale(NOW, POLICY, archive.athena, store, reports)

    assert first.actions == {NOT_STORED: 1, ENDPOINT_CHANGED: 1}
    assert store.get(TENANT, moved.id) is not None
    actions = {line["subscriber"]: line["action"] for line in next(iter(reports.objects.values()))}
    assert actions == {"crm-42": NOT_STORED, moved.id: ENDPOINT_CHANGED}
    # and a repeat of the day's job changes nothing and reports the same
    assert prune_stale(NOW, POLICY, archive.athena, store, reports).actions == first.actions


def test_the_policy_refuses_values_that_would_prune_the_wrong_subscriptions():
    for bad in (
        {"services": ()},
        {"services": ("apple'; DROP",)},
        {"silent_sends": 0},
        {"lookback_days": 0},
        {"grace_hours": 30 * 24},
    ):
        with pytest.raises(ValueError):
            StalePolicy(**bad)
    sql, params = stale_query(StalePolicy(services=("apple", "other")), NOW)
    assert sql.count("?") == len(params) == 6
    assert params[:2] == ["apple", "other"] and params[-1] == 10
