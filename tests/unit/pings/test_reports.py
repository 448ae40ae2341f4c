"""Reports over the API: numbers per variant and hour, and per-tenant authentication."""

from __future__ import annotations

import json

import pytest

from pushpipe.pings.counters import send_counter_items
from pushpipe.pings.ingest import PingRecord, aggregate_batch
from pushpipe.pings.reports import build_report
from pushpipe.shared.tokens import notification_id
from tests.support.events import FakeContext, http_event
from tests.support.pings import TENANTS

NOW = 1_780_000_000.0
PATH = "/v1/tenants/{}/campaigns/{}/report"


def pings(store, tenant, campaign, variant, kind, n, at=NOW, offset=0):
    from datetime import UTC, datetime

    batch = [
        PingRecord(
            ts=datetime.fromtimestamp(at, UTC),
            type=kind,
            tenant=tenant,
            campaign=campaign,
            variant=variant,
            notification=notification_id(campaign, f"s{i}"),
            subscriber=f"s{i}",
            exp=int(at) + 3600,
        )
        for i in range(offset, offset + n)
    ]
    aggregate_batch([(r, i) for i, r in enumerate(batch)], store, f"0.{kind}{at}{variant}", "k0")


def get(tenant, campaign, key=None):
    from functions.ping_handler.handler import handler

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    resp = handler(http_event("GET", PATH.format(tenant, campaign), headers=headers), FakeContext())
    return resp["statusCode"], json.loads(resp["body"])


ACME_KEY = TENANTS["acme"]["report_keys"][0]
GLOBEX_KEY = TENANTS["globex"]["report_keys"][0]


def test_report_shows_every_variant_and_the_control_group(store):
    items = send_counter_items(store.table)(
        "acme",
        "spring",
        {("a", "sent"): 100, ("b", "sent"): 100, ("b", "pruned"): 2, ("control", "control"): 20},
        NOW,
    )
    store.client.transact_write_items(TransactItems=items)
    pings(store, "acme", "spring", "a", "delivered", 40)
    pings(store, "acme", "spring", "b", "delivered", 30, offset=100)
    pings(store, "acme", "spring", "a", "clicked", 4)
    pings(store, "acme", "spring", "a", "closed", 10, offset=10)
    pings(store, "acme", "spring", "b", "delivered", 5, at=NOW + 3600, offset=200)

    status, body = get("acme", "spring", ACME_KEY)
    assert status == 200
    rows = {v["variant"]: v for v in body["variants"]}
    assert list(rows) == ["a", "b", "control"]
    assert (rows["a"]["sent"], rows["a"]["delivered"], rows["a"]["clicked"]) == (100, 40, 4)
    assert rows["a"]["ctr"] == pytest.approx(0.1) and rows["a"]["closed"] == 10
    assert (rows["b"]["delivered"], rows["b"]["pruned"]) == (35, 2)
    assert rows["b"]["delivery_rate"] == pytest.approx(0.35)
    assert rows["control"]["control"] == 20 and rows["control"]["ctr"] is None
    assert body["total"]["delivered"] == 75
    series = {(h["hour"], h["variant"]): h["delivered"] for h in body["hours"]}
    assert series[("2026-05-28T20", "b")] == 30 and series[("2026-05-28T21", "b")] == 5


def test_no_tenant_can_read_another_tenants_report(store):
    pings(store, "acme", "spring", "a", "delivered", 3)
    status, body = get("acme", "spring", GLOBEX_KEY)
    assert (status, body["error"]) == (403, "forbidden")
    assert "acme" in body["message"] and "delivered" not in json.dumps(body)
    # globex asking for its own tenant sees nothing of acme's campaign of the same name
    status, body = get("globex", "spring", GLOBEX_KEY)
    assert status == 200 and body["variants"] == [] and body["total"]["delivered"] == 0


@pytest.mark.parametrize("key", [None, "guess-0123456789", ACME_KEY + "x"])
def test_missing_or_unknown_keys_get_401(store, key):
    status, body = get("acme", "spring", key)
    assert (status, body["error"]) == (401, "not_authenticated")


def test_an_empty_campaign_reports_zeros(store):
    rep = build_report("acme", "nothing", store.campaign_rows("acme", "nothing"))
    assert rep.variants == [] and rep.total.sent == 0 and rep.total.ctr is None
