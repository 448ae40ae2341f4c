"""Scheduled campaigns, defined as code: who gets them, what they say, and their A/B
variants with a control group — reviewed and versioned like the rest of the source.

The scheduler function runs hourly (topology ``scheduled-campaigns``). For each tenant
and each definition whose send hour has come, it selects subscribers from the
subscription store (streamed, never loaded) and writes one audience file under the
audience prefix, which the send path picks up like any dropped file:

    audiences/<tenant>/scheduled/<yyyy-mm-dd>/<definition>.json

The file is written with ``If-None-Match: *`` and a marker outside the prefix records
that the (day, tenant, definition) was done — also when nobody qualified — so a retried
or repeated run sends nothing twice and does not scan again.

Selections, by calendar day (UTC) of the run, ``D``:

* ``day1-unfinished-signup``: subscribed on day D-1 and never chose a topic;
* ``day2-engagement``: subscribed on day D-2;
* ``day21-inactive``: the subscriber's last activity (subscribing, or the last click on a
  notification) was on day D-21 — 21 days of silence, nudged once per silence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pushpipe import topology as t
from pushpipe.audience import keys
from pushpipe.audience.format import CampaignHeader
from pushpipe.audience.writer import AudienceSink, Counter, audience_chunks
from pushpipe.shared.observability import logger
from pushpipe.subscriptions.models import Subscription
from pushpipe.subscriptions.store import SubscriptionStore

SCHEDULED_SUBPREFIX = "scheduled/"
MARKER_PREFIX = t.SCHEDULED_MARKERS_PREFIX  # outside the audience prefix: never sent
CLICK_LOOKBACK_DAYS = 22


@dataclass(frozen=True)
class Selection:
    """What a definition may look at for one subscriber."""

    day: date  # the run's calendar day (UTC)
    last_click: Mapping[str, float]  # subscriber id -> unix time of the last click


@dataclass(frozen=True)
class ScheduledCampaign:
    id: str
    description: str
    hour_utc: int  # sent by the first run at or after this hour
    message: dict[str, Any]
    variants: tuple[dict[str, Any], ...]
    control_percent: float
    select: Callable[[Subscription, Selection], bool]
    ttl: int = 86_400
    topic: str | None = None
    needs_clicks: bool = False

    def campaign_id(self, day: date) -> str:
        return f"{self.id}-{day:%Y%m%d}"

    def header(self, tenant: str, day: date) -> dict[str, Any]:
        header: dict[str, Any] = {
            "id": self.campaign_id(day),
            "tenant": tenant,
            "message": self.message,
            "ttl": self.ttl,
            "urgency": "normal",
            "variants": [dict(v) for v in self.variants],
            "control_percent": self.control_percent,
        }
        if self.topic:
            header["topic"] = self.topic
        return header


def _day(ts: datetime) -> date:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).date()


def _unfinished_signup(sub: Subscription, s: Selection) -> bool:
    return _day(sub.created_at) == s.day - timedelta(days=1) and not sub.topics


def _day2(sub: Subscription, s: Selection) -> bool:
    return _day(sub.created_at) == s.day - timedelta(days=2)


def _inactive21(sub: Subscription, s: Selection) -> bool:
    last = sub.created_at.timestamp()
    clicked = s.last_click.get(sub.id)
    if clicked is not None:
        last = max(last, clicked)
    return datetime.fromtimestamp(last, UTC).date() == s.day - timedelta(days=21)


CAMPAIGNS: tuple[ScheduledCampaign, ...] = (
    ScheduledCampaign(
        id="day1-unfinished-signup",
        description="Subscribed yesterday but chose no topic: invite them to finish.",
        hour_utc=10,
        message={
            "title": "Pick what you want to hear about",
            "body": "Choose your topics and we will only send you what matters to you.",
            "url": "https://example.com/preferences?utm_source=push&utm_campaign=day1",
        },
        variants=(
            {"id": "a", "percent": 45},
            {
                "id": "b",
                "percent": 45,
                "message": {
                    "title": "One step left",
                    "body": "Tell us what you like: it takes ten seconds.",
                },
            },
        ),
        control_percent=10,
        select=_unfinished_signup,
        topic="day1",
    ),
    ScheduledCampaign(
        id="day2-engagement",
        description="Subscribed two days ago: show them the best of the shop.",
        hour_utc=16,
        message={
            "title": "This week's favourites",
            "body": "What other subscribers loved this week.",
            "url": "https://example.com/favourites?utm_source=push&utm_campaign=day2",
        },
        variants=(
            {"id": "a", "percent": 45},
            {
                "id": "b",
                "percent": 45,
                "message": {
                    "title": "Picked for you",
                    "body": "Three things we think you'll like.",
                },
            },
        ),
        control_percent=10,
        select=_day2,
        topic="day2",
    ),
    ScheduledCampaign(
        id="day21-inactive",
        description="Three weeks without a click: a gentle win-back.",
        hour_utc=11,
        message={
            "title": "We miss you",
            "body": "Here is 10% off your next order, valid for a week.",
            "url": "https://example.com/welcome-back?utm_source=push&utm_campaign=day21",
        },
        variants=(
            {"id": "a", "percent": 40},
            {
                "id": "b",
                "percent": 40,
                "message": {
                    "title": "A little something for you",
                    "body": "10% off, this week only.",
                },
            },
        ),
        control_percent=20,
        select=_inactive21,
        topic="day21",
        needs_clicks=True,
    ),
)


def check_definitions(campaigns: tuple[ScheduledCampaign, ...] = CAMPAIGNS) -> None:
    """Each definition's header passes the audience format's rules (run by the tests and
    at cold start, so a bad definition never reaches a schedule)."""
    ids = [c.id for c in campaigns]
    if len(set(ids)) != len(ids):
        raise ValueError(f"scheduled campaign ids must be unique: {ids}")
    for c in campaigns:
        if not 0 <= c.hour_utc <= 23:
            raise ValueError(f"{c.id}: hour_utc must be 0-23")
        CampaignHeader.parse(c.header("tenant", date(2025, 1, 1)))


# --- running ------------------------------------------------------------------------------
@dataclass
class SchedulerPorts:
    subscriptions: SubscriptionStore
    writer: AudienceSink
    clicks: Callable[[str, float, float], Iterator[dict]]  # (tenant, start, end) -> clicks
    tenants: Callable[[], list[str]]
    marker_exists: Callable[[str], bool]
    put_marker: Callable[[str, dict], None]


@dataclass
class ScheduledResult:
    written: list[dict[str, Any]] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def audience_key(prefix: str, day: date, tenant: str, campaign: ScheduledCampaign) -> str:
    name = f"{SCHEDULED_SUBPREFIX}{day:%Y-%m-%d}/{campaign.id}.json"
    return keys.audience_key(prefix, tenant, name)  # under the tenant's own prefix


def marker_key(day: date, tenant: str, campaign: ScheduledCampaign) -> str:
    return f"{MARKER_PREFIX}{day:%Y-%m-%d}/{tenant}/{campaign.id}.json"


def _recipients(
    store: SubscriptionStore, tenant: str, c: ScheduledCampaign, sel: Selection
) -> Iterator[dict[str, Any]]:
    for sub in store.segment(tenant):
        if c.select(sub, sel):
            yield sub.as_recipient()


def run_scheduled(
    now: datetime,
    ports: SchedulerPorts,
    bucket: str,
    prefix: str,
    campaigns: tuple[ScheduledCampaign, ...] = CAMPAIGNS,
) -> ScheduledResult:
    """Write today's due scheduled audiences for every tenant, once each."""
    day = _day(now)
    result = ScheduledResult()
    for tenant in ports.tenants():
        clicks: dict[str, float] | None = None
        for c in campaigns:
            name = f"{tenant}/{c.id}"
            if now.hour < c.hour_utc or ports.marker_exists(marker_key(day, tenant, c)):
                result.skipped.append(name)
                continue
            if c.needs_clicks and clicks is None:
                start = datetime.combine(
                    day - timedelta(days=CLICK_LOOKBACK_DAYS), datetime.min.time(), UTC
                )
                clicks = {}
                for click in ports.clicks(tenant, start.timestamp(), now.timestamp()):
                    clicks[click["s"]] = max(clicks.get(click["s"], 0.0), float(click["t"]))
            sel = Selection(day, clicks or {})
            recipients = Counter(_recipients(ports.subscriptions, tenant, c, sel))
            key = audience_key(prefix, day, tenant, c)
            chunks = _nonempty(audience_chunks(c.header(tenant, day), recipients), recipients)
            written = ports.writer.write_once(bucket, key, chunks) if chunks else None
            if written is None:
                result.empty.append(name)
            else:
                result.written.append(
                    {"key": key, "recipients": recipients.n, "new": written.created}
                )
            ports.put_marker(
                marker_key(day, tenant, c),
                {"campaign": c.campaign_id(day), "recipients": recipients.n, "key": key},
            )
            logger.info(
                "scheduled campaign evaluated",
                extra={"tenant": tenant, "campaign": c.id, "recipients": recipients.n},
            )
    return result


def _nonempty(chunks: Iterator[bytes], recipients: Counter) -> Iterator[bytes] | None:
    """``chunks`` if the audience has at least one recipient, else None (nothing is
    written for an empty audience). Peeks past the header to find out."""
    head = next(chunks)
    first = next(chunks)
    if recipients.n == 0:
        return None

    def rest() -> Iterator[bytes]:
        yield head
        yield first
        yield from chunks

    return rest()
