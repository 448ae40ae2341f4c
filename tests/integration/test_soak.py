"""Soak: a large audience through the local cloud (``make soak``, not the default run)."""

from __future__ import annotations

from collections import Counter

import pytest

from pushpipe_local.sim.audiences import demo_campaign

pytestmark = pytest.mark.slow


def test_100k_recipients_each_received_exactly_once(send, campaign_id):
    subs = send.subscribers(100_000)
    etag = send.drop_audience(f"{campaign_id}.json", demo_campaign(campaign_id), subs)
    view = send.wait_run(f"{campaign_id}.json", etag, timeout_s=1800)
    assert view.state == "done", view.reason
    assert view.counts["sent"] == 100_000
    got = Counter(
        r["subscriber"]
        for r in send.received()
        if isinstance(r["payload"], dict) and r["payload"].get("campaign") == campaign_id
    )
    assert len(got) == 100_000 and set(got.values()) == {1}
    chains = send.cloud.runtime.status()["functions"]["send_batch"]["kinds"]["chain"]
    assert chains > 4 * 10, "a 100k send recurses many times"
