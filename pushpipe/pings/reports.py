"""Campaign reports: per variant (and the control group) and per hour, from the counter
items of one campaign (one Query on its partition, whatever the number of pings)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, Field

from pushpipe.pings.counters import REVENUE_PREFIX, CounterRow
from pushpipe.pings.exposures import CONVERSION_REVENUE_PREFIX

CONTROL = "control"
COUNT_METRICS = (
    "sent",
    "delivered",
    "clicked",
    "closed",
    "orders",
    "pruned",
    "failed",
    "skipped",
    "control",
    "conversions",
)


class Counts(BaseModel):
    sent: int = 0
    delivered: int = Field(default=0, description="impressions: delivery pings, each once")
    clicked: int = 0
    closed: int = 0
    orders: int = 0
    revenue: dict[str, Decimal] = Field(default_factory=dict, description="per currency")
    pruned: int = 0
    failed: int = 0
    skipped: int = 0
    control: int = Field(default=0, description="subscribers held out (control group)")
    conversions: int = Field(
        default=0,
        description="orders by members of this group within the attribution window after "
        "the send, clicked or not (campaigns with a control group; pushpipe/exposures.py)",
    )
    conversion_revenue: dict[str, Decimal] = Field(
        default_factory=dict, description="revenue of those orders, per currency"
    )
    ctr: float | None = Field(default=None, description="clicked / delivered")
    delivery_rate: float | None = Field(default=None, description="delivered / sent")

    def add(self, metrics: dict[str, Decimal]) -> None:
        for name, value in metrics.items():
            if name.startswith(REVENUE_PREFIX):
                cur = name[len(REVENUE_PREFIX) :]
                self.revenue[cur] = self.revenue.get(cur, Decimal(0)) + value
            elif name.startswith(CONVERSION_REVENUE_PREFIX):
                cur = name[len(CONVERSION_REVENUE_PREFIX) :]
                revenue = self.conversion_revenue
                revenue[cur] = revenue.get(cur, Decimal(0)) + value
            elif name in COUNT_METRICS:
                setattr(self, name, getattr(self, name) + int(value))

    def finish(self) -> Counts:
        self.ctr = round(self.clicked / self.delivered, 6) if self.delivered else None
        self.delivery_rate = round(self.delivered / self.sent, 6) if self.sent else None
        return self


T = TypeVar("T", bound="Counts")


def _finish(counts: T) -> T:
    counts.finish()
    return counts


class VariantReport(Counts):
    variant: str


class HourPoint(Counts):
    hour: str = Field(description="UTC hour window, YYYY-MM-DDTHH")
    variant: str


class GroupComparison(BaseModel):
    """One side of the A/B comparison: a variant, or the control group."""

    group: str
    recipients: int = Field(description="sent (a variant) or held out (the control group)")
    ctr: float | None = Field(default=None, description="clicked / delivered (variants only)")
    conversions: int = 0
    conversion_rate: float | None = Field(default=None, description="conversions / recipients")
    revenue_per_recipient: dict[str, Decimal] = Field(
        default_factory=dict, description="conversion revenue / recipients, per currency"
    )
    conversion_lift: float | None = Field(
        default=None,
        description="(conversion rate - the control's) / the control's; None for the control "
        "itself or when the control converted nobody",
    )
    revenue_lift: dict[str, float | None] = Field(
        default_factory=dict, description="the same for revenue per recipient, per currency"
    )


class Comparison(BaseModel):
    """Each variant next to the control group (campaigns with a control group)."""

    control: GroupComparison
    variants: list[GroupComparison]


class CampaignReport(BaseModel):
    tenant: str
    campaign: str
    variants: list[VariantReport]
    total: Counts
    hours: list[HourPoint]
    comparison: Comparison | None = None


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 6) if whole else None


def _per(amounts: dict[str, Decimal], whole: int) -> dict[str, Decimal]:
    if not whole:
        return {}
    return {cur: (amount / whole).quantize(Decimal("0.0001")) for cur, amount in amounts.items()}


def _lift(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round((value - base) / base, 6)


def compare(variants: list[VariantReport]) -> Comparison | None:
    """Each variant's CTR, conversion rate and revenue per recipient next to the control
    group's, with the lift over the control (None where the control has no base)."""
    control = next((v for v in variants if v.variant == CONTROL and v.control), None)
    if control is None:
        return None
    base = GroupComparison(
        group=CONTROL,
        recipients=control.control,
        conversions=control.conversions,
        conversion_rate=_rate(control.conversions, control.control),
        revenue_per_recipient=_per(control.conversion_revenue, control.control),
    )
    rows = []
    for v in variants:
        if v.variant == CONTROL:
            continue
        rate = _rate(v.conversions, v.sent)
        per = _per(v.conversion_revenue, v.sent)
        currencies = sorted(set(per) | set(base.revenue_per_recipient))
        rows.append(
            GroupComparison(
                group=v.variant,
                recipients=v.sent,
                ctr=v.ctr,
                conversions=v.conversions,
                conversion_rate=rate,
                revenue_per_recipient=per,
                conversion_lift=_lift(rate, base.conversion_rate),
                revenue_lift={
                    cur: _lift(
                        float(per.get(cur, Decimal(0))),
                        float(base.revenue_per_recipient.get(cur, Decimal(0))),
                    )
                    for cur in currencies
                },
            )
        )
    return Comparison(control=base, variants=rows)


def build_report(tenant: str, campaign: str, rows: Iterable[CounterRow]) -> CampaignReport:
    by_variant: dict[str, Counts] = defaultdict(Counts)
    by_hour: dict[tuple[str, str], Counts] = defaultdict(Counts)
    total = Counts()
    for row in rows:
        by_variant[row.variant].add(row.metrics)
        by_hour[(row.window, row.variant)].add(row.metrics)
        total.add(row.metrics)
    # Variants in name order, the control group last.
    names = sorted(by_variant, key=lambda v: (v == CONTROL, v))
    variants = [_finish(VariantReport(variant=v, **by_variant[v].model_dump())) for v in names]
    return CampaignReport(
        tenant=tenant,
        campaign=campaign,
        variants=variants,
        comparison=compare(variants),
        total=total.finish(),
        hours=[
            _finish(HourPoint(hour=h, variant=v, **c.model_dump()))
            for (h, v), c in sorted(by_hour.items())
        ],
    )
