"""Stale subscriptions through the local cloud: a push service that answers 201 for
subscriptions whose browser is gone (as Apple's does for revoked Safari subscriptions),
browsers that ping what they receive, and the scheduler's daily job querying the archive
through the Athena API (DuckDB locally) and pruning the silent ones."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta

from pushpipe import topology as t
from pushpipe.subscriptions.engagement import PRUNED, REPORT_PREFIX
from pushpipe.subscriptions.models import Subscription, SubscriptionKeys, subscription_id
from pushpipe.subscriptions.store import SubscriptionStore
from pushpipe_local.cloud.athena import LocalAthena
from pushpipe_local.cloud.cloud import physical_name
from pushpipe_local.sim.audiences import demo_campaign, write_audience
from pushpipe_local.sim.browsers import Rates, SimulatedBrowsers

from .conftest import SendHarness

TENANT = "stale-shop"


def _store(send: SendHarness) -> SubscriptionStore:
    return SubscriptionStore(
        physical_name("table", "subscriptions"), client=send.cloud.client("dynamodb")
    )


def _subscribe(store: SubscriptionStore, pushed: list[dict]) -> dict[str, str]:
    """Each push-service subscriber in the subscription store: {push id: store id}."""
    ids = {}
    for s in pushed:
        sub = Subscription(
            id=subscription_id(TENANT, s["endpoint"]),
            tenant=TENANT,
            endpoint=s["endpoint"],
            keys=SubscriptionKeys(**s["keys"]),
        )
        store.put(sub)
        ids[s["id"]] = sub.id
    return ids


def _send_to_store(send: SendHarness, store: SubscriptionStore, campaign: str):
    buf = io.BytesIO()
    write_audience(
        buf,
        demo_campaign(campaign, tenant=TENANT),
        (s.as_recipient() for s in store.segment(TENANT)),
    )
    key = f"{t.AUDIENCE_PREFIX}{TENANT}/{campaign}.json"  # under the tenant's own prefix
    etag = send.drop(key, buf.getvalue())
    view = send.wait_run(key, etag)
    assert view.state == "done", view.reason
    return view


def _swallow(send: SendHarness, push_ids: list[str]) -> None:
    send.cloud.push_admin(
        "POST",
        "/_admin/faults",
        {"rules": [{"status": 201, "subscribers": push_ids, "name": "revoked Safari"}]},
    )


def test_subscriptions_that_never_ping_back_are_pruned_by_the_daily_job(send, campaign_id):
    store = _store(send)
    pushed = send.subscribers(30)
    ids = _subscribe(store, pushed)
    revoked = [s["id"] for s in pushed[:10]]  # gone from the start
    late = [s["id"] for s in pushed[10:20]]  # gone after the first campaign
    browsers = SimulatedBrowsers(send.cloud.push_url, Rates(delivered=1.0, clicked=0, closed=0))

    # GIVEN three campaigns that the push service accepts for everyone (201)...
    _swallow(send, revoked)
    campaigns = [f"{campaign_id}-{i}" for i in range(3)]
    for i, campaign in enumerate(campaigns):
        if i == 1:
            _swallow(send, revoked + late)
        view = _send_to_store(send, store, campaign)
        assert view.counts["sent"] == 30 and view.counts["failed"] == 0
    # ...and browsers that ping what reached them
    stats = browsers.run_until_idle(idle_s=1.0, timeout_s=120)
    browsers.stop()
    assert stats.errors == 0 and not stats.refused
    expected_pings = 10 * 3 + 10 * 1  # the live ten thrice, the late ten once
    assert stats.accepted == expected_pings, stats

    # AND the archive holds those pings (Firehose reads the ping stream)
    athena = LocalAthena(
        send.cloud.client("s3"), physical_name("bucket", "archive"), send.cloud.home / "stale-t"
    )
    in_archive = 0
    for _ in range(60):
        (row,) = athena.run_query(
            "SELECT count(DISTINCT notification) FROM pings WHERE tenant = ?", [TENANT]
        ).rows
        in_archive = row[0]
        if in_archive >= expected_pings:
            break
        time.sleep(1)
    assert in_archive == expected_pings

    # WHEN the scheduler's daily job runs (two hours later: past the one-hour grace)
    later = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    result = send.cloud.runtime.invoke("scheduler", {"action": "stale", "now": later})
    assert result.ok, result.error

    # THEN the ten that were silent for all three sends are pruned; the late ten (two
    # silent sends, under the threshold of three) and the live ten are kept
    assert result.payload["actions"] == {PRUNED: 10}, result.payload
    left = {s.id for s in store.segment(TENANT)}
    assert left == {ids[p] for p in late + [s["id"] for s in pushed[20:]]}
    # AND the tenant's report in the audience bucket lists them, with the reason
    (key,) = result.payload["reports"]
    assert key.startswith(REPORT_PREFIX) and key.endswith(f"/{TENANT}.jsonl")
    body = send.s3.get_object(Bucket=send.bucket, Key=key)["Body"].read()
    lines = [json.loads(line) for line in body.splitlines()]
    assert {line["subscriber"] for line in lines} == {ids[p] for p in revoked}
    assert all(line["silent_sends"] == 3 and line["service"] == "other" for line in lines)

    # AND the next campaign from the store no longer sends to them
    view = _send_to_store(send, store, f"{campaign_id}-after")
    assert view.counts["sent"] == 20
