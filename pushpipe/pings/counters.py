"""Campaign counters: hourly, per tenant, campaign and variant, exactly once.

Item layout in the counters table (single-table, ``pk``/``sk``)::

    C#<tenant>#<campaign>  <hour>#<variant>#<shard>  counters: sent, delivered, clicked...
    D#<tenant>#<campaign>  <ms>#<writer>             dedup fragment: ids per ping type
    K#<tenant>             <ms>#<writer>#<campaign>  click fragment: who clicked what, when

Why this shape (see docs/decisions.md, "counting pings"):

* **One ADD per item per batch.** A batch of pings is folded in memory into increments,
  grouped by counter item (every metric of an item in one ``ADD``), so 1,000 pings of one
  campaign cost a handful of writes, not 1,000.
* **No hot item.** Counter items are sharded by *writer* (Kinesis shard of the aggregate,
  send chain, order shard): each item gets at most one write per batch of its writer,
  and concurrent writers never touch the same item (no transaction conflicts). A report
  sums the shards with one Query on the campaign's partition.
* **Exactly once.** A ping counts only if its notification id is not yet in the
  campaign's dedup fragments. The new ids of a batch are written as ONE append-only
  fragment item in the SAME transaction as the counter updates, so a retried batch, a
  replayed ping or a browser retry finds its id already there and counts nothing. The
  fragments of a campaign are read once per warm container and then incrementally
  (``sk`` > last seen minus a safety margin), so a batch costs one small Query per campaign.
  Fragments hold 12 bytes per ping and expire with the ping tokens (TTL), so the table
  does not grow with the archive (the archive is S3, via Firehose).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError

from pushpipe.shared.errors import StoreError

# Ping metrics (the aggregate) and send metrics (the send path) share the counter items.
PING_METRICS = ("delivered", "clicked", "closed")
SEND_METRICS = ("sent", "pruned", "failed", "skipped", "control")
ORDER_METRICS = ("orders",)
REVENUE_PREFIX = "revenue:"  # revenue:EUR, summed per currency

_ID = re.compile(r"^[^#\x00-\x1f]{1,128}$")
# revenue:EUR (click-attributed), conversion_revenue:EUR (by exposure, pushpipe/exposures.py)
_METRIC = re.compile(r"^(?:[a-z_]{1,32}|(?:conversion_)?revenue:[A-Z]{3})$")
_WINDOW = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")

# A fragment's sk starts with the writer's clock when it began committing; it is visible
# to readers within this long of that (commit latency + clock skew, both far smaller).
DEDUP_MARGIN_MS = 30_000
DEDUP_TTL_S = 31 * 24 * 3600  # longer than a ping token lives (tokens.DEFAULT_TTL_S)
CLICK_TTL_S = 31 * 24 * 3600  # longer than the longest attribution window
MAX_TRANSACT_ITEMS = 100


def check_id(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise ValueError(f"{kind} {value!r} is not a valid id (1-128 chars, no '#')")
    return value


def hour_window(ts: float | datetime) -> str:
    """The UTC hour a timestamp falls in: ``2025-06-01T13``."""
    if isinstance(ts, datetime):
        dt = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(ts, UTC)
    return dt.strftime("%Y-%m-%dT%H")


@dataclass(frozen=True, slots=True)
class CounterKey:
    tenant: str
    campaign: str
    variant: str
    window: str  # hour_window()
    metric: str

    def __post_init__(self) -> None:
        check_id("tenant", self.tenant)
        check_id("campaign", self.campaign)
        check_id("variant", self.variant)
        if not _WINDOW.match(self.window):
            raise ValueError(f"window {self.window!r} is not an hour window (YYYY-MM-DDTHH)")
        if not _METRIC.match(self.metric):
            raise ValueError(f"metric {self.metric!r} is not a counter metric")


def counter_pk(tenant: str, campaign: str) -> str:
    return f"C#{tenant}#{campaign}"


def counter_sk(window: str, variant: str, shard: str) -> str:
    return f"{window}#{variant}#{shard}"


def _num(value: int | Decimal) -> dict:
    return {"N": str(value)}


def counter_transact_items(
    table_name: str, increments: Mapping[CounterKey, int | Decimal], shard: str = "s0"
) -> list[dict]:
    """TransactWriteItems ``Update`` entries (low-level client format) adding ``increments``.

    One entry per counter item: every metric of the same tenant, campaign, variant and
    hour goes into a single ``ADD``. ``shard`` names the writer (a send chain: ``s<chain>``)
    so concurrent writers update different items; reports sum the shards.
    """
    if not re.match(r"^[a-z0-9]{1,16}$", shard):
        raise ValueError(f"shard {shard!r} must be 1-16 lowercase letters or digits")
    grouped: dict[tuple[str, str, str, str], dict[str, int | Decimal]] = defaultdict(dict)
    for key, value in increments.items():
        if value == 0:
            continue
        metrics = grouped[(key.tenant, key.campaign, key.variant, key.window)]
        metrics[key.metric] = metrics.get(key.metric, 0) + value
    items = []
    for (tenant, campaign, variant, window), metrics in sorted(grouped.items()):
        names, values, adds = {}, {}, []
        for i, (metric, value) in enumerate(sorted(metrics.items())):
            names[f"#m{i}"] = metric
            values[f":m{i}"] = _num(value)
            adds.append(f"#m{i} :m{i}")
        items.append(
            {
                "Update": {
                    "TableName": table_name,
                    "Key": {
                        "pk": {"S": counter_pk(tenant, campaign)},
                        "sk": {"S": counter_sk(window, variant, shard)},
                    },
                    "UpdateExpression": "ADD " + ", ".join(adds),
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values,
                }
            }
        )
    return items


def send_counter_items(table_name: str, shard: str = "s0"):
    """The send path's ``CounterItems`` port: ``(tenant, campaign, {(variant, metric): n},
    now) -> TransactWriteItems entries`` for the cursor commit."""

    def items(
        tenant: str, campaign: str, by_variant: Mapping[tuple[str, str], int], now: float
    ) -> list[dict]:
        window = hour_window(now)
        return counter_transact_items(
            table_name,
            {CounterKey(tenant, campaign, v, window, m): n for (v, m), n in by_variant.items()},
            shard=shard,
        )

    return items


# ---------------------------------------------------------------------------------------
# Reading counters
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CounterRow:
    window: str
    variant: str
    shard: str
    metrics: dict[str, Decimal]


def rows_from_items(items: Iterable[Mapping[str, Any]]) -> Iterator[CounterRow]:
    for item in items:
        window, variant, shard = item["sk"]["S"].split("#", 2)
        metrics = {
            name: Decimal(value["N"])
            for name, value in item.items()
            if name not in ("pk", "sk") and "N" in value
        }
        yield CounterRow(window, variant, shard, metrics)


# ---------------------------------------------------------------------------------------
# Folding pings
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CountedPing:
    """What the aggregate needs of a verified ping record."""

    type: str  # delivered | clicked | closed
    tenant: str
    campaign: str
    variant: str
    notification: str
    subscriber: str
    received_at: float  # unix seconds, server time: the hour window and the click time
    expires_at: int  # the token's exp: how long a replay could still arrive


def id_bytes(notification: str) -> bytes:
    """12 bytes that identify a notification within its campaign (the send path's ids are
    24 hex characters; anything else is hashed)."""
    if len(notification) == 24:
        try:
            return bytes.fromhex(notification)
        except ValueError:
            pass
    return hashlib.sha256(notification.encode()).digest()[:12]


@dataclass
class CampaignFold:
    """The new (deduplicated) pings of one campaign in one batch."""

    tenant: str
    campaign: str
    increments: dict[CounterKey, int] = field(default_factory=dict)
    new_ids: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    clicks: list[dict] = field(default_factory=list)
    expires_at: int = 0
    duplicates: int = 0
    records: list[Any] = field(default_factory=list)  # caller's handles (for failures)

    @property
    def counted(self) -> int:
        return sum(len(ids) for ids in self.new_ids.values())


class SeenIndex(Protocol):
    """Which notification ids of a campaign were already counted, per ping type."""

    def seen(self, tenant: str, campaign: str, ping_type: str, nid: bytes) -> bool: ...


def fold_pings(
    pings: Iterable[tuple[CountedPing, Any]], seen: SeenIndex
) -> dict[tuple[str, str], CampaignFold]:
    """Group a batch by campaign, drop pings already counted (in the store or earlier in
    this batch) and sum the rest into counter increments. Pure: no I/O."""
    folds: dict[tuple[str, str], CampaignFold] = {}
    for ping, handle in pings:
        key = (ping.tenant, ping.campaign)
        fold = folds.get(key)
        if fold is None:
            fold = folds[key] = CampaignFold(ping.tenant, ping.campaign)
        fold.records.append(handle)
        nid = id_bytes(ping.notification)
        if nid in fold.new_ids[ping.type] or seen.seen(ping.tenant, ping.campaign, ping.type, nid):
            fold.duplicates += 1
            continue
        fold.new_ids[ping.type].add(nid)
        ck = CounterKey(
            ping.tenant, ping.campaign, ping.variant, hour_window(ping.received_at), ping.type
        )
        fold.increments[ck] = fold.increments.get(ck, 0) + 1
        fold.expires_at = max(fold.expires_at, ping.expires_at)
        if ping.type == "clicked":
            fold.clicks.append(
                {
                    "s": ping.subscriber,
                    "c": ping.campaign,
                    "v": ping.variant,
                    "n": ping.notification,
                    "t": round(ping.received_at, 3),
                }
            )
    return folds


# ---------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------
@dataclass
class _CampaignSeen:
    ids: dict[str, set[bytes]] = field(default_factory=lambda: defaultdict(set))
    known: dict[str, int] = field(default_factory=dict)  # fragment sk -> its ms
    loaded_ms: int | None = None  # when the last refresh began; None: never loaded


def dedup_pk(tenant: str, campaign: str) -> str:
    return f"D#{tenant}#{campaign}"


def clicks_pk(tenant: str) -> str:
    return f"K#{tenant}"


class CounterStore:
    """Counters, ping dedup fragments and click fragments in the counters table.

    Keeps a per-container cache of the dedup fragments it has read or written, bounded to
    ``max_campaigns`` campaigns (least recently used are dropped and re-read if needed).
    """

    def __init__(
        self,
        table_name: str,
        client=None,
        max_campaigns: int = 64,
        clock=time.time,
    ) -> None:
        self.table = table_name
        self.client = client or boto3.client("dynamodb")
        self.max_campaigns = max_campaigns
        self.clock = clock
        self._seen: OrderedDict[tuple[str, str], _CampaignSeen] = OrderedDict()
        self.writes = 0  # write requests made (items written), for the benchmark
        self.reads = 0  # read requests made

    # --- dedup -------------------------------------------------------------------------
    def seen(self, tenant: str, campaign: str, ping_type: str, nid: bytes) -> bool:
        state = self._seen.get((tenant, campaign))
        return state is not None and nid in state.ids.get(ping_type, ())

    def refresh(self, campaigns: Iterable[tuple[str, str]]) -> None:
        """Bring the dedup cache of ``campaigns`` up to date with committed fragments."""
        for tenant, campaign in set(campaigns):
            key = (tenant, campaign)
            state = self._seen.get(key)
            if state is None:
                state = self._seen[key] = _CampaignSeen()
            self._seen.move_to_end(key)
            started_ms = int(self.clock() * 1000)
            cond = "pk = :pk"
            values: dict[str, Any] = {":pk": {"S": dedup_pk(tenant, campaign)}}
            if state.loaded_ms is not None:
                # Anything not visible at the last refresh has an sk after this bound.
                cond += " AND sk > :from"
                values[":from"] = {"S": f"{max(0, state.loaded_ms - DEDUP_MARGIN_MS):013d}"}
            for item in self._query(cond, values):
                sk = item["sk"]["S"]
                if sk in state.known:
                    continue
                state.known[sk] = int(sk.split("#", 1)[0])
                for ping_type in PING_METRICS:
                    for nid in item.get(ping_type, {}).get("BS", ()):
                        state.ids[ping_type].add(bytes(nid))
            state.loaded_ms = started_ms
            self._forget_old_sks(state)
        while len(self._seen) > self.max_campaigns:
            self._seen.popitem(last=False)

    @staticmethod
    def _forget_old_sks(state: _CampaignSeen) -> None:
        if state.loaded_ms is None:
            return
        floor = state.loaded_ms - 2 * DEDUP_MARGIN_MS
        for sk in [sk for sk, ms in state.known.items() if ms < floor]:
            del state.known[sk]

    def _query(self, cond: str, values: dict) -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        while True:
            try:
                page = self.client.query(**kwargs)
            except ClientError as exc:
                err = exc.response["Error"]
                raise StoreError("Query counters", err["Code"], err["Message"]) from exc
            self.reads += 1
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # --- committing a batch --------------------------------------------------------------
    def commit_fold(self, fold: CampaignFold, writer: str, shard: str) -> None:
        """One transaction: the campaign's dedup fragment, its click fragment and its
        counter updates. Either all of it counts or none of it does."""
        if not fold.increments:
            return
        now_ms = int(self.clock() * 1000)
        sk = f"{now_ms:013d}#{writer}"
        fragment: dict[str, Any] = {
            "pk": {"S": dedup_pk(fold.tenant, fold.campaign)},
            "sk": {"S": sk},
            "expires_at": {"N": str(max(fold.expires_at, int(now_ms / 1000)) + 86400)},
        }
        for ping_type, ids in fold.new_ids.items():
            if ids:
                fragment[ping_type] = {"BS": sorted(ids)}
        items: list[dict] = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": fragment,
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if fold.clicks:
            items.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            "pk": {"S": clicks_pk(fold.tenant)},
                            "sk": {"S": f"{sk}#{fold.campaign}"},
                            "clicks": {"S": json.dumps(fold.clicks, separators=(",", ":"))},
                            "expires_at": {"N": str(int(now_ms / 1000) + CLICK_TTL_S)},
                        },
                    }
                }
            )
        items.extend(counter_transact_items(self.table, fold.increments, shard=shard))
        if len(items) > MAX_TRANSACT_ITEMS:
            raise StoreError(
                "TransactWriteItems counters",
                "TooManyItems",
                f"{len(items)} items for {fold.tenant}/{fold.campaign} in one batch "
                f"(at most {MAX_TRANSACT_ITEMS}): lower the batch size",
            )
        # Same token for botocore's own retries of this call (same items): a commit whose
        # answer was lost is not applied twice. A later retry of the batch dedups instead.
        token = hashlib.sha256(f"{fold.tenant}\x1f{fold.campaign}\x1f{sk}".encode()).hexdigest()
        self.transact(items, token=token[:36])
        # The fragment is ours: remember it without reading it back.
        state = self._seen.setdefault((fold.tenant, fold.campaign), _CampaignSeen())
        state.known[sk] = now_ms
        for ping_type, ids in fold.new_ids.items():
            state.ids[ping_type] |= ids

    def transact(self, items: list[dict], token: str | None = None) -> None:
        kwargs: dict[str, Any] = {"TransactItems": items}
        if token:
            kwargs["ClientRequestToken"] = token
        try:
            self.client.transact_write_items(**kwargs)
        except ClientError as exc:
            err = exc.response["Error"]
            reasons = [
                r.get("Code", "None") for r in exc.response.get("CancellationReasons", []) or []
            ]
            detail = f"{err['Message']} (reasons: {reasons})" if reasons else err["Message"]
            raise StoreError("TransactWriteItems counters", err["Code"], detail) from exc
        finally:
            self.writes += len(items)

    # --- reading --------------------------------------------------------------------------
    def campaign_rows(self, tenant: str, campaign: str) -> list[CounterRow]:
        """Every counter item of a campaign: one Query (paginated) on its partition."""
        cond = "pk = :pk"
        values = {":pk": {"S": counter_pk(tenant, campaign)}}
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": cond,
            "ExpressionAttributeValues": values,
        }
        items: list[dict] = []
        while True:
            try:
                page = self.client.query(**kwargs)
            except ClientError as exc:
                err = exc.response["Error"]
                raise StoreError("Query counters", err["Code"], err["Message"]) from exc
            self.reads += 1
            items.extend(page.get("Items", ()))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return list(rows_from_items(items))

    def clicks_between(self, tenant: str, start: float, end: float) -> Iterator[dict]:
        """Click entries committed between ``start`` and ``end`` (unix seconds)."""
        values = {
            ":pk": {"S": clicks_pk(tenant)},
            ":a": {"S": f"{int(start * 1000):013d}"},
            ":b": {"S": f"{int(end * 1000):013d}~"},
        }
        for item in self._query("pk = :pk AND sk BETWEEN :a AND :b", values):
            yield from json.loads(item["clicks"]["S"])
