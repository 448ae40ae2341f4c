"""The whole loop on the local cloud: send 10,000 → the push service decrypts them →
simulated browsers ping like sw.js → ping_handler → Kinesis → aggregate → the report
(through the HTTP API) equals what the browsers pinged; the Firehose archive answers the
same numbers with SQL (DuckDB)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest

from pushpipe.pings.audit import named_query
from pushpipe_local.cli.session import Endpoints
from pushpipe_local.cloud.athena import LocalAthena
from pushpipe_local.cloud.cloud import physical_name
from pushpipe_local.sim.audiences import demo_campaign
from pushpipe_local.sim.browsers import Rates, SimulatedBrowsers
from pushpipe_local.sim.tenant import ensure_tenant, fetch_report, wait_for_counts

from .conftest import SendHarness

TENANT = "demo-shop"
OTHER = "other-shop"


@pytest.fixture(scope="module", autouse=True)
def _tenants(local_cloud) -> dict:
    """Both tenants exist before the first report: ping_handler caches the tenant secret
    for minutes (Powertools Parameters), as it does in AWS."""
    ep = Endpoints.from_cloud(local_cloud)
    return {TENANT: ensure_tenant(ep, TENANT), OTHER: ensure_tenant(ep, OTHER)}


def on_stream(ep: Endpoints, campaign: str) -> dict:
    """Unique notifications per (variant, type) on the pings stream: tells a ping the
    stream lost from one the counters lost."""
    from tests.support.pings import read_stream

    seen: dict[tuple[str, str], set] = {}
    for r in read_stream(physical_name("stream", "pings"), ep.client("kinesis")):
        rec = json.loads(r["Data"])
        if rec["campaign"] == campaign:
            seen.setdefault((rec["variant"], rec["type"]), set()).add(rec["notification"])
    return {k: len(v) for k, v in seen.items()}


def test_send_10k_browsers_ping_and_the_report_counts_each_once(send: SendHarness, campaign_id):
    ep = Endpoints.from_cloud(send.cloud)
    # GIVEN 10,000 subscribers who received a campaign
    subs = send.subscribers(10_000)
    etag = send.drop_audience(
        f"{campaign_id}.json", demo_campaign(campaign_id, tenant=TENANT), subs
    )
    view = send.wait_run(f"{campaign_id}.json", etag)
    assert view.state == "done", view.reason
    # what the push service delivered: distinct notifications per variant
    received = {
        r["payload"]["nid"]: r["payload"]["variant"]
        for r in send.received()
        if isinstance(r["payload"], dict) and r["payload"].get("campaign") == campaign_id
    }
    delivered_by_push = Counter(received.values())
    assert len(received) == len(subs), (len(received), view.counts)
    assert view.counts["sent"] == len(subs)

    # WHEN the browsers show them and ping back (30% delivered, 5% of those clicked)
    browsers = SimulatedBrowsers(send.cloud.push_url, Rates(seed=11), concurrency=16)
    stats = browsers.run_until_idle(idle_s=1.5, timeout_s=300)
    browsers.stop()
    expected = stats.counts(campaign_id)
    assert stats.errors == 0 and not stats.refused
    total = sum(kinds.get("delivered", 0) for kinds in expected.values())
    assert 0.27 * len(received) <= total <= 0.33 * len(received)
    # AND some browsers retry their delivery ping
    retried = SimulatedBrowsers(send.cloud.push_url, Rates(seed=11, clicked=0, closed=0))
    retried.run_until_idle(idle_s=0.5, timeout_s=300)
    retried.stop()

    # THEN the report (GET through the local HTTP API) counts every ping once
    report = wait_for_counts(ep, TENANT, campaign_id, expected, timeout_s=120)
    rows = {v["variant"]: v for v in report["variants"]}
    for variant, kinds in expected.items():
        for kind in ("delivered", "clicked", "closed"):
            assert rows[variant][kind] == kinds.get(kind, 0), (
                f"{variant}/{kind}: report {rows[variant][kind]}, browsers "
                f"{kinds.get(kind, 0)}, on the stream {on_stream(ep, campaign_id)}"
            )
        assert rows[variant]["delivered"] <= delivered_by_push[variant]
    assert sum(r["clicked"] for r in rows.values()) > 0

    # AND the audit archive answers the same funnel with SQL
    athena = LocalAthena(
        ep.client("s3"), physical_name("bucket", "archive"), send.cloud.home / "athena-test"
    )
    query = named_query("campaign-funnel")
    funnel = {}
    for _ in range(30):
        result = athena.run_query(query.sql, [TENANT, campaign_id])
        funnel = {r[0]: dict(zip(result.columns, r, strict=True)) for r in result.rows}
        if all(
            funnel.get(v, {}).get("delivered") == k.get("delivered", 0) for v, k in expected.items()
        ):
            break
        import time

        time.sleep(1)
    for variant, kinds in expected.items():
        assert funnel[variant]["delivered"] == kinds.get("delivered", 0)
        assert funnel[variant]["clicked"] == kinds.get("clicked", 0)


def test_another_tenants_key_cannot_read_the_report(send: SendHarness, _tenants):
    ep = Endpoints.from_cloud(send.cloud)
    other = _tenants[OTHER]
    req = urllib.request.Request(
        f"{ep.api_url}/v1/tenants/{TENANT}/campaigns/anything/report",
        headers={"Authorization": f"Bearer {other['report_keys'][0]}"},
    )
    try:
        urllib.request.urlopen(req, timeout=30)
        raise AssertionError("another tenant's key read the report")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403
        assert json.loads(exc.read())["error"] == "forbidden"
    assert fetch_report(ep, TENANT, "anything")["variants"] == []
