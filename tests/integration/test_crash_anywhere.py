"""Crash anywhere: send_batch containers killed at random moments of a send (mid-batch,
between batches, at a hand-off, during a commit), again and again. Every recipient is
received, duplicates come only from batches that were in flight when a container died,
and the run's counts are exact.

The default run kills 10 times; ``make soak`` runs the 50-kill variant."""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from pushpipe_local.sim.audiences import demo_campaign

from .conftest import SendHarness

BATCH = 500  # SEND_BATCH_SIZE in the local cloud


def _receptions(send: SendHarness, campaign: str) -> Counter:
    return Counter(
        r["subscriber"]
        for r in send.received()
        if isinstance(r["payload"], dict) and r["payload"].get("campaign") == campaign
    )


def _crash_anywhere(send: SendHarness, campaign_id: str, n: int, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    subs = send.subscribers(n)
    send.cloud.push_admin("POST", "/_admin/faults", {"latency_ms": 60})
    key = f"{campaign_id}.json"
    etag = send.drop_audience(key, demo_campaign(campaign_id), subs)
    run_id = send.run_id(key, etag)
    pool = send.cloud.runtime.pools["send_batch"]
    end = time.time() + 60
    while time.time() < end and send.stats()["receptions"] < 20:
        time.sleep(0.01)
    killed = 0
    deadline = time.time() + 240
    while killed < kills and time.time() < deadline:
        time.sleep(rng.uniform(0.05, 1.2))
        view = send.store.view(run_id)
        if view is not None and view.state != "running":
            break
        if pool.kill_busy():
            killed += 1
    send.cloud.push_admin("POST", "/_admin/faults", {"latency_ms": 0})
    # chains whose retries were killed too are resumed by the sweeper (every 5 min when
    # deployed; here the test runs it)
    end = time.time() + 300
    while time.time() < end:
        view = send.store.view(run_id)
        if view is not None and view.state not in ("running", "admitting"):
            break
        send.cloud.runtime.invoke("send_batch", {"action": "sweep"})
        time.sleep(1.0)
    view = send.wait_run(key, etag, timeout_s=60)
    assert killed >= min(kills, 3), f"only {killed} kills landed (seed {seed})"
    assert view.state == "done", f"{view.state}: {view.reason} (seed {seed}, {killed} kills)"
    got = _receptions(send, campaign_id)
    assert {s["id"] for s in subs} == set(got), f"recipients lost (seed {seed})"
    duplicates = sum(c - 1 for c in got.values())
    assert duplicates <= killed * BATCH, (duplicates, killed, seed)
    assert view.counts["sent"] == n, f"counts not exact (seed {seed})"
    assert view.counts["failed"] == 0


def test_ten_random_kills_lose_nobody_and_keep_counts_exact(send, campaign_id):
    _crash_anywhere(send, campaign_id, n=4_000, kills=10, seed=int(time.time()) % 10_000)


@pytest.mark.slow
def test_fifty_random_kills_lose_nobody_and_keep_counts_exact(send, campaign_id):
    _crash_anywhere(send, campaign_id, n=20_000, kills=50, seed=int(time.time()) % 10_000)
