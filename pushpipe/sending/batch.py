"""One batch of a chain: take the next recipients, turn them into push messages, and
tally what the push services answered into counts and archive records."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pushpipe.audience.format import CONTROL, CampaignHeader, Malformed, Recipient
from pushpipe.audience.payloads import PayloadBuilder
from pushpipe.audience.variants import assign
from pushpipe.push.endpoints import endpoint_fingerprint, service_of
from pushpipe.push.models import Outcome, PushMessage, SendResult
from pushpipe.sending.runs import Cursor
from pushpipe.sending.streams import OpenStream
from pushpipe.shared.tokens import notification_id

# A recipient not delivered yet (out of time, throttled, a failing push service) is
# carried from batch to batch with the cursor; after this many invocations it fails.
MAX_CARRIES = 6
# The carry lives in the chain's cursor item (DynamoDB: 400 KB an item): what does not
# fit fails with the reason instead of growing the item past the limit.
MAX_CARRY_BYTES = 300_000

METRIC_OF = {
    Outcome.SENT: "sent",
    Outcome.PRUNED: "pruned",
    Outcome.FAILED: "failed",
    Outcome.SKIPPED: "skipped",
}


def default_topic(campaign: str) -> str:
    """A campaign without its own ``topic`` still sends one (RFC 8030 §5.4, at most 32
    base64url characters): a push service then replaces a still-queued duplicate — such
    as one re-sent after a crash — instead of delivering it twice."""
    digest = hashlib.sha256(campaign.encode()).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Batch:
    messages: list[PushMessage] = field(default_factory=list)
    variants: dict[str, str] = field(default_factory=dict)  # recipient id -> variant
    records: list[dict] = field(default_factory=list)  # archive records
    counts: dict[str, int] = field(default_factory=dict)
    by_variant: dict[tuple[str, str], int] = field(default_factory=dict)
    pruned: list[str] = field(default_factory=list)  # recipient ids the push service gave up
    taken: int = 0  # recipients taken from the stream (carried ones are not)
    last_index: int = -1
    entries: list[dict] = field(default_factory=list)  # per message, what carrying needs
    carry: list[dict] = field(default_factory=list)  # not delivered yet: the next batch's
    carry_bytes: int = 0

    def count(self, metric: str, variant: str | None = None, n: int = 1) -> None:
        self.counts[metric] = self.counts.get(metric, 0) + n
        if variant is not None:
            self.by_variant[(variant, metric)] = self.by_variant.get((variant, metric), 0) + n

    def reached(self) -> dict[str, list[str]]:
        """{variant or "control": [subscriber ids]} of those sent to or held out."""
        groups: dict[str, list[str]] = {}
        for rec in self.records:
            if rec["outcome"] in ("sent", CONTROL):
                groups.setdefault(rec["variant"], []).append(rec["subscriber"])
        return groups

    def tally(
        self, results: Sequence[SendResult], header: CampaignHeader, cursor: Cursor, ts: str
    ) -> None:
        """Count each answer by variant and archive it with the payload that was sent."""
        for message, entry, r in zip(self.messages, self.entries, results, strict=True):
            variant = entry["v"]
            if r.attempts > 1:
                self.count("retried", None, r.attempts - 1)
            if r.outcome is Outcome.DEFERRED:
                r = self._carry(entry, r)
                if r.outcome is Outcome.DEFERRED:
                    continue
            metric = METRIC_OF[r.outcome]
            self.count(metric, variant)
            if r.outcome is Outcome.PRUNED:
                self.pruned.append(r.recipient_id)
            self.records.append(
                record(
                    header,
                    cursor,
                    r.recipient_id,
                    variant,
                    metric,
                    ts,
                    r,
                    message.payload,
                    message.endpoint,
                )
            )

    def _carry(self, entry: dict, r: SendResult) -> SendResult:
        """Keep a deferred recipient for the next batch, unless it was carried too often
        or the carry is full: then it fails, with the reason."""
        carries = entry["n"] + 1
        if carries >= MAX_CARRIES:
            return SendResult(
                r.recipient_id,
                Outcome.FAILED,
                r.status,
                f"not delivered in {carries} invocations: {r.reason}",
                r.attempts,
            )
        size = len(json.dumps(entry, ensure_ascii=False)) + 8
        if self.carry_bytes + size > MAX_CARRY_BYTES:
            return SendResult(
                r.recipient_id,
                Outcome.FAILED,
                r.status,
                f"not delivered and the chain's carry is full: {r.reason}",
                r.attempts,
            )
        self.carry_bytes += size
        self.carry.append({**entry, "n": carries})
        return r

    def add(self, item: Recipient, variant: str, carries: int, message: PushMessage) -> None:
        self.variants[item.id] = variant
        self.messages.append(message)
        self.entries.append(
            {
                "i": item.index,
                "id": item.id,
                "e": item.endpoint,
                "p": item.p256dh,
                "a": item.auth,
                "l": item.language,
                "c": item.country,
                "v": variant,
                "n": carries,
            }
        )


def fill_batch(
    stream: OpenStream,
    header: CampaignHeader,
    builder: PayloadBuilder,
    cursor: Cursor,
    batch_size: int,
    now: float,
    carried: Sequence[dict] = (),
) -> tuple[Batch, bool]:
    """The carried recipients first, then the chain's next recipients from the stream,
    ``batch_size`` in all. Returns (batch, exhausted): exhausted when the stream is."""
    batch = Batch()
    run_ts = utc(now)
    topic = header.topic or default_topic(header.id)

    def message(item: Recipient, variant: str) -> PushMessage:
        return PushMessage(
            recipient_id=item.id,
            endpoint=item.endpoint,
            p256dh=item.p256dh,
            auth=item.auth,
            payload=builder.build(item, variant, now),
            ttl=header.ttl,
            urgency=header.urgency,
            topic=topic,
        )

    for e in carried:
        again = Recipient(e["i"], e["id"], e["e"], e["p"], e["a"], e["l"], e["c"])
        batch.add(again, e["v"], e["n"], message(again, e["v"]))
    if len(batch.messages) >= batch_size:
        return batch, False
    for item in stream.items:
        batch.taken += 1
        batch.last_index = item.index
        if isinstance(item, Malformed):
            batch.count("rejected")
        elif item.muted or (header.countries and item.country not in header.countries):
            batch.count("skipped")
        else:
            variant = assign(header.id, item.id, header.variants, header.control_percent)
            if variant == CONTROL:
                batch.count("control", CONTROL)
                batch.records.append(record(header, cursor, item.id, CONTROL, "control", run_ts))
            else:
                batch.add(item, variant, 0, message(item, variant))
        if batch.taken + len(carried) >= batch_size:
            return batch, False
    return batch, True


def record(
    header: CampaignHeader,
    cursor: Cursor,
    subscriber: str,
    variant: str,
    outcome: str,
    ts: str,
    result: SendResult | None = None,
    payload: bytes | None = None,
    endpoint: str | None = None,
) -> dict:
    """One archive record (the sends table of the audit trail). ``service`` and ``ep``
    (which push service, which endpoint) let the engagement check find subscriptions
    that a push service keeps accepting pushes for but that never ping back."""
    return {
        "ts": ts,
        "tenant": header.tenant,
        "campaign": header.id,
        "variant": variant,
        "notification": notification_id(header.id, subscriber),
        "subscriber": subscriber,
        "run": cursor.run_id,
        "chain": cursor.chain,
        "outcome": outcome,
        "status": result.status if result else None,
        "reason": result.reason if result else None,
        "attempts": result.attempts if result else 0,
        "payload": payload.decode() if payload else None,
        "service": service_of(endpoint) if endpoint else None,
        "ep": endpoint_fingerprint(endpoint) if endpoint else None,
    }
