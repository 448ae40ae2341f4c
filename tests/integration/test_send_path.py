"""The send path end to end on the local cloud: S3 drop → SQS → send_batch (real handler,
real recursion through the local Lambda Invoke API) → local push service (VAPID checked,
aes128gcm decrypted)."""

from __future__ import annotations

import json
import time
from collections import Counter

from pushpipe_local.sim.audiences import demo_campaign

from .conftest import SendHarness


def _receptions(send: SendHarness, campaign: str) -> Counter:
    return Counter(
        r["subscriber"]
        for r in send.received()
        if isinstance(r["payload"], dict) and r["payload"].get("campaign") == campaign
    )


def test_10k_recipients_across_chains_each_received_exactly_once(send, campaign_id):
    # GIVEN 10,000 subscribers with real keys and a send_batch timeout of a few seconds
    subs = send.subscribers(10_000)
    # WHEN their audience file is dropped into S3
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    # THEN the run finished over 4 parallel chains, each of which recursed
    assert view.state == "done", view.reason
    assert view.chains == 4
    assert view.counts["sent"] == 10_000
    status = send.cloud.runtime.status()["functions"]["send_batch"]
    assert status["kinds"]["chain"] > view.chains, "chains never handed off to themselves"
    # AND every subscriber got it exactly once, VAPID-verified and decrypted
    got = _receptions(send, campaign_id)
    assert len(got) == 10_000
    assert set(got.values()) == {1}
    assert {s["id"] for s in subs} == set(got)
    payload = next(r["payload"] for r in send.received())
    assert payload["title"] and payload["ping"]["token"].startswith("v1.")


def test_an_invocation_killed_mid_batch_loses_nobody(send, campaign_id):
    # GIVEN a slow push service, so that a batch of 500 takes a while
    subs = send.subscribers(2_000)
    send.cloud.push_admin("POST", "/_admin/faults", {"latency_ms": 400})
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    # WHEN a container is killed while its batch is in flight
    pool = send.cloud.runtime.pools["send_batch"]
    end = time.time() + 60
    while time.time() < end and send.stats()["receptions"] < 50:
        time.sleep(0.02)
    killed = pool.kill_busy()
    assert killed, "no send_batch invocation was running to kill"
    send.cloud.push_admin("POST", "/_admin/faults", {"latency_ms": 0})
    view = send.wait_run(f"{campaign_id}.json", etag)
    # THEN the chain resumed (Lambda's async retry) and everybody got the push
    assert view.state == "done", view.reason
    got = _receptions(send, campaign_id)
    assert {s["id"] for s in subs} == set(got)
    # AND the only duplicates are messages of the batch that was in flight
    duplicates = sum(n - 1 for n in got.values())
    assert duplicates <= 500
    # AND the counts are exact: the killed batch never committed
    assert view.counts["sent"] == 2_000


def test_a_file_replaced_mid_send_aborts_that_run(send, campaign_id):
    old_subs = send.subscribers(3_000)
    new_subs = send.subscribers(200)
    send.cloud.push_admin("POST", "/_admin/faults", {"latency_ms": 150})
    key = f"{campaign_id}.json"
    etag = send.drop_audience(key, demo_campaign(campaign_id), old_subs)
    end = time.time() + 60
    while time.time() < end and send.stats()["receptions"] < 20:
        time.sleep(0.02)
    # WHEN marketing replaces the file while it is being sent
    send.drop_audience(key, demo_campaign(f"{campaign_id}-v2"), new_subs)
    view = send.wait_run(key, etag)
    # THEN the old run stops with a clear status
    assert view.state == "aborted"
    assert view.reason == "audience file changed"
    assert view.counts["sent"] < 3_000
    # AND nothing of the new content went out under the old run
    old_ids = {s["id"] for s in old_subs}
    assert set(_receptions(send, campaign_id)) <= old_ids
    assert view.counts["sent"] == len(_receptions(send, campaign_id))


def test_gone_subscriptions_are_pruned_and_not_retried(send, campaign_id):
    subs = send.subscribers(300)
    gone = [s["id"] for s in subs[:25]]
    send.cloud.push_admin(
        "POST",
        "/_admin/faults",
        {
            "rules": [
                {"status": 410, "subscribers": gone[:20]},
                {"status": 404, "subscribers": gone[20:]},
            ]
        },
    )
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done"
    assert view.counts["pruned"] == 25
    assert view.counts["sent"] == 275
    assert view.counts["retried"] == 0
    stats = send.stats()
    assert stats["by_status"].get("410") == 20 and stats["by_status"].get("404") == 5
    assert not set(gone) & set(_receptions(send, campaign_id))


def test_429_with_retry_after_is_retried_after_the_wait(send, campaign_id):
    subs = send.subscribers(200)
    throttled = [s["id"] for s in subs[:10]]
    send.cloud.push_admin(
        "POST",
        "/_admin/faults",
        {"rules": [{"status": 429, "retry_after": 1, "times": 1, "subscribers": throttled}]},
    )
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done"
    assert view.counts["sent"] == 200
    assert view.counts["retried"] == 10
    assert send.stats()["by_status"].get("429") == 10
    # the retried ones arrived at least Retry-After later than the batch's first push
    records = [r for r in send.received() if r["payload"].get("campaign") == campaign_id]
    first = min(r["received_at"] for r in records)
    late = [r["received_at"] - first for r in records if r["subscriber"] in throttled]
    assert len(late) == 10 and min(late) >= 0.9


def test_a_wns_406_is_throttling_retried_and_delivered_not_a_failure(send, campaign_id):
    subs = send.subscribers(100)
    throttled = [s["id"] for s in subs[:10]]
    send.cloud.push_admin(
        "POST",
        "/_admin/faults",
        {"rules": [{"status": 406, "times": 1, "subscribers": throttled}]},
    )
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done"
    assert view.counts["sent"] == 100 and view.counts["failed"] == 0
    assert send.stats()["by_status"].get("406") == 10
    assert set(_receptions(send, campaign_id).values()) == {1}


def test_throttling_that_outlasts_a_batch_is_carried_not_failed(send, campaign_id):
    subs = send.subscribers(100)
    throttled = [s["id"] for s in subs[:5]]
    # more 429s than one batch retries (4 attempts): the rest of the chain goes on, the
    # five are carried with the cursor and delivered by a later batch
    send.cloud.push_admin(
        "POST",
        "/_admin/faults",
        {"rules": [{"status": 429, "retry_after": 0, "times": 6, "subscribers": throttled}]},
    )
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done", view
    assert view.counts["sent"] == 100 and view.counts["failed"] == 0
    got = _receptions(send, campaign_id)
    assert set(got) == {s["id"] for s in subs} and set(got.values()) == {1}


def test_a_declarative_campaign_is_delivered_in_the_declarative_shape(send, campaign_id):
    subs = send.subscribers(50)
    campaign = {**demo_campaign(campaign_id), "declarative": True}
    etag = send.drop_audience(f"{campaign_id}.json", campaign, subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done" and view.counts["sent"] == 50
    mine = [
        r["payload"]
        for r in send.received()
        if isinstance(r["payload"], dict)
        and r["payload"].get("notification", {}).get("data", {}).get("campaign") == campaign_id
    ]
    assert len(mine) == 50
    assert all(p["web_push"] == 8030 and p["mutable"] is True for p in mine)
    assert all(p["notification"]["navigate"].startswith("https://shop.example/") for p in mine)


def test_a_malformed_file_is_rejected_with_a_reason_and_nothing_is_sent(send, campaign_id):
    subs = send.subscribers(50)
    good = json.dumps(
        {
            "campaign": demo_campaign(campaign_id),
            "recipients": [{"id": s["id"], "subscription": s} for s in subs],
        }
    )
    cases = {
        "truncated.json": good[: len(good) - 40].encode(),
        "not-json.json": b"id,endpoint\n1,https://x\n",
        "bad-header.json": json.dumps(
            {"campaign": {"id": campaign_id, "tenant": "t"}, "recipients": []}
        ).encode(),
        "recipients-first.json": json.dumps(
            {"recipients": [], "campaign": demo_campaign(campaign_id)}
        ).encode(),
    }
    reasons = {}
    for name, body in cases.items():
        key = f"{campaign_id}-{name}"
        reasons[name] = send.wait_run(key, send.drop(key, body)).reason
    assert "not valid JSON" in reasons["truncated.json"]
    assert "not valid JSON" in reasons["not-json.json"]
    assert "campaign header is invalid" in reasons["bad-header.json"]
    assert "message" in reasons["bad-header.json"]
    assert "must come before recipients" in reasons["recipients-first.json"]
    assert send.stats()["requests"] == 0


def test_malformed_recipients_are_skipped_and_counted(send, campaign_id):
    subs = send.subscribers(20)
    recipients = [{"id": s["id"], "subscription": s} for s in subs]
    recipients[3] = {"id": "no-keys", "subscription": {"endpoint": subs[3]["endpoint"]}}
    recipients[7]["subscription"] = {**subs[7], "keys": {"p256dh": "short", "auth": "x"}}
    body = json.dumps({"campaign": demo_campaign(campaign_id), "recipients": recipients})
    view = send.wait_run("m.json", send.drop("m.json", body.encode()))
    assert view.state == "done"
    assert view.malformed == 2
    assert view.counts["rejected"] == 2
    assert view.counts["sent"] == 18


def test_a_duplicate_s3_event_starts_no_second_send(send, campaign_id):
    subs = send.subscribers(100)
    key = f"{campaign_id}.json"
    etag = send.drop_audience(key, demo_campaign(campaign_id), subs)
    send.wait_run(key, etag)
    # WHEN the same notification arrives again (S3 delivers at least once)
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": send.bucket},
                    "object": {"key": f"audiences/{key}", "eTag": etag},
                },
            }
        ]
    }
    sqs = send.cloud.client("sqs")
    sqs.send_message(
        QueueUrl=send.cloud.queue_urls["audience-events"], MessageBody=json.dumps(event)
    )
    time.sleep(2)
    assert send.cloud.runtime.wait_idle(30)
    # THEN nobody gets it twice
    assert set(_receptions(send, campaign_id).values()) == {1}
    assert send.stats()["receptions"] == 100


def test_outcomes_land_in_the_campaign_counters_per_variant_once(send, campaign_id):
    from pushpipe.pings.counters import CounterStore
    from pushpipe_local.cloud.cloud import physical_name

    subs = send.subscribers(1_000)
    gone = [s["id"] for s in subs[:40]]
    send.cloud.push_admin(
        "POST", "/_admin/faults", {"rules": [{"status": 410, "subscribers": gone}]}
    )
    campaign = demo_campaign(
        campaign_id,
        variants=[{"id": "A", "percent": 45}, {"id": "B", "percent": 45}],
        control_percent=10,
    )
    etag = send.drop_audience(f"{campaign_id}.json", campaign, subs)
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done"
    store = CounterStore(physical_name("table", "counters"), client=send.cloud.client("dynamodb"))
    totals: Counter = Counter()
    for row in store.campaign_rows("demo-shop", campaign_id):
        for metric, n in row.metrics.items():
            totals[(row.variant, metric)] += int(n)
    by_metric: Counter = Counter()
    for (_, metric), n in totals.items():
        by_metric[metric] += n
    # every outcome counted exactly once, and the same numbers as the run record
    assert by_metric["sent"] == view.counts["sent"] == _receptions_count(send, campaign_id)
    from pushpipe.audience.format import Variant
    from pushpipe.audience.variants import assign

    split = (Variant("A", 45, {}), Variant("B", 45, {}))
    gone_and_pushed = sum(assign(campaign_id, s, split, 10) != "control" for s in gone)
    assert by_metric["pruned"] == view.counts["pruned"] == gone_and_pushed
    assert by_metric["control"] == view.counts["control"]
    assert by_metric["sent"] + by_metric["pruned"] + by_metric["control"] == 1_000
    # the control group got nothing, the variants split around their percents
    assert 60 < totals[("control", "control")] < 140
    received = {
        r["subscriber"]: r["payload"]["variant"]
        for r in send.received()
        if r["payload"].get("campaign") == campaign_id
    }
    assert set(received.values()) == {"A", "B"}
    assert totals[("A", "sent")] == sum(v == "A" for v in received.values())


def _receptions_count(send, campaign: str) -> int:
    return sum(_receptions(send, campaign).values())
