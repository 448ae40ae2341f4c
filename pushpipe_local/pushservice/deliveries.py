"""What subscribers received: decrypted deliveries, pending views and duplicate counts.

``DeliveryLog`` keeps the accepted pushes in arrival order (a bounded window read with a
``seq`` cursor), each subscription's undelivered view after Topic collapse (RFC 8030
section 5.4), and counts repeated notifications per subscriber.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from itertools import islice
from typing import Any

from pushpipe_local.pushservice.crypto import b64url_encode


def describe_payload(plaintext: bytes) -> tuple[Any, str, str | None]:
    """(payload, format, nid): parsed JSON if it is JSON, else text, else base64url."""
    if not plaintext:
        return None, "empty", None
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return b64url_encode(plaintext), "base64url", None
    try:
        value = json.loads(text)
    except ValueError:
        return text, "text", None
    nid = value.get("nid") if isinstance(value, dict) else None
    return value, "json", None if nid is None else str(nid)


@dataclass(slots=True)
class Delivery:
    """One push accepted with 201 and decrypted."""

    seq: int
    subscriber: str
    received_at: float
    ttl: int
    urgency: str
    topic: str | None
    payload: Any
    payload_format: str
    nid: str | None
    size: int
    vapid_sub: str | None

    def to_json(self) -> dict[str, Any]:
        """The delivery as ``/_admin/received`` and ``GET /m/{seq}`` return it."""
        return {
            "seq": self.seq,
            "message_id": str(self.seq),
            "subscriber": self.subscriber,
            "received_at": self.received_at,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "nid": self.nid,
            "payload": self.payload,
            "payload_format": self.payload_format,
            "size": self.size,
            "vapid_sub": self.vapid_sub,
        }


class DeliveryLog:
    """The deliveries since the last reset, numbered on from ``last_seq``.

    At most about ``max_records`` deliveries are kept (older ones are dropped in batches)
    and at most ``max_pending`` per subscription's pending view.
    """

    def __init__(self, max_records: int, max_pending: int, last_seq: int = 0) -> None:
        self.max_records = max_records
        self.max_pending = max_pending
        self.last_seq = last_seq
        self._records: list[Delivery] = []
        self._base = last_seq
        self._pending: dict[str, dict[str, Delivery]] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._per_second: dict[int, int] = {}
        self.receptions = 0
        self.duplicates = 0
        self.duplicate_pairs = 0
        self.topic_replacements = 0
        self.first_received_at: float | None = None
        self.last_received_at: float | None = None

    @property
    def distinct_notifications(self) -> int:
        """(subscriber, notification) pairs received at least once."""
        return len(self._seen)

    @property
    def pending_messages(self) -> int:
        """Messages in all pending views."""
        return sum(len(p) for p in self._pending.values())

    @property
    def received_per_second(self) -> list[list[int]]:
        """[[unix second, deliveries in it], ...] in time order."""
        return [[s, c] for s, c in sorted(self._per_second.items())]

    def add(
        self,
        sub_id: str,
        plaintext: bytes,
        size: int,
        ttl: int,
        urgency: str,
        topic: str | None,
        vapid_sub: str | None,
        now: float,
    ) -> Delivery:
        """Record one accepted push and return its ``Delivery``."""
        payload, fmt, nid = describe_payload(plaintext)
        self.last_seq += 1
        delivery = Delivery(
            self.last_seq, sub_id, now, ttl, urgency, topic, payload, fmt, nid, size, vapid_sub
        )
        self._keep(delivery)
        self._count_reception(now)
        identity = nid if nid is not None else hashlib.sha1(plaintext).hexdigest()
        self._count_repeat(sub_id, identity)
        self._add_pending(delivery)
        return delivery

    def _keep(self, delivery: Delivery) -> None:
        records = self._records
        records.append(delivery)
        if len(records) > self.max_records * 1.25:
            drop = len(records) - self.max_records
            del records[:drop]
            self._base += drop

    def _count_reception(self, now: float) -> None:
        self.receptions += 1
        if self.first_received_at is None:
            self.first_received_at = now
        self.last_received_at = now
        second = int(now)
        self._per_second[second] = self._per_second.get(second, 0) + 1

    def _count_repeat(self, sub_id: str, identity: str) -> None:
        pair = (sub_id, identity)
        seen = self._seen.get(pair, 0)
        self._seen[pair] = seen + 1
        if seen:
            self.duplicates += 1
            if seen == 1:
                self.duplicate_pairs += 1

    def _add_pending(self, delivery: Delivery) -> None:
        pending = self._pending.get(delivery.subscriber)
        if pending is None:
            pending = self._pending[delivery.subscriber] = {}
        topic = delivery.topic
        key = f"t:{topic}" if topic else f"m:{delivery.seq}"
        if pending.pop(key, None) is not None:
            self.topic_replacements += 1
        pending[key] = delivery
        if len(pending) > self.max_pending:
            pending.pop(next(iter(pending)))

    def received(
        self, after: int = 0, limit: int = 1000, subscriber: str | None = None
    ) -> dict[str, Any]:
        """Deliveries with ``seq > after`` in arrival order (a cursor)."""
        limit = max(1, min(int(limit), 10_000))
        start = max(0, int(after) - self._base)
        if subscriber is None:
            chosen = self._records[start : start + limit]
        else:
            chosen = list(
                islice((d for d in self._records[start:] if d.subscriber == subscriber), limit)
            )
        return {
            "records": [d.to_json() for d in chosen],
            "next": chosen[-1].seq if chosen else max(int(after), self._base),
            "last_seq": self.last_seq,
            "oldest_seq": self._base + 1,
        }

    def get(self, seq: int) -> Delivery | None:
        """The delivery numbered ``seq`` if it is still kept."""
        index = seq - self._base - 1
        if 0 <= index < len(self._records):
            return self._records[index]
        return None

    def pending(self, sub_id: str, drain: bool = False) -> list[dict[str, Any]]:
        """The subscription's undelivered view after Topic collapse; emptied if ``drain``."""
        view = self._pending.pop(sub_id, {}) if drain else self._pending.get(sub_id, {})
        return [d.to_json() for d in view.values()]

    def acknowledge(self, delivery: Delivery) -> None:
        """Remove the delivery from its subscription's pending view (``DELETE /m/{seq}``)."""
        view = self._pending.get(delivery.subscriber, {})
        for key, pending in list(view.items()):
            if pending.seq == delivery.seq:
                del view[key]

    def forget_pending(self, sub_id: str) -> None:
        """Drop the subscription's pending view (it is gone)."""
        self._pending.pop(sub_id, None)
