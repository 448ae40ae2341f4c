"""Engagement: prune the subscriptions that a push service keeps accepting but that never
reach a browser.

A push service answers 404/410 for a subscription that is gone, and the send path prunes
it (``on_pruned``). Apple's does not always: a revoked Safari subscription is answered
201 (WebKit bug 249766), so it would be sent to for ever. What tells it apart is that
its service worker never pings back: a notification that reached a browser produces a
``delivered`` ping (and maybe ``clicked``/``closed``), each tied to its notification id.

So, once a day, one archive query (Athena over the Firehose archive; DuckDB locally)
finds, per subscriber and endpoint of the services in ``StalePolicy.services``, the sends
since the last one that any ping answered. ``silent_sends`` or more of them, all older
than ``grace_hours`` (a device may be offline, the push service holds the message for
its TTL), make the subscription stale:

* a subscription in the subscription store with that same endpoint is deleted (with its
  topic copies, as a 410 would be) — it is left alone if its endpoint changed since;
* every stale subscriber of the day is written to a report object per tenant,
  ``stale-subscriptions/<yyyy-mm-dd>/<tenant>.jsonl`` in the audience bucket (outside the
  audience prefix: never sent), with what was done, so audiences kept outside pushpipe
  can drop them too.

Cost, stated and bounded: nothing is written per send (the archive record of each send
already exists; it gains two short columns, ``service`` and ``ep``); one query a day,
which scans the sends and pings of ``lookback_days`` (Athena bills the compressed bytes:
BENCHMARKS.md gives the measured bytes per send), capped by the workgroup's per-query
scan limit; one DynamoDB transaction per stale subscription pruned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pushpipe import topology as t
from pushpipe.push.endpoints import endpoint_fingerprint
from pushpipe.shared.observability import logger
from pushpipe.subscriptions.store import SubscriptionStore

REPORT_PREFIX = t.STALE_REPORTS_PREFIX  # in the audience bucket, outside the audience prefix
SERVICE_NAME = re.compile(r"^[a-z0-9-]{1,32}$")


class ArchiveQueries(Protocol):
    """Runs SQL over the audit archive (``sends``, ``pings``): Athena in AWS, DuckDB in
    the local cloud. ``params`` fill the ``?`` placeholders in order."""

    def rows(self, sql: str, params: Sequence[str | int]) -> list[dict[str, Any]]: ...


class ReportSink(Protocol):
    def put(self, key: str, body: bytes) -> None: ...


@dataclass(frozen=True)
class StalePolicy:
    services: tuple[str, ...] = ("apple",)
    silent_sends: int = 10  # sends in a row that no ping answered
    lookback_days: int = 30
    grace_hours: int = 48

    def __post_init__(self) -> None:
        if not self.services or not all(SERVICE_NAME.match(s) for s in self.services):
            raise ValueError(f"stale services must be push service names, got {self.services}")
        if self.silent_sends < 1:
            raise ValueError("silent_sends must be at least 1")
        if not 1 <= self.lookback_days <= 366:
            raise ValueError("lookback_days must be 1-366")
        if self.grace_hours < 0 or self.grace_hours >= self.lookback_days * 24:
            raise ValueError("grace_hours must be >= 0 and shorter than the lookback")


def _hour(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y/%m/%d/%H")


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stale_query(policy: StalePolicy, now: datetime) -> tuple[str, list[str | int]]:
    """The SQL (Athena and DuckDB alike) and its parameters: one row per stale
    (tenant, subscriber, endpoint) with how many sends stayed silent."""
    since = _hour(now - timedelta(days=policy.lookback_days))
    cutoff = _iso(now - timedelta(hours=policy.grace_hours))
    services = ", ".join("?" for _ in policy.services)
    sql = (
        "WITH s AS (\n"
        "  SELECT tenant, subscriber, ep, service, notification, ts FROM sends\n"
        f"  WHERE outcome = 'sent' AND ep IS NOT NULL AND service IN ({services})\n"
        "    AND dt >= ?\n"
        "),\n"
        "answered AS (SELECT DISTINCT notification FROM pings WHERE dt >= ?),\n"
        "alive AS (\n"
        "  SELECT s.tenant, s.subscriber, s.ep, max(s.ts) AS alive_at\n"
        "  FROM s JOIN answered ON answered.notification = s.notification\n"
        "  GROUP BY s.tenant, s.subscriber, s.ep\n"
        ")\n"
        "SELECT s.tenant, s.subscriber, s.ep, max(s.service) AS service,\n"
        "       count(DISTINCT s.notification) AS silent_sends,\n"
        "       min(s.ts) AS first_silent, max(s.ts) AS last_silent\n"
        "FROM s LEFT JOIN alive\n"
        "  ON alive.tenant = s.tenant AND alive.subscriber = s.subscriber AND alive.ep = s.ep\n"
        "WHERE s.ts < ? AND (alive.alive_at IS NULL OR s.ts > alive.alive_at)\n"
        "GROUP BY s.tenant, s.subscriber, s.ep\n"
        "HAVING count(DISTINCT s.notification) >= ?\n"
        "ORDER BY s.tenant, s.subscriber, s.ep"
    )
    return sql, [*policy.services, since, since, cutoff, policy.silent_sends]


@dataclass(frozen=True)
class StaleSubscription:
    tenant: str
    subscriber: str
    ep: str
    service: str
    silent_sends: int
    first_silent: str
    last_silent: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StaleSubscription:
        return cls(
            tenant=str(row["tenant"]),
            subscriber=str(row["subscriber"]),
            ep=str(row["ep"]),
            service=str(row["service"]),
            silent_sends=int(row["silent_sends"]),
            first_silent=str(row["first_silent"]),
            last_silent=str(row["last_silent"]),
        )


# What happened to a stale subscription (the report's ``action``).
PRUNED = "pruned"
NOT_STORED = "not-in-store"  # an audience kept outside pushpipe: the report tells its owner
ENDPOINT_CHANGED = "endpoint-changed"  # subscribed again since: the new endpoint is kept


@dataclass
class StaleResult:
    day: str
    stale: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    reports: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "stale": self.stale,
            "actions": self.actions,
            "reports": self.reports,
        }


def _act(store: SubscriptionStore, stale: StaleSubscription) -> str:
    current = store.get(stale.tenant, stale.subscriber)
    if current is None:
        return NOT_STORED
    if endpoint_fingerprint(current.endpoint) != stale.ep:
        return ENDPOINT_CHANGED
    return PRUNED if store.delete(stale.tenant, stale.subscriber) else NOT_STORED


def prune_stale(
    now: datetime,
    policy: StalePolicy,
    queries: ArchiveQueries,
    store: SubscriptionStore,
    reports: ReportSink,
) -> StaleResult:
    """Find today's stale subscriptions, prune those in the store, write the reports.
    Safe to repeat: a pruned subscription is reported again as ``not-in-store`` only
    while audiences outside pushpipe keep sending to it."""
    sql, params = stale_query(policy, now)
    found = [StaleSubscription.from_row(r) for r in queries.rows(sql, params)]
    result = StaleResult(day=f"{now.astimezone(UTC):%Y-%m-%d}", stale=len(found))
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    for stale in found:
        action = _act(store, stale)
        result.actions[action] = result.actions.get(action, 0) + 1
        by_tenant.setdefault(stale.tenant, []).append({**stale.__dict__, "action": action})
    for tenant, lines in sorted(by_tenant.items()):
        key = f"{REPORT_PREFIX}{result.day}/{tenant}.jsonl"
        reports.put(key, _jsonl(lines))
        result.reports.append(key)
    logger.info("stale subscriptions", extra=result.as_dict())
    return result


def _jsonl(lines: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, ensure_ascii=False).encode() + b"\n" for line in lines)
