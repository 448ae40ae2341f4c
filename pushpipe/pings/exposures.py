"""Exposures: who an A/B campaign with a control group reached, and who it held out.

To compare a variant with the control group, both sides need the same measure: orders
placed by members of the group within the attribution window after the send, whether
or not they clicked (the control group cannot click: it received nothing). Click
attribution (``pushpipe/attribution.py``) answers "which notification brought this
order"; exposures answer "did being in group X change how much people buy".

The send path writes, with each batch's cursor commit (so exactly once), one fragment
per batch of such a campaign in the counters table::

    X#<tenant>   <ms>#<campaign>#<batch>   groups: {variant|control: 8-byte hashes}

8 bytes per subscriber (blake2b of the id): a batch of 500 is a ~4 KB item, two writes
per 1,000 recipients, and only for campaigns with a control group. An order looks up
the fragments of its tenant's window (cached per warm container and read incrementally)
and counts a ``conversions`` and ``conversion_revenue:<CUR>`` for every (campaign, group)
the buyer was in. Fragments expire after the longest attribution window.
"""

from __future__ import annotations

import hashlib
import re
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from pushpipe.shared.errors import StoreError

HASH_BYTES = 8
EXPOSURE_TTL_S = 31 * 24 * 3600  # longer than the longest attribution window (30 days)
COMMIT_MARGIN_MS = 60_000  # a fragment's sk time is when its batch began; commit follows
CONVERSIONS = "conversions"
CONVERSION_REVENUE_PREFIX = "conversion_revenue:"
_BATCH = re.compile(r"^[A-Za-z0-9._:-]{1,96}$")


def exposures_pk(tenant: str) -> str:
    return f"X#{tenant}"


def subscriber_hash(subscriber: str) -> bytes:
    return hashlib.blake2b(subscriber.encode(), digest_size=HASH_BYTES).digest()


def exposure_items(
    table: str,
    tenant: str,
    campaign: str,
    groups: Mapping[str, Sequence[str]],
    now: float,
    batch: str,
) -> list[dict[str, Any]]:
    """The TransactWriteItems ``Put`` of one batch's exposures (low-level format), for
    the batch's cursor commit: a batch whose commit failed (and is sent again) left no
    fragment behind. ``batch`` names the batch (run, chain, cursor position)."""
    if not _BATCH.match(batch):
        raise ValueError(f"batch key {batch!r} must match {_BATCH.pattern}")
    members = {g: b"".join(subscriber_hash(s) for s in ids) for g, ids in groups.items() if ids}
    if not members:
        return []
    ms = int(now * 1000)
    return [
        {
            "Put": {
                "TableName": table,
                "Item": {
                    "pk": {"S": exposures_pk(tenant)},
                    "sk": {"S": f"{ms:013d}#{campaign}#{batch}"},
                    "c": {"S": campaign},
                    "t": {"N": str(ms)},
                    "g": {"M": {g: {"B": blob} for g, blob in members.items()}},
                    "expires_at": {"N": str(int(now) + EXPOSURE_TTL_S)},
                },
            }
        }
    ]


def _contains(blob: bytes, needle: bytes) -> bool:
    at = blob.find(needle)
    while at != -1:
        if at % HASH_BYTES == 0:
            return True
        at = blob.find(needle, at + 1)
    return False


@dataclass
class _Fragment:
    campaign: str
    ms: int
    groups: dict[str, bytes]


@dataclass
class _TenantCache:
    fragments: dict[str, _Fragment] = field(default_factory=dict)  # sk -> fragment
    loaded_from_ms: int | None = None  # everything from here on was read...
    refreshed_ms: int = 0  # ...as of this time


@dataclass(frozen=True)
class Exposure:
    campaign: str
    group: str  # a variant id, or "control"
    at: float  # unix seconds of the send (or hold-out)


class ExposureIndex:
    """Which campaigns' groups a subscriber was in, from the exposure fragments."""

    def __init__(self, table: str, client: Any, clock=time.time) -> None:
        self.table = table
        self.client = client
        self.clock = clock
        self._tenants: dict[str, _TenantCache] = {}
        self.reads = 0

    def exposures(self, tenant: str, subscriber: str, start: float, end: float) -> list[Exposure]:
        """The latest exposure per campaign in ``[start, end]`` (unix seconds)."""
        cache = self._refresh(tenant, int(start * 1000))
        needle = subscriber_hash(subscriber)
        best: dict[str, Exposure] = {}
        lo, hi = int(start * 1000), int(end * 1000)
        for frag in cache.fragments.values():
            if not lo <= frag.ms <= hi:
                continue
            for group, blob in frag.groups.items():
                if _contains(blob, needle):
                    seen = best.get(frag.campaign)
                    if seen is None or frag.ms / 1000 > seen.at:
                        best[frag.campaign] = Exposure(frag.campaign, group, frag.ms / 1000)
        return sorted(best.values(), key=lambda e: e.campaign)

    def _refresh(self, tenant: str, start_ms: int) -> _TenantCache:
        cache = self._tenants.setdefault(tenant, _TenantCache())
        now_ms = int(self.clock() * 1000)
        if cache.loaded_from_ms is not None and cache.loaded_from_ms <= start_ms:
            read_from = max(start_ms, cache.refreshed_ms - COMMIT_MARGIN_MS)
        else:
            read_from = start_ms
        for item in self._query(tenant, read_from):
            sk = item["sk"]["S"]
            if sk not in cache.fragments:
                cache.fragments[sk] = _Fragment(
                    item["c"]["S"],
                    int(item["t"]["N"]),
                    {g: bytes(v["B"]) for g, v in item.get("g", {}).get("M", {}).items()},
                )
        cache.loaded_from_ms = min(start_ms, cache.loaded_from_ms or start_ms)
        cache.refreshed_ms = now_ms
        # Keep a day before the window asked for; an older order (a webhook redelivered
        # days later) reads its part again.
        keep_from = start_ms - 24 * 3600 * 1000
        if cache.loaded_from_ms < keep_from:
            for sk in [sk for sk, f in cache.fragments.items() if f.ms < keep_from]:
                del cache.fragments[sk]
            cache.loaded_from_ms = keep_from
        return cache

    def _query(self, tenant: str, from_ms: int):
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND sk >= :from",
            "ExpressionAttributeValues": {
                ":pk": {"S": exposures_pk(tenant)},
                ":from": {"S": f"{max(0, from_ms):013d}"},
            },
        }
        while True:
            try:
                page = self.client.query(**kwargs)
            except ClientError as exc:
                err = exc.response.get("Error", {})
                raise StoreError("Query exposures", err.get("Code", "?"), str(exc)) from exc
            self.reads += 1
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


_INDEXES: weakref.WeakKeyDictionary[Any, dict[str, ExposureIndex]] = weakref.WeakKeyDictionary()


def index_for(table: str, client: Any) -> ExposureIndex:
    """One index per client and table, as long as the client lives (the warm cache of a
    container; a new client, e.g. a test's, starts empty)."""
    per_client = _INDEXES.setdefault(client, {})
    index = per_client.get(table)
    if index is None:
        index = per_client[table] = ExposureIndex(table, client)
    return index
