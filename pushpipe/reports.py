"""Campaign reports: per variant (and the control group) and per hour, from the counter
items of one campaign (one Query on its partition, whatever the number of pings)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import TypeVar

from pydantic import BaseModel, Field

from pushpipe.counters import REVENUE_PREFIX, CounterRow

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
    ctr: float | None = Field(default=None, description="clicked / delivered")
    delivery_rate: float | None = Field(default=None, description="delivered / sent")

    def add(self, metrics: dict[str, Decimal]) -> None:
        for name, value in metrics.items():
            if name.startswith(REVENUE_PREFIX):
                cur = name[len(REVENUE_PREFIX) :]
                self.revenue[cur] = self.revenue.get(cur, Decimal(0)) + value
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


class CampaignReport(BaseModel):
    tenant: str
    campaign: str
    variants: list[VariantReport]
    total: Counts
    hours: list[HourPoint]


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
    return CampaignReport(
        tenant=tenant,
        campaign=campaign,
        variants=[_finish(VariantReport(variant=v, **by_variant[v].model_dump())) for v in names],
        total=total.finish(),
        hours=[
            _finish(HourPoint(hour=h, variant=v, **c.model_dump()))
            for (h, v), c in sorted(by_hour.items())
        ],
    )
