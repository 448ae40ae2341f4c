"""What a push service's answer means, and when (if ever) to ask again.

Pure functions, no I/O: the sender feeds them a status, a body excerpt and a
Retry-After header (or the exception a request raised) and acts on the verdict.

- any 2xx            -> SENT (most services answer 201, Apple and Microsoft 200)
- 404 / 410          -> PRUNED: the subscription is gone, never retried
- 429, WNS's 406 (throttled), 5xx, timeouts and connection errors -> RETRY, with a
  bounded backoff that honours Retry-After (delta-seconds or HTTP-date)
- an endpoint whose host resolves to a non-global address -> FAILED (the endpoint
  policy at connect time, ``pushpipe.push.endpoints``)
- 400/401/403/413 and every other status -> FAILED, status and body excerpt kept
"""

from __future__ import annotations

import errno
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from http import HTTPStatus

import aiohttp

from pushpipe.push.endpoints import EndpointRefused

# How much of a push service's error body we keep in a reason.
REASON_BODY_CHARS = 200


# the verdict on a request the batch's time budget did not let start (no answer at all)
OUT_OF_TIME = "out of time for the batch"


class Disposition(StrEnum):
    SENT = "sent"
    PRUNED = "pruned"
    FAILED = "failed"
    RETRY = "retry"


@dataclass(frozen=True, slots=True)
class Verdict:
    """The meaning of one attempt."""

    disposition: Disposition
    status: int | None = None  # None for a transport error
    reason: str | None = None
    retry_after_s: float | None = None  # only for RETRY, when the service said when
    # A connection the peer dropped (typically a keep-alive connection gone stale while
    # a Lambda container was frozen): the first retry goes out at once on a new one.
    retry_now: bool = False

    @property
    def retryable(self) -> bool:
        return self.disposition is Disposition.RETRY


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounds on retrying one message.

    Delay before retry n (n = 1 after the first attempt) without Retry-After:
    ``min(max_delay_s, base_delay_s * 2 ** (n - 1))``, reduced by up to
    ``jitter`` (a fraction) so that a burst of failures does not come back at once.
    With Retry-After: at least what the service asked, plus up to ``jitter`` of it,
    never above ``max_delay_s`` unless the service itself asked for more; a
    Retry-After beyond ``max_delay_s`` gives up instead of waiting that long.
    A message never waits more than ``max_total_wait_s`` in all.
    """

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 10.0
    max_total_wait_s: float = 30.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_total_wait_s < 0:
            raise ValueError("retry delays must not be negative")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction between 0 and 1, got {self.jitter}")


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Returned by :func:`retry_delay` when a retryable failure must not be retried."""

    reason: str


def _status_text(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def _excerpt(body: str) -> str:
    text = " ".join(body.split())
    if len(text) > REASON_BODY_CHARS:
        text = text[: REASON_BODY_CHARS - 3] + "..."
    return text


def failure_reason(status: int, body: str = "") -> str:
    """``"413 Request Entity Too Large: <body excerpt>"``."""
    text = _excerpt(body)
    return f"{_status_text(status)}: {text}" if text else _status_text(status)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (RFC 9110 10.2.3).

    Accepts delta-seconds (``"120"``) or an HTTP-date; a date in the past gives 0.
    Returns None when the header is absent or unreadable (then plain backoff applies).
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value[0].isdigit():  # delta-seconds; a fraction is tolerated
        try:
            seconds = float(value)
        except ValueError:
            return None
        return seconds if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # asctime form and "-0000" parse as naive: HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def classify_status(
    status: int, body: str = "", retry_after: str | None = None, now: float | None = None
) -> Verdict:
    """The meaning of an HTTP answer from a push service."""
    if 200 <= status < 300:
        return Verdict(Disposition.SENT, status)
    if status in (404, 410):
        return Verdict(Disposition.PRUNED, status, failure_reason(status, body))
    # 406 is how WNS says "throttled" (Windows Notification Service response codes):
    # the same as a 429, never a permanent failure.
    if status in (406, 429) or 500 <= status < 600:
        return Verdict(
            Disposition.RETRY,
            status,
            failure_reason(status, body),
            parse_retry_after(retry_after, now),
        )
    return Verdict(Disposition.FAILED, status, failure_reason(status, body))


def classify_exception(exc: BaseException) -> Verdict:
    """The meaning of a request that raised instead of answering.

    Timeouts and connection-level errors are transient (RETRY); anything else
    (an unusable URL, a malformed answer) fails the message with the error named.
    """
    refused = exc if isinstance(exc, EndpointRefused) else getattr(exc, "os_error", None)
    if isinstance(refused, EndpointRefused):  # connect time: the host resolved to a
        return Verdict(Disposition.FAILED, None, str(refused))  # private address
    if isinstance(exc, TimeoutError):  # asyncio's and aiohttp's timeouts are TimeoutErrors
        return Verdict(Disposition.RETRY, None, "timeout: no answer from the push service")
    if isinstance(exc, aiohttp.InvalidURL):
        return Verdict(Disposition.FAILED, None, f"invalid endpoint URL: {exc}")
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | OSError):
        detail = str(exc) or type(exc).__name__
        dropped = isinstance(exc, aiohttp.ServerDisconnectedError) or (
            isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE)
        )
        return Verdict(
            Disposition.RETRY, None, f"connection error: {_excerpt(detail)}", retry_now=dropped
        )
    detail = str(exc) or type(exc).__name__
    return Verdict(Disposition.FAILED, None, f"{type(exc).__name__}: {_excerpt(detail)}")


def retry_delay(
    policy: RetryPolicy,
    attempts_done: int,
    verdict: Verdict,
    waited_s: float = 0.0,
    rng: random.Random | None = None,
) -> float | GiveUp:
    """How long to wait before the next attempt, or why not to make one.

    ``attempts_done`` counts attempts already made (1 after the first);
    ``waited_s`` is the time this message already spent waiting between attempts.
    """
    last = verdict.reason or "retryable failure"
    if attempts_done >= policy.max_attempts:
        return GiveUp(f"retries exhausted after {attempts_done} attempts: {last}")
    if verdict.retry_now and attempts_done == 1:
        return 0.0
    rand = (rng or random).random()
    if verdict.retry_after_s is not None:
        asked = verdict.retry_after_s
        if asked > policy.max_delay_s:
            return GiveUp(
                f"push service asked to retry after {asked:g}s, beyond the "
                f"{policy.max_delay_s:g}s limit: {last}"
            )
        delay = max(asked, min(policy.max_delay_s, asked * (1 + policy.jitter * rand)))
    else:
        delay = min(policy.max_delay_s, policy.base_delay_s * 2 ** (attempts_done - 1))
        delay *= 1 - policy.jitter * rand
    if waited_s + delay > policy.max_total_wait_s:
        return GiveUp(
            f"retry budget of {policy.max_total_wait_s:g}s spent after "
            f"{attempts_done} attempts: {last}"
        )
    return delay
