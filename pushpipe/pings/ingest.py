"""Delivery, click and close pings: what the service worker posts, what goes on the
stream, and how a batch of them becomes counters.

Path of a ping::

    sw.js --POST /v1/pings--> ping_handler --PutRecords--> Kinesis "pings"
        |-> Firehose "pings-archive" -> S3 pings/yyyy/MM/dd/HH/
        '-> aggregate (BatchProcessor) -> DynamoDB counters

Why Kinesis Data Streams and not Firehose alone: the aggregate needs batches it can
retry, in order per notification (the partition key), with a batching window; Firehose
cannot trigger a function. Firehose reads the same stream to archive the raw pings, so
the handler writes each ping once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Protocol

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field

from pushpipe.pings.counters import CampaignFold, CountedPing, CounterStore, fold_pings
from pushpipe.shared.errors import PushpipeError, StoreError
from pushpipe.shared.tokens import PingClaims, SigningKeys, verify

MAX_PINGS_PER_REQUEST = 20
MAX_TOKEN_CHARS = 2048


class PingType(StrEnum):
    DELIVERED = "delivered"
    CLICKED = "clicked"
    CLOSED = "closed"


class PingIn(BaseModel):
    """One ping as the service worker posts it."""

    model_config = ConfigDict(extra="forbid")

    type: PingType = Field(description="delivered (shown), clicked or closed")
    token: Annotated[str, Field(min_length=10, max_length=MAX_TOKEN_CHARS)] = Field(
        description="the signed ping token from the push payload (payload.ping.token)"
    )
    ts: datetime | None = Field(
        default=None, description="when the browser saw it (ISO-8601); informative only"
    )


class PingBatchIn(BaseModel):
    """Several pings in one request (a page that queued them while offline)."""

    model_config = ConfigDict(extra="forbid")

    pings: list[PingIn] = Field(min_length=1, max_length=MAX_PINGS_PER_REQUEST)


class PingAccepted(BaseModel):
    accepted: int = Field(description="pings put on the stream")


class PingRecord(BaseModel):
    """A verified ping, as put on the stream and archived (one JSON line)."""

    model_config = ConfigDict(extra="ignore")

    v: int = 1
    ts: datetime  # server receive time (UTC): the counter window and the click time
    seen_at: datetime | None = None  # the browser's claim, kept for audit
    type: PingType
    tenant: str
    campaign: str
    variant: str
    notification: str
    subscriber: str
    exp: int  # the token's expiry (unix s): replays are possible until then

    def to_line(self) -> bytes:
        body = {
            "v": self.v,
            "ts": _iso(self.ts),
            "seen_at": _iso(self.seen_at) if self.seen_at else None,
            "type": self.type.value,
            "tenant": self.tenant,
            "campaign": self.campaign,
            "variant": self.variant,
            "notification": self.notification,
            "subscriber": self.subscriber,
            "exp": self.exp,
        }
        return (json.dumps(body, separators=(",", ":")) + "\n").encode()

    def counted(self) -> CountedPing:
        return CountedPing(
            type=self.type.value,
            tenant=self.tenant,
            campaign=self.campaign,
            variant=self.variant,
            notification=self.notification,
            subscriber=self.subscriber,
            received_at=self.ts.timestamp(),
            expires_at=self.exp,
        )


def _iso(ts: datetime) -> str:
    ts = ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class PingStreamError(PushpipeError):
    """Pings could not be put on the stream (the client may retry)."""


class PingWriter(Protocol):
    def put(self, records: Sequence[PingRecord]) -> None: ...


def accept_pings(
    pings: Sequence[PingIn], keys: SigningKeys, writer: PingWriter, now: float | None = None
) -> list[PingRecord]:
    """Verify every token, then put all pings on the stream.

    All or nothing: one forged (``TokenInvalid``) or expired (``TokenExpired``) token
    rejects the request before anything is written, so nothing of it is counted.
    """
    now = time.time() if now is None else now
    claims: list[tuple[PingIn, PingClaims]] = [(p, verify(p.token, keys, now=now)) for p in pings]
    received = datetime.fromtimestamp(now, UTC)
    records = [
        PingRecord(
            ts=received,
            seen_at=p.ts,
            type=p.type,
            tenant=c.tenant,
            campaign=c.campaign,
            variant=c.variant,
            notification=c.notification,
            subscriber=c.subscriber,
            exp=c.exp,
        )
        for p, c in claims
    ]
    writer.put(records)
    return records


class KinesisPingWriter:
    """PutRecords with the notification id as partition key: every ping of a notification
    lands on the same shard, in order, for the aggregate's dedup."""

    def __init__(self, stream_name: str, client=None, attempts: int = 3) -> None:
        self.stream = stream_name
        self.client = client or boto3.client("kinesis")
        self.attempts = attempts

    def put(self, records: Sequence[PingRecord]) -> None:
        entries = [{"Data": r.to_line(), "PartitionKey": r.notification} for r in records]
        for attempt in range(self.attempts):
            try:
                out = self.client.put_records(StreamName=self.stream, Records=entries)
            except ClientError as exc:
                err = exc.response["Error"]
                raise StoreError("PutRecords pings", err["Code"], err["Message"]) from exc
            if not out.get("FailedRecordCount"):
                return
            entries = [
                e for e, r in zip(entries, out["Records"], strict=True) if r.get("ErrorCode")
            ]
            time.sleep(0.05 * (2**attempt))
        raise PingStreamError(f"{len(entries)} pings not accepted by the stream after retries")


# ---------------------------------------------------------------------------------------
# The aggregate side
# ---------------------------------------------------------------------------------------
def parse_record_line(data: bytes | str) -> PingRecord:
    return PingRecord.model_validate_json(data)


class AggregateOutcome(BaseModel):
    counted: int = 0
    duplicates: int = 0
    failed: list[Any] = Field(default_factory=list)  # handles of records to retry
    errors: list[str] = Field(default_factory=list)
    campaigns: int = 0


def aggregate_batch(
    records: Iterable[tuple[PingRecord, Any]], store: CounterStore, writer: str, shard: str
) -> AggregateOutcome:
    """Deduplicate and fold a batch into counters; commit one transaction per campaign.

    ``writer`` identifies the batch (shard id and first sequence number); ``shard`` is the
    counter shard this consumer writes. A campaign whose commit fails has all its records
    returned in ``failed`` (to be retried; the retry dedups what did commit).
    """
    items = [(r.counted(), handle) for r, handle in records]
    store.refresh({(p.tenant, p.campaign) for p, _ in items})
    folds: dict[tuple[str, str], CampaignFold] = fold_pings(items, store)
    outcome = AggregateOutcome(campaigns=len(folds))
    for fold in folds.values():
        try:
            store.commit_fold(fold, writer=writer, shard=shard)
        except StoreError as exc:
            outcome.failed.extend(fold.records)
            outcome.errors.append(f"{fold.tenant}/{fold.campaign}: {exc}")
            continue
        outcome.counted += fold.counted
        outcome.duplicates += fold.duplicates
    return outcome
