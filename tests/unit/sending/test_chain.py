"""Admission, chains, cursor, resume and fencing — the send domain with moto in-process.

The push service is replaced by a recording sender behind the ``Sender`` port; the real
sender is tested in ``test_sender.py`` and end to end in ``tests/integration``.
"""

from __future__ import annotations

from collections import Counter

import pytest

from pushpipe.push.models import Outcome
from pushpipe.sending import service as sending
from pushpipe.sending.runs import run_id_for
from pushpipe.sending.service import SendConfig, admit, run_chain, sweep
from pushpipe.shared.errors import Fenced
from pushpipe_local.sim.audiences import audience_bytes, demo_campaign
from tests.support.sending import (
    AUTH,
    BUCKET,
    P256DH,
    RecordingSender,
    drive,
    drop,
)


def test_chains_recurse_and_send_everybody_exactly_once(world):
    ports, _, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 2_345)
    config = SendConfig(chains=3, batch_size=100)
    result = admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, lease_ms=60_000)
    assert (result.status, result.total, result.chains) == ("started", 2_345, 3)
    invocations = drive(ports, config)
    assert invocations > 3 * 5  # one batch per invocation: they recursed
    assert Counter(ports.sender.sent) == Counter(f"s{i}" for i in range(2_345))
    view = ports.runs.view(result.run_id)
    assert view.state == "done" and view.counts["sent"] == 2_345 and view.processed == 2_345
    # warm resume: each chain opened the object once, then continued its cached stream
    assert ports.objects.opens == 2 + 3  # admission (header, scan) + one per chain


def test_a_cold_resume_reopens_at_the_cursor_and_skips_nothing(world):
    ports, _, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 1_000)
    config = SendConfig(chains=2, batch_size=100)
    admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, lease_ms=60_000)
    invocations = drive(ports, config, cold=True)
    assert ports.objects.opens == 2 + invocations
    assert Counter(ports.sender.sent) == Counter(f"s{i}" for i in range(1_000))


def test_a_duplicate_s3_event_or_async_retry_starts_no_second_send(world):
    ports, _, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 50)
    config = SendConfig(chains=1, batch_size=100)
    assert (
        admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).status == "started"
    )
    assert (
        admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).status
        == "duplicate"
    )
    assert len(ports.invoker.events) == 1
    # the same hand-off delivered twice: the second finds the chain taken or finished
    ports.invoker.events.append(dict(ports.invoker.events[0]))
    drive(ports, config)
    assert len(ports.sender.sent) == 50


def test_two_invocations_of_a_chain_never_send_at_once(world):
    ports, clock, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 10)
    config = SendConfig(chains=1, batch_size=5)
    run_id = admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).run_id
    first = ports.runs.acquire(run_id, 0, int(clock.now * 1000) + 60_000, "req-a")
    assert first is not None
    # while A holds the lease, B (another request) cannot take the chain
    assert ports.runs.acquire(run_id, 0, int(clock.now * 1000) + 60_000, "req-b") is None
    # A's retry (same request id, after A ended) can take over at once
    retry = ports.runs.acquire(run_id, 0, int(clock.now * 1000) + 60_000, "req-a")
    assert retry is not None and retry.epoch == first.epoch + 1
    # A is fenced: its commit fails and it must stop
    with pytest.raises(Fenced):
        ports.runs.commit(run_id, first, 5, {"sent": 5})
    ports.runs.commit(run_id, retry, 5, {"sent": 5})
    assert ports.runs.view(run_id).counts["sent"] == 5


def test_the_sweeper_resumes_a_chain_whose_invocation_died(world):
    ports, clock, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 30)
    config = SendConfig(chains=1, batch_size=10, sweep_grace_ms=60_000)
    run_id = admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).run_id
    ports.invoker.events.clear()  # the first invocation is lost...
    dead = ports.runs.acquire(run_id, 0, int(clock.now * 1000) + 900_000, "req-dead")
    ports.runs.commit(run_id, dead, 10, {"sent": 10})  # ...after one batch, then it died
    assert sweep(ports, config) == []  # its lease has not lapsed yet
    clock.now += 900 + 61
    resumed = sweep(ports, config)
    assert [c.chain for c in resumed] == [0]
    drive(ports, config)
    assert sorted(ports.sender.sent, key=lambda s: int(s[1:])) == [f"s{i}" for i in range(10, 30)]
    assert ports.runs.view(run_id).state == "done"


def test_a_file_replaced_between_batches_aborts_the_run(world):
    ports, _, s3 = world
    etag = drop(s3, "audiences/demo-shop/a.json", 300)
    config = SendConfig(chains=1, batch_size=100)
    run_id = admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).run_id
    event = ports.invoker.events.pop()
    calls = {"n": 0}

    def remaining() -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # 1: the invocation's deadline; 2: after the first batch
            drop(s3, "audiences/demo-shop/a.json", 5, campaign="other")  # replaced mid-send
        return 900_000

    result = run_chain(sending.Cursor.from_event(event["cursor"]), ports, config, remaining)
    assert result.status == "aborted"
    view = ports.runs.view(run_id)
    assert view.state == "aborted" and view.reason == "audience file changed"
    assert len(ports.sender.sent) == 100


def test_outcomes_are_counted_and_archived(world):
    ports, _, s3 = world
    ports.sender = RecordingSender(Outcome.PRUNED)
    pruned: list[str] = []
    ports.on_pruned = lambda tenant, ids: pruned.extend(ids)
    etag = drop(s3, "audiences/demo-shop/a.json", 20)
    config = SendConfig(chains=1, batch_size=100)
    run_id = admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, config, 60_000).run_id
    drive(ports, config)
    assert ports.runs.view(run_id).counts["pruned"] == 20 and len(pruned) == 20
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="archive")["Contents"]]
    lines = b"".join(s3.get_object(Bucket="archive", Key=k)["Body"].read() for k in keys)
    records = [line for line in lines.splitlines() if line]
    assert len(records) == 20 and all(b'"outcome":"pruned"' in r for r in records)


def test_a_rejected_file_records_the_reason_and_sends_nothing(world):
    ports, _, s3 = world
    etag = s3.put_object(Bucket=BUCKET, Key="audiences/demo-shop/x.json", Body=b'{"campaign": 1}')[
        "ETag"
    ].strip('"')
    result = admit(BUCKET, "audiences/demo-shop/x.json", etag, ports, SendConfig(), 60_000)
    assert result.status == "rejected" and "JSON object" in result.reason
    head = ports.runs.run_header(run_id_for(BUCKET, "audiences/demo-shop/x.json", etag))
    assert head["state"] == "rejected" and "JSON object" in head["reason"]
    assert ports.invoker.events == [] and ports.sender.sent == []


def test_every_push_carries_a_topic_so_a_resent_duplicate_collapses(world):
    ports, _, s3 = world
    topics: list[str | None] = []

    class TopicSender(RecordingSender):
        def send(self, messages, *, dry_run=None, budget_s=None):
            topics.extend(m.topic for m in messages)
            return super().send(messages)

    ports.sender = TopicSender()
    etag = drop(s3, "audiences/demo-shop/a.json", 10)
    admit(BUCKET, "audiences/demo-shop/a.json", etag, ports, SendConfig(chains=1), 60_000)
    drive(ports, SendConfig(chains=1))
    assert set(topics) == {"spring-sale"}  # the campaign's own topic
    # a campaign without one gets a topic derived from its id
    topics.clear()
    campaign = {k: v for k, v in demo_campaign("no-topic").items() if k != "topic"}
    recipients = [
        {
            "id": f"s{i}",
            "subscription": {
                "endpoint": f"https://fcm.googleapis.com/fcm/send/{i}",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        }
        for i in range(5)
    ]
    etag = s3.put_object(
        Bucket=BUCKET, Key="audiences/demo-shop/b.json", Body=audience_bytes(campaign, recipients)
    )["ETag"].strip('"')
    admit(BUCKET, "audiences/demo-shop/b.json", etag, ports, SendConfig(chains=1), 60_000)
    drive(ports, SendConfig(chains=1))
    assert set(topics) == {sending.default_topic("no-topic")}
    assert sending.default_topic("c1") == sending.default_topic("c1")
    assert len(sending.default_topic("c1")) == 32
    assert set(sending.default_topic("c1")) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
