"""RFC 8030 request checks and answers of the push endpoint, without transport or state.

``parse_push_headers``, ``check_body_size`` and ``check_content_encoding`` validate what a
sender puts on ``POST /wpush/v2/{id}`` and raise ``PushRejected`` with the answer a push
service gives; ``PushOutcome`` is that answer (status, reason, extra headers, and the
``Delivery`` when it is 201 Created).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pushpipe_local.pushservice.deliveries import Delivery

#: The path of push resources: ``{PUSH_PATH}{subscriber id}``.
PUSH_PATH = "/wpush/v2/"
#: RFC 8030 section 7.2 / RFC 8291 section 4: push services must accept 4096 octets.
MAX_BODY_OCTETS = 4096
#: The longest TTL the service keeps (FCM's 28 days); larger values are reduced.
MAX_TTL_S = 28 * 24 * 3600
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
_TOPIC_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TTL_RE = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What the push endpoint answers: status, reason text, extra headers."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery: Delivery | None = None


class PushRejected(Exception):
    """A push request is refused; ``outcome`` is the answer (never 201)."""

    def __init__(self, status: int, reason: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(reason)
        self.outcome = PushOutcome(status, reason, {} if headers is None else headers)


@dataclass(frozen=True, slots=True)
class PushHeaders:
    """The validated RFC 8030 section 5 headers of one push request."""

    ttl: int
    urgency: str
    topic: str | None


def header(headers: Mapping[str, str], name: str) -> str | None:
    """The header ``name``; case-insensitive for plain dicts as for multidicts."""
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # plain dict: case-insensitive
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def parse_push_headers(headers: Mapping[str, str]) -> PushHeaders:
    """TTL (required, capped at ``MAX_TTL_S``), Urgency and Topic; PushRejected(400)."""
    return PushHeaders(_ttl(headers), _urgency(headers), _topic(headers))


def _ttl(headers: Mapping[str, str]) -> int:
    ttl_text = header(headers, "TTL")
    if ttl_text is None:
        raise PushRejected(400, "missing TTL header (RFC 8030 section 5.2)")
    if not _TTL_RE.fullmatch(ttl_text.strip()):
        raise PushRejected(400, f"TTL must be a non-negative integer, got {ttl_text!r}")
    return min(int(ttl_text), MAX_TTL_S)


def _urgency(headers: Mapping[str, str]) -> str:
    urgency = (header(headers, "Urgency") or "normal").strip().lower()
    if urgency not in URGENCIES:
        raise PushRejected(400, f"Urgency {urgency!r} is not one of very-low, low, normal, high")
    return urgency


def _topic(headers: Mapping[str, str]) -> str | None:
    topic = header(headers, "Topic")
    if topic is not None and not _TOPIC_RE.fullmatch(topic):
        raise PushRejected(
            400, f"Topic {topic!r} must be 1-32 characters of the base64url alphabet"
        )
    return topic


def check_body_size(size: int) -> None:
    """PushRejected(413) above the ``MAX_BODY_OCTETS`` every push service must accept."""
    if size > MAX_BODY_OCTETS:
        raise PushRejected(413, f"body of {size} octets exceeds the {MAX_BODY_OCTETS}-octet limit")


def check_content_encoding(headers: Mapping[str, str]) -> None:
    """PushRejected(400) unless a payload is declared ``Content-Encoding: aes128gcm``."""
    encoding = (header(headers, "Content-Encoding") or "").strip().lower()
    if encoding != "aes128gcm":
        raise PushRejected(
            400,
            f"Content-Encoding {encoding or '(none)'!r} not supported: "
            "payloads must be aes128gcm (RFC 8291)",
        )
