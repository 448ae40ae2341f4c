"""What the sender takes and what it reports, independent of any transport."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# RFC 8291 with aes128gcm: 4096-octet record, minus 86 octets of header, 16 of tag,
# 1 of padding delimiter => 3,993 octets of plaintext at most.
MAX_PLAINTEXT = 3993
MAX_TTL_S = 28 * 24 * 3600
URGENCIES = ("very-low", "low", "normal", "high")


class Outcome(StrEnum):
    SENT = "sent"  # any 2xx
    PRUNED = "pruned"  # 404/410: the subscription is gone; never retried
    FAILED = "failed"  # 400/401/403/413 and other permanent answers; reason kept
    SKIPPED = "skipped"  # dry run: every step but the final POST
    # not delivered yet, and not for a permanent reason: the batch ran out of time, or
    # the push service kept throttling (429, WNS 406) or failing (5xx, timeouts); the
    # caller carries it into its next invocation instead of recording a failure
    DEFERRED = "deferred"


@dataclass(frozen=True, slots=True)
class PushMessage:
    recipient_id: str
    endpoint: str
    p256dh: str  # base64url, uncompressed P-256 point
    auth: str  # base64url, 16 bytes
    payload: bytes  # plaintext, at most MAX_PLAINTEXT
    ttl: int = 86400
    urgency: str = "normal"
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    recipient_id: str
    outcome: Outcome
    status: int | None = None  # last HTTP status, None for a transport error
    reason: str | None = None  # why it failed / was pruned
    attempts: int = 1
