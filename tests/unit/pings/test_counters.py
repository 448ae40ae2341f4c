"""Counters: batch folding, exactly-once dedup, write budget, send-path transaction items."""

from __future__ import annotations

from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from pushpipe.pings.counters import (
    CountedPing,
    CounterKey,
    CounterStore,
    counter_transact_items,
    fold_pings,
    hour_window,
    send_counter_items,
)
from pushpipe.pings.ingest import PingRecord, aggregate_batch
from pushpipe.pings.reports import build_report
from pushpipe.shared.tokens import notification_id
from tests.support.pings import REGION, provision

NOW = 1_780_000_000.0  # 2026-05-28T20:26:40Z


@pytest.fixture
def store():
    with mock_aws():
        p = provision("unit")
        yield CounterStore(p.counters_table, boto3.client("dynamodb", region_name=REGION))


def ping(
    subscriber: str,
    type_: str = "delivered",
    campaign: str = "spring",
    variant: str = "a",
    at: float = NOW,
    tenant: str = "acme",
) -> PingRecord:
    from datetime import UTC, datetime

    return PingRecord(
        ts=datetime.fromtimestamp(at, UTC),
        type=type_,
        tenant=tenant,
        campaign=campaign,
        variant=variant,
        notification=notification_id(campaign, subscriber),
        subscriber=subscriber,
        exp=int(at) + 86400,
    )


def report(store: CounterStore, campaign: str = "spring", tenant: str = "acme"):
    return build_report(tenant, campaign, store.campaign_rows(tenant, campaign))


def variant(rep, name: str):
    return next(v for v in rep.variants if v.variant == name)


class _NeverSeen:
    def seen(self, *args) -> bool:
        return False


def test_fold_groups_one_increment_per_key_and_drops_in_batch_repeats():
    pings = [
        CountedPing("delivered", "acme", "spring", "a", f"n{i:023d}", f"s{i}", NOW, 0)
        for i in range(10)
    ]
    pings.append(pings[0])  # the same ping twice in one batch
    folds = fold_pings([(p, i) for i, p in enumerate(pings)], _NeverSeen())
    fold = folds[("acme", "spring")]
    assert fold.increments == {CounterKey("acme", "spring", "a", hour_window(NOW), "delivered"): 10}
    assert fold.duplicates == 1
    assert len(fold.records) == 11


def test_a_thousand_pings_cost_a_handful_of_writes(store):
    batch = [ping(f"s{i}", variant="ab"[i % 2]) for i in range(950)]
    batch += [ping(f"s{i}", "clicked", variant="ab"[i % 2]) for i in range(50)]
    outcome = aggregate_batch([(r, i) for i, r in enumerate(batch)], store, "0.1", "k0")
    assert outcome.counted == 1000 and not outcome.failed
    # dedup fragment + click fragment + one counter item per variant
    assert store.writes == 4
    rep = report(store)
    assert (variant(rep, "a").delivered, variant(rep, "b").delivered) == (475, 475)
    assert (variant(rep, "a").clicked, variant(rep, "b").clicked) == (25, 25)


def test_replayed_batch_and_retried_pings_count_once(store):
    batch = [ping(f"s{i}") for i in range(100)]
    aggregate_batch([(r, i) for i, r in enumerate(batch)], store, "0.1", "k0")
    # GIVEN the same batch again (a Lambda retry) and browser retries mixed with new pings
    again = aggregate_batch([(r, i) for i, r in enumerate(batch)], store, "0.2", "k0")
    mixed = [ping("s5"), ping("s6"), ping("new-1"), ping("s5", "clicked")]
    later = aggregate_batch([(r, i) for i, r in enumerate(mixed)], store, "0.3", "k0")
    # THEN only the pings never seen count
    assert again.counted == 0 and again.duplicates == 100
    assert later.counted == 2 and later.duplicates == 2
    rep = report(store)
    assert variant(rep, "a").delivered == 101
    assert variant(rep, "a").clicked == 1


def test_dedup_survives_a_cold_container_and_other_writers(store):
    aggregate_batch([(ping("s1"), 0), (ping("s2"), 1)], store, "0.1", "k0")
    # a new container (empty cache) on another shard sees what the first one committed
    cold = CounterStore(store.table, store.client)
    out = aggregate_batch([(ping("s1"), 0), (ping("s3"), 1)], cold, "1.1", "k1")
    assert (out.counted, out.duplicates) == (1, 1)
    # and the first container picks up the cold one's fragment on its next refresh
    out = aggregate_batch([(ping("s3"), 0)], store, "0.2", "k0")
    assert (out.counted, out.duplicates) == (0, 1)
    assert variant(report(store), "a").delivered == 3


def test_types_are_deduplicated_separately_and_campaigns_apart(store):
    batch = [
        ping("s1", "delivered"),
        ping("s1", "clicked"),
        ping("s1", "closed"),
        ping("s1", "delivered", campaign="summer"),
    ]
    out = aggregate_batch([(r, i) for i, r in enumerate(batch)], store, "0.1", "k0")
    assert out.counted == 4 and out.campaigns == 2
    rep = report(store)
    assert (variant(rep, "a").delivered, variant(rep, "a").clicked) == (1, 1)
    assert variant(rep, "a").closed == 1
    assert variant(report(store, "summer"), "a").delivered == 1


def test_counters_are_hourly_and_shards_are_summed(store):
    first = [ping(f"s{i}", at=NOW) for i in range(3)]
    second = [ping(f"t{i}", at=NOW + 3600) for i in range(2)]
    aggregate_batch([(r, i) for i, r in enumerate(first)], store, "0.1", "k0")
    aggregate_batch([(r, i) for i, r in enumerate(second)], store, "1.1", "k1")
    rep = report(store)
    assert variant(rep, "a").delivered == 5
    hours = {(h.hour, h.variant): h.delivered for h in rep.hours}
    assert hours == {(hour_window(NOW), "a"): 3, (hour_window(NOW + 3600), "a"): 2}


def test_a_failed_commit_reports_its_records_and_counts_nothing(store, monkeypatch):
    def boom(**kwargs):
        from botocore.exceptions import ClientError

        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
            "TransactWriteItems",
        )

    batch = [(ping("s1"), "seq-1"), (ping("s2"), "seq-2")]
    monkeypatch.setattr(store.client, "transact_write_items", boom)
    out = aggregate_batch(batch, store, "0.1", "k0")
    assert out.failed == ["seq-1", "seq-2"] and out.counted == 0
    assert "ProvisionedThroughputExceeded" in out.errors[0]
    monkeypatch.undo()
    # the retry counts them, once
    out = aggregate_batch(batch, store, "0.2", "k0")
    assert out.counted == 2
    assert variant(report(store), "a").delivered == 2


def test_send_path_items_commit_in_its_transaction(store):
    items = send_counter_items(store.table, shard="s3")(
        "acme", "spring", {("a", "sent"): 400, ("a", "pruned"): 3, ("control", "control"): 50}, NOW
    )
    assert len(items) == 2  # one Update per counter item, every metric of it in one ADD
    store.client.transact_write_items(TransactItems=items)
    store.client.transact_write_items(TransactItems=items)
    rep = report(store)
    assert (variant(rep, "a").sent, variant(rep, "a").pruned) == (800, 6)
    assert variant(rep, "control").control == 100
    assert rep.variants[-1].variant == "control"


def test_counter_keys_refuse_separators_and_unknown_metrics():
    with pytest.raises(ValueError, match="campaign"):
        CounterKey("acme", "a#b", "a", "2026-01-01T00", "sent")
    with pytest.raises(ValueError, match="metric"):
        CounterKey("acme", "c", "a", "2026-01-01T00", "Sent!")
    with pytest.raises(ValueError, match="window"):
        CounterKey("acme", "c", "a", "2026-01-01", "sent")
    with pytest.raises(ValueError, match="shard"):
        counter_transact_items("t", {}, shard="S#1")


def test_revenue_is_summed_per_currency(store):
    key = ("acme", "spring", "a", hour_window(NOW))
    store.client.transact_write_items(
        TransactItems=counter_transact_items(
            store.table,
            {
                CounterKey(*key, "orders"): 2,
                CounterKey(*key, "revenue:EUR"): Decimal("19.90"),
                CounterKey(*key, "revenue:USD"): Decimal("5.05"),
            },
        )
    )
    rep = report(store)
    assert variant(rep, "a").revenue == {"EUR": Decimal("19.90"), "USD": Decimal("5.05")}
    assert variant(rep, "a").orders == 2


def test_report_reads_are_independent_of_ping_volume(store):
    small = [ping(f"s{i}") for i in range(10)]
    aggregate_batch([(r, i) for i, r in enumerate(small)], store, "0.1", "k0")
    store.reads = 0
    report(store)
    reads_small = store.reads
    big = [ping(f"b{i}") for i in range(2000)]
    for n in range(0, 2000, 500):
        aggregate_batch([(r, i) for i, r in enumerate(big[n : n + 500])], store, f"0.{n}", "k0")
    store.reads = 0
    rep = report(store)
    assert store.reads == reads_small == 1
    assert variant(rep, "a").delivered == 2010
