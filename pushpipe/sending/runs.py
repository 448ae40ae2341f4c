"""Send runs and their chain cursors: the model (``RunStore`` keeps them in DynamoDB).

A *run* is one audience object (bucket, key, ETag) being sent. It is split into
``chains`` parallel chains; recipient ``i`` belongs to chain ``i % chains``. Each chain
has a cursor item: ``position`` (every recipient before it is done), ``epoch`` (the
fencing token of the invocation that owns the chain) and ``lease_until`` (when that
ownership lapses: the owning invocation's deadline).

* ``claim_run`` is a conditional put on the run id (a hash of bucket, key and ETag):
  a duplicate S3 event or SQS redelivery starts no second send of the same file.
* ``acquire`` takes a chain: it succeeds only if the lease is free (released by the
  previous invocation of the chain, or lapsed) and bumps ``epoch``. A duplicate async
  delivery of the same hand-off finds the lease taken and stops before sending.
* ``commit`` advances the cursor and adds the batch's counts in one transaction,
  conditional on ``epoch``: an invocation that lost its chain (its lease lapsed and a
  new owner took over) is fenced and stops; only its in-flight batch can be repeated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

COUNT_FIELDS = ("sent", "pruned", "failed", "retried", "rejected", "skipped", "control")
RUN_TTL_S = 90 * 24 * 3600

ADMITTING, RUNNING, DONE, ABORTED, REJECTED, FAILED = (
    "admitting",
    "running",
    "done",
    "aborted",
    "rejected",
    "failed",
)
FINAL_STATES = frozenset({DONE, ABORTED, REJECTED, FAILED})


def run_id_for(bucket: str, key: str, etag: str) -> str:
    return hashlib.sha256(f"{bucket}\x1f{key}\x1f{etag.strip(chr(34))}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Cursor:
    """What a chain invocation is handed: where to continue. The stored item is the
    truth; ``position`` here is informational (logs, the first acquire)."""

    run_id: str
    campaign: str
    bucket: str
    key: str
    etag: str
    chain: int
    chains: int
    position: int = 0

    def to_event(self) -> dict:
        return {"action": "chain", "cursor": self.__dict__.copy()}

    @classmethod
    def from_event(cls, data: Mapping[str, Any]) -> Cursor:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


@dataclass
class ChainState:
    chain: int
    position: int
    epoch: int
    state: str
    assigned: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    lease_until: int = 0
    # recipients behind ``position`` that were not delivered yet (out of time, throttled,
    # a failing push service): sent first by the chain's next batch (``batch.carried``)
    carry: list[dict] = field(default_factory=list)


@dataclass
class RunView:
    run_id: str
    campaign: str
    tenant: str
    bucket: str
    key: str
    etag: str
    state: str
    reason: str | None
    chains: int
    total: int
    malformed: int
    created_at: int
    header: str | None = None
    chain_states: list[ChainState] = field(default_factory=list)
    rejections: dict[str, int] = field(default_factory=dict)  # why, how many (top reasons)

    @property
    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(COUNT_FIELDS, 0)
        for c in self.chain_states:
            for k, v in c.counts.items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def carried(self) -> int:
        """Recipients behind the cursors still waiting for delivery (not processed)."""
        return sum(len(c.carry) for c in self.chain_states)

    @property
    def processed(self) -> int:
        """Recipients the run is done with (sent, pruned, failed, malformed, control...).

        A chain's position is always ``chain + m * chains``: the index of its next
        recipient, ``m`` of its recipients being behind it."""
        behind = (
            sum(max(0, (c.position - c.chain) // self.chains) for c in self.chain_states)
            if (self.chains)
            else 0
        )
        return behind - self.carried
