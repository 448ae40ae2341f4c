"""Revenue attribution: window edges, duplicates, no click, HMAC webhooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pushpipe.pings.attribution import OrderIn, record_order
from pushpipe.pings.ingest import PingRecord, aggregate_batch
from pushpipe.pings.reports import build_report
from pushpipe.shared.tenants import webhook_signature
from pushpipe.shared.tokens import notification_id
from tests.support.events import FakeContext, http_event
from tests.support.pings import TENANTS

CLICK_AT = 1_780_000_000.0
H = 3600


def click(store, subscriber="buyer", campaign="spring", variant="b", at=CLICK_AT, tenant="acme"):
    rec = PingRecord(
        ts=datetime.fromtimestamp(at, UTC),
        type="clicked",
        tenant=tenant,
        campaign=campaign,
        variant=variant,
        notification=notification_id(campaign, subscriber),
        subscriber=subscriber,
        exp=int(at) + 86400,
    )
    aggregate_batch([(rec, 0)], store, f"0.{at}", "k0")


def order(order_id="o-1", at=CLICK_AT + H, subscriber="buyer", amount="49.90") -> OrderIn:
    return OrderIn(
        order_id=order_id,
        subscriber=subscriber,
        amount=Decimal(amount),
        currency="EUR",
        ts=datetime.fromtimestamp(at, UTC),
    )


def revenue(store, campaign="spring", tenant="acme"):
    rep = build_report(tenant, campaign, store.campaign_rows(tenant, campaign))
    return {v.variant: (v.orders, v.revenue) for v in rep.variants if v.orders}


def test_an_order_after_a_click_is_attributed_to_that_campaign_and_variant(store):
    click(store)
    result = record_order(order(), "acme", 24, store, now=CLICK_AT + H)
    assert result.attributed and result.attribution.campaign == "spring"
    assert result.attribution.variant == "b"
    assert revenue(store) == {"b": (1, {"EUR": Decimal("49.90")})}


@pytest.mark.parametrize(
    ("delay_s", "attributed"),
    [(0, True), (24 * H, True), (24 * H + 1, False), (-1, False)],
    ids=["same-second", "window-edge", "one-second-late", "order-before-click"],
)
def test_window_edges(store, delay_s, attributed):
    click(store)
    result = record_order(order(at=CLICK_AT + delay_s), "acme", 24, store, now=CLICK_AT + H)
    assert result.attributed is attributed
    assert bool(revenue(store)) is attributed


def test_the_last_click_in_the_window_wins(store):
    click(store, campaign="spring", at=CLICK_AT)
    click(store, campaign="summer", variant="a", at=CLICK_AT + 2 * H)
    click(store, subscriber="someone-else", campaign="autumn", at=CLICK_AT + 3 * H)
    result = record_order(order(at=CLICK_AT + 4 * H), "acme", 24, store, now=CLICK_AT + 4 * H)
    assert (result.attribution.campaign, result.attribution.variant) == ("summer", "a")
    assert revenue(store, "spring") == {}
    assert revenue(store, "summer") == {"a": (1, {"EUR": Decimal("49.90")})}


def test_an_order_delivered_twice_counts_once_and_answers_the_same(store):
    click(store)
    first = record_order(order(), "acme", 24, store, now=CLICK_AT + H)
    second = record_order(order(), "acme", 24, store, now=CLICK_AT + 2 * H)
    assert second.duplicate and not first.duplicate
    assert second.attribution == first.attribution
    assert revenue(store) == {"b": (1, {"EUR": Decimal("49.90")})}


def test_an_order_with_no_click_is_recorded_but_attributed_to_nothing(store):
    result = record_order(order(), "acme", 24, store, now=CLICK_AT + H)
    assert not result.attributed and result.attribution is None
    # a click arriving later does not turn the recorded order into revenue twice
    click(store)
    again = record_order(order(), "acme", 24, store, now=CLICK_AT + 2 * H)
    assert again.duplicate and not again.attributed
    assert revenue(store) == {}


def test_clicks_of_another_tenant_do_not_attribute(store):
    click(store, tenant="globex")
    assert not record_order(order(), "acme", 24, store, now=CLICK_AT + H).attributed


# --- the webhook over the handler -------------------------------------------------------
def webhook(body: dict, tenant="acme", secret=None, signature=None):
    raw = json.dumps(body)
    secret = secret or TENANTS[tenant]["webhook_secret"]
    sig = signature or webhook_signature(secret, raw.encode())
    return http_event(
        "POST",
        "/v1/orders",
        raw,
        headers={
            "Content-Type": "application/json",
            "X-Pushpipe-Tenant": tenant,
            "X-Pushpipe-Hmac-Sha256": sig,
        },
    )


def call(event):
    from functions.ping_handler.handler import handler

    resp = handler(event, FakeContext())
    return resp["statusCode"], json.loads(resp["body"])


ORDER = {
    "order_id": "1001",
    "subscriber": "buyer",
    "amount": "12.50",
    "currency": "EUR",
    "ts": datetime.fromtimestamp(CLICK_AT + 60, UTC).isoformat(),
}


def test_webhook_with_a_valid_hmac_records_the_order(store):
    click(store)
    status, body = call(webhook(ORDER))
    assert status == 200 and body["attributed"] and not body["duplicate"]
    status, body = call(webhook(ORDER))
    assert status == 200 and body["duplicate"]
    assert revenue(store) == {"b": (1, {"EUR": Decimal("12.50")})}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"secret": "not-the-secret-of-acme-at-all"},
        {"signature": "bm9wZQ=="},
        {"secret": TENANTS["globex"]["webhook_secret"]},  # another tenant's secret
    ],
    ids=["wrong-secret", "garbage-signature", "other-tenants-secret"],
)
def test_webhook_with_a_bad_hmac_is_refused_and_counts_nothing(store, kwargs):
    click(store)
    status, body = call(webhook(ORDER, **kwargs))
    assert (status, body["error"]) == (401, "not_authenticated")
    assert revenue(store) == {}


def test_webhook_without_headers_says_which_is_missing(store):
    event = http_event("POST", "/v1/orders", ORDER)
    status, body = call(event)
    assert status == 401 and "X-Pushpipe-Tenant" in body["message"]


def test_webhook_body_is_validated(store):
    status, body = call(webhook({**ORDER, "currency": "euro"}))
    assert (status, body["error"]) == (422, "invalid_request")
    assert "currency" in body["message"]
