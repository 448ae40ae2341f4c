"""The push service's state and its push decision, apart from the HTTP transport.

``PushService`` holds the subscribers, the fault configuration, the VAPID token cache, the
deliveries and the counters behind ``/_admin/stats``. ``accept`` decides and records one
``POST /wpush/v2/{id}`` exactly as the HTTP endpoint does: subscription, injected status
fault, RFC 8030 headers, body size, VAPID, then aes128gcm decryption.
``pushpipe_local.pushservice.http`` serves it.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pushpipe_local.pushservice.crypto import DecryptionError, decrypt_push
from pushpipe_local.pushservice.deliveries import Delivery, DeliveryLog
from pushpipe_local.pushservice.faults import FAULT_REASONS, FaultConfig, FaultRule, coerce_rules
from pushpipe_local.pushservice.keys import (
    Subscriber,
    generate_subscribers,
    read_subscribers,
    write_subscribers,
)
from pushpipe_local.pushservice.protocol import (
    PushOutcome,
    PushRejected,
    check_body_size,
    check_content_encoding,
    header,
    parse_push_headers,
)
from pushpipe_local.pushservice.vapid import VapidError, VapidVerifier

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _RequestCounters:
    """Push requests by answer and injected faults by kind, since the last reset."""

    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    faults_injected: Counter[str] = field(default_factory=Counter)
    first_at: float | None = None
    last_at: float | None = None

    def count(self, status: int | str, now: float) -> None:
        self.requests += 1
        self.by_status[str(status)] += 1
        if self.first_at is None:
            self.first_at = now
        self.last_at = now


class PushService:
    """The push service state and its push decision.

    Once it is served (``http.PushServer``), all methods must run on the server's event
    loop thread (the admin routes do; ``PushServiceThread`` marshals its calls). Before
    that they can be called from anywhere. ``public_url`` is the base URL senders use
    when it differs from the bound one (its origin is also accepted as VAPID ``aud``).
    """

    def __init__(
        self,
        *,
        public_url: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
        max_records: int = 100_000,
        max_pending_per_subscriber: int = 100,
        require_vapid: bool = True,
    ) -> None:
        self.public_url = public_url.rstrip("/") if public_url else None
        self.state_file = Path(state_file) if state_file else None
        self.require_vapid = require_vapid
        self.vapid = VapidVerifier()
        self.faults = FaultConfig()
        self._subscribers: dict[str, Subscriber] = {}
        self._gone: dict[str, int] = {}
        self._deliveries = DeliveryLog(max_records, max_pending_per_subscriber)
        self._counters = _RequestCounters()
        if self.state_file and self.state_file.exists():
            self._load_state()

    # ---- subscribers

    def register(self, subscribers: Iterable[Subscriber | Mapping[str, Any]]) -> list[Subscriber]:
        """Add subscribers (objects or ``to_record`` dicts); persists the state file."""
        added = [s if isinstance(s, Subscriber) else Subscriber.from_record(s) for s in subscribers]
        for sub in added:
            self._subscribers[sub.id] = sub
            self._gone.pop(sub.id, None)
        self._save_state()
        return added

    def create_subscribers(
        self, count: int, application_server_key: str | None = None
    ) -> list[Subscriber]:
        """Register ``count`` new subscribers with fresh keys."""
        return self.register(generate_subscribers(count, application_server_key))

    def subscriber(self, sub_id: str) -> Subscriber | None:
        return self._subscribers.get(sub_id)

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers.values())

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscriptions(
        self, base_url: str, offset: int = 0, limit: int | None = None
    ) -> list[dict[str, Any]]:
        """PushSubscription JSONs, in registration order, with endpoints on ``base_url``."""
        stop = None if limit is None else offset + limit
        return [s.subscription(base_url) for s in islice(self._subscribers.values(), offset, stop)]

    def unsubscribe(self, sub_id: str) -> bool:
        """The browser dropped the subscription: later pushes get 410 Gone."""
        if sub_id not in self._subscribers:
            return False
        self._gone[sub_id] = 410
        self._deliveries.forget_pending(sub_id)
        return True

    # ---- faults

    def set_faults(
        self,
        latency_ms: float | None = None,
        rules: Iterable[FaultRule | Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Set the added latency and/or replace the fault rules (None keeps the current)."""
        new_rules = self.faults.rules if rules is None else coerce_rules(rules)
        new_latency = self.faults.latency_ms
        if latency_ms is not None:
            new_latency = float(latency_ms)
            if not 0 <= new_latency <= 600_000:
                raise ValueError("latency_ms must be between 0 and 600000")
        self.faults = FaultConfig(latency_ms=new_latency, rules=new_rules)
        return self.faults.to_json()

    def clear_faults(self) -> dict[str, Any]:
        self.faults = FaultConfig()
        return self.faults.to_json()

    def pick_fault(self, sub_id: str) -> FaultRule | None:
        """The fault rule that fires for this request, if any (known, live subscribers)."""
        if not self.faults.rules or sub_id not in self._subscribers or sub_id in self._gone:
            return None
        return self.faults.pick(sub_id)

    # ---- the push decision (no transport)

    def accept(
        self,
        sub_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        audiences: Iterable[str],
        fault: FaultRule | None = None,
        now: float | None = None,
    ) -> PushOutcome:
        """Decide and record one push request exactly as the HTTP endpoint does."""
        now = time.time() if now is None else now
        outcome = self._decide(sub_id, headers, body, tuple(audiences), fault, now)
        self._counters.count(outcome.status, now)
        return outcome

    def _decide(
        self,
        sub_id: str,
        headers: Mapping[str, str],
        body: bytes,
        audiences: tuple[str, ...],
        fault: FaultRule | None,
        now: float,
    ) -> PushOutcome:
        """Each check in turn; the first failing one gives the answer, else 201 Created."""
        try:
            sub = self._live_subscriber(sub_id)
            if fault is not None and fault.status is not None:
                return self._fault_outcome(sub_id, fault.status, fault)
            meta = parse_push_headers(headers)
            check_body_size(len(body))
            vapid_sub = self._verify_sender(sub, headers, audiences, now)
            plaintext = self._decrypt(sub, headers, body)
        except PushRejected as rejected:
            return rejected.outcome
        # sub.id, not the request's copy: one string shared by every record of a subscriber
        delivery = self._deliveries.add(
            sub.id, plaintext, len(body), meta.ttl, meta.urgency, meta.topic, vapid_sub, now
        )
        return PushOutcome(201, "", {"TTL": str(meta.ttl)}, delivery)

    def _live_subscriber(self, sub_id: str) -> Subscriber:
        """The subscriber; 404 if unknown, its gone status (404/410) if it is gone."""
        sub = self._subscribers.get(sub_id)
        if sub is None:
            raise PushRejected(404, f"no push subscription {sub_id!r} on this service")
        gone = self._gone.get(sub_id)
        if gone is not None:
            raise PushRejected(gone, f"push subscription {sub_id} has expired or was removed")
        return sub

    def _fault_outcome(self, sub_id: str, status: int, rule: FaultRule) -> PushOutcome:
        """The answer of an injected status fault; 404/410 also mark the subscription gone."""
        self._counters.faults_injected[str(status)] += 1
        label = f" ({rule.name})" if rule.name else ""
        if status == 201:  # swallowed: answered as delivered, nothing reaches the browser
            return PushOutcome(201, "", {"TTL": "0"})
        if status in (404, 410):
            self._gone[sub_id] = status
            self._deliveries.forget_pending(sub_id)
            return PushOutcome(status, f"injected fault{label}: subscription {sub_id} is gone")
        headers: dict[str, str] = {}
        if rule.retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(rule.retry_after)
        return PushOutcome(status, f"injected fault{label}: {FAULT_REASONS[status]}", headers)

    def _verify_sender(
        self, sub: Subscriber, headers: Mapping[str, str], audiences: tuple[str, ...], now: float
    ) -> str | None:
        """The VAPID ``sub`` contact (None without VAPID when it is optional); 401/403."""
        authorization = header(headers, "Authorization")
        if authorization is None and not self.require_vapid:
            return None
        try:
            claims = self.vapid.verify(authorization, audiences, now)
        except VapidError as exc:
            extra = {"WWW-Authenticate": "vapid"} if exc.status == 401 else {}
            raise PushRejected(exc.status, exc.reason, extra) from exc
        if sub.application_server_key and claims.key != sub.application_server_key:
            raise PushRejected(
                403,
                "VAPID key k does not match the applicationServerKey this subscription "
                "was created with",
            )
        return claims.sub

    def _decrypt(self, sub: Subscriber, headers: Mapping[str, str], body: bytes) -> bytes:
        """The plaintext as the subscriber's browser decrypts it (empty body: empty); 400."""
        if not body:
            return b""
        check_content_encoding(headers)
        try:
            return decrypt_push(body, sub.private_key, sub.auth_secret)
        except DecryptionError as exc:
            raise PushRejected(400, f"{exc} for subscription {sub.id}") from exc

    # ---- called by the transport around ``accept``

    def audiences(self, origin: str) -> tuple[str, ...]:
        """The VAPID ``aud`` values accepted for a request received on ``origin``."""
        if not self.public_url:
            return (origin,)
        parts = urlsplit(self.public_url)
        return (origin, f"{parts.scheme}://{parts.netloc}")

    def count_timeout_fault(self) -> None:
        """A timeout fault is holding a request open (the transport does the waiting)."""
        self._counters.faults_injected["timeout"] += 1

    def count_dropped(self, now: float) -> None:
        """A request was dropped by a timeout fault, without an answer."""
        self._counters.count("dropped", now)

    def acknowledge(self, delivery: Delivery) -> None:
        """The user agent deleted the message: it leaves its pending view."""
        self._deliveries.acknowledge(delivery)

    # ---- inspection

    def stats(self) -> dict[str, Any]:
        """The counters behind ``/_admin/stats`` (since the last reset)."""
        counters, deliveries = self._counters, self._deliveries
        return {
            "requests": counters.requests,
            "by_status": dict(counters.by_status),
            "receptions": deliveries.receptions,
            "distinct_notifications": deliveries.distinct_notifications,
            "duplicates": deliveries.duplicates,
            "duplicate_pairs": deliveries.duplicate_pairs,
            "first_request_at": counters.first_at,
            "last_request_at": counters.last_at,
            "first_received_at": deliveries.first_received_at,
            "last_received_at": deliveries.last_received_at,
            "received_per_second": deliveries.received_per_second,
            "pending_messages": deliveries.pending_messages,
            "topic_replacements": deliveries.topic_replacements,
            "faults_injected": dict(counters.faults_injected),
            "subscribers": len(self._subscribers),
            "gone": len(self._gone),
            "last_seq": deliveries.last_seq,
            "vapid_cache": {"hits": self.vapid.hits, "misses": self.vapid.misses},
        }

    def received(
        self, after: int = 0, limit: int = 1000, subscriber: str | None = None
    ) -> dict[str, Any]:
        """Decrypted deliveries with ``seq > after`` in arrival order (a cursor)."""
        return self._deliveries.received(after, limit, subscriber)

    def delivery(self, seq: int) -> Delivery | None:
        return self._deliveries.get(seq)

    def pending(self, sub_id: str, drain: bool = False) -> list[dict[str, Any]]:
        """The subscription's undelivered view after Topic collapse (RFC 8030 section 5.4)."""
        return self._deliveries.pending(sub_id, drain)

    def reset(self, subscribers: bool = False) -> None:
        """Forget deliveries, counters, faults and gone marks (and subscribers if asked).

        Sequence numbers keep growing, so a cursor held across a reset stays valid.
        """
        old = self._deliveries
        self._deliveries = DeliveryLog(old.max_records, old.max_pending, old.last_seq)
        self._counters = _RequestCounters()
        self._gone.clear()
        self.faults = FaultConfig()
        self.vapid.clear()
        if subscribers:
            self._subscribers.clear()
            self._save_state()

    # ---- state file

    def _load_state(self) -> None:
        assert self.state_file is not None
        for sub in read_subscribers(self.state_file):
            self._subscribers[sub.id] = sub
        log.info("restored %d subscribers from %s", len(self._subscribers), self.state_file)

    def _save_state(self) -> None:
        if self.state_file is not None:
            write_subscribers(self.state_file, self._subscribers.values())
