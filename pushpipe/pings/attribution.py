"""Revenue: orders reported by the shop, attributed to the last notification the buyer
clicked within the tenant's attribution window.

* The click side is written by the aggregate: one click fragment per campaign per batch
  (``K#<tenant>``), in the same transaction as the click counters, so no write per click.
* An order is looked up against the clicks committed in ``[order - window - slack, now]``
  and the latest click with ``0 <= order.ts - click.ts <= window`` wins (both ends
  inclusive).
* An order id counts once: its item (``O#<tenant>``/order id) is put with
  ``attribute_not_exists`` in the same transaction as the ``orders`` and ``revenue``
  counters. A redelivered webhook cancels on that condition and gets the first answer.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pushpipe.pings.counters import (
    REVENUE_PREFIX,
    CounterKey,
    CounterStore,
    check_id,
    counter_transact_items,
    hour_window,
)
from pushpipe.pings.exposures import CONVERSION_REVENUE_PREFIX, CONVERSIONS, index_for
from pushpipe.shared.errors import StoreError

ORDER_TTL_S = 90 * 24 * 3600  # webhooks are retried for days; keep the id well beyond
CLICK_COMMIT_SLACK_S = 3600  # a click is committed at most this long after it happened
ORDER_SHARDS = 8  # orders of one campaign spread over this many counter items
MAX_CONVERSIONS = 40  # A/B campaigns one order counts for (one transaction holds 100 items)


class OrderIn(BaseModel):
    """The shop's order webhook body."""

    model_config = ConfigDict(extra="ignore")

    order_id: Annotated[str, Field(min_length=1, max_length=128)]
    subscriber: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="the pushpipe subscriber id of the buyer (set by subscribe.js)"
    )
    amount: Decimal = Field(ge=0, le=Decimal("1e9"), decimal_places=4)
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
    ts: datetime = Field(description="when the order was placed (ISO-8601)")

    @field_validator("ts")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=UTC)

    @field_validator("order_id", "subscriber")
    @classmethod
    def _no_hash(cls, v: str) -> str:
        return check_id("id", v)


class Attribution(BaseModel):
    campaign: str
    variant: str
    notification: str
    clicked_at: datetime


class Conversion(BaseModel):
    """The buyer was in ``group`` (a variant, or the control group) of an A/B campaign
    with a control group within the window before the order (pushpipe/exposures.py)."""

    campaign: str
    group: str


class OrderResult(BaseModel):
    order_id: str
    attributed: bool
    attribution: Attribution | None = None
    duplicate: bool = Field(default=False, description="this order id was already recorded")
    conversions: list[Conversion] = Field(
        default_factory=list,
        description="A/B groups the buyer was in (sent or held out) within the window",
    )


def last_click(
    store: CounterStore, tenant: str, subscriber: str, at: float, window_s: int
) -> Attribution | None:
    best: dict | None = None
    for click in store.clicks_between(tenant, at - window_s - CLICK_COMMIT_SLACK_S, 4102444800):
        if click["s"] != subscriber:
            continue
        age = at - click["t"]
        if 0 <= age <= window_s and (best is None or click["t"] > best["t"]):
            best = click
    if best is None:
        return None
    return Attribution(
        campaign=best["c"],
        variant=best["v"],
        notification=best["n"],
        clicked_at=datetime.fromtimestamp(best["t"], UTC),
    )


def record_order(
    order: OrderIn, tenant: str, window_h: int, store: CounterStore, now: float
) -> OrderResult:
    """Attribute and record ``order`` exactly once."""
    at = order.ts.timestamp()
    attribution = last_click(store, tenant, order.subscriber, at, window_h * 3600)
    exposed = index_for(store.table, store.client).exposures(
        tenant, order.subscriber, at - window_h * 3600, at
    )[:MAX_CONVERSIONS]
    result = OrderResult(
        order_id=order.order_id,
        attributed=attribution is not None,
        attribution=attribution,
        conversions=[Conversion(campaign=e.campaign, group=e.group) for e in exposed],
    )
    item = {
        "pk": {"S": f"O#{tenant}"},
        "sk": {"S": order.order_id},
        "result": {"S": result.model_dump_json()},
        "amount": {"N": str(order.amount)},
        "currency": {"S": order.currency},
        "expires_at": {"N": str(int(now) + ORDER_TTL_S)},
    }
    items: list[dict[str, Any]] = [
        {
            "Put": {
                "TableName": store.table,
                "Item": item,
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
    ]
    if attribution is not None:
        window = hour_window(at)
        key = (tenant, attribution.campaign, attribution.variant, window)
        increments: dict[CounterKey, int | Decimal] = {
            CounterKey(*key, "orders"): 1,
            CounterKey(*key, f"{REVENUE_PREFIX}{order.currency}"): order.amount,
        }
        shard = int(hashlib.sha256(order.order_id.encode()).hexdigest()[:8], 16) % ORDER_SHARDS
        items.extend(counter_transact_items(store.table, increments, shard=f"o{shard}"))
    if exposed:
        window = hour_window(at)
        by_group: dict[CounterKey, int | Decimal] = {}
        for e in exposed:
            by_group[CounterKey(tenant, e.campaign, e.group, window, CONVERSIONS)] = 1
            by_group[
                CounterKey(
                    tenant,
                    e.campaign,
                    e.group,
                    window,
                    f"{CONVERSION_REVENUE_PREFIX}{order.currency}",
                )
            ] = order.amount
        shard = int(hashlib.sha256(order.order_id.encode()).hexdigest()[:8], 16) % ORDER_SHARDS
        items.extend(counter_transact_items(store.table, by_group, shard=f"x{shard}"))
    # No client token: a redelivery may carry a different attribution (a click arrived
    # in between), and the conditional put already makes the order count once.
    try:
        store.transact(items)
    except StoreError as exc:
        if exc.code == "TransactionCanceledException" and "ConditionalCheckFailed" in str(exc):
            return _existing(store, tenant, order.order_id)
        raise
    return result


def _existing(store: CounterStore, tenant: str, order_id: str) -> OrderResult:
    try:
        got = store.client.get_item(
            TableName=store.table,
            Key={"pk": {"S": f"O#{tenant}"}, "sk": {"S": order_id}},
            ConsistentRead=True,
        )
    except ClientError as exc:
        err = exc.response["Error"]
        raise StoreError("GetItem order", err["Code"], err["Message"]) from exc
    first = OrderResult.model_validate(json.loads(got["Item"]["result"]["S"]))
    return first.model_copy(update={"duplicate": True})
