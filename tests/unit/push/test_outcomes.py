"""Classification of push-service answers and the bounded retry schedule."""

from __future__ import annotations

import errno
import random
from datetime import UTC, datetime
from email.utils import format_datetime

import aiohttp
import pytest

from pushpipe.push.outcomes import (
    Disposition,
    GiveUp,
    RetryPolicy,
    Verdict,
    classify_exception,
    classify_status,
    failure_reason,
    parse_retry_after,
    retry_delay,
)

NOW = 1_800_000_000.0


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_any_2xx_is_sent(status: int) -> None:
    verdict = classify_status(status)
    assert verdict.disposition is Disposition.SENT
    assert verdict.status == status
    assert verdict.reason is None


@pytest.mark.parametrize("status", [404, 410])
def test_gone_subscriptions_are_pruned_not_retried(status: int) -> None:
    verdict = classify_status(status, "push subscription has unsubscribed or expired")
    assert verdict.disposition is Disposition.PRUNED
    assert not verdict.retryable
    assert verdict.reason is not None
    assert verdict.reason.startswith(str(status))
    assert "unsubscribed" in verdict.reason


# 406 is how WNS (Edge on Windows) says "throttled"
@pytest.mark.parametrize("status", [406, 429, 500, 502, 503, 504, 599])
def test_throttling_and_server_errors_are_retryable(status: int) -> None:
    verdict = classify_status(status, "busy", retry_after="7")
    assert verdict.disposition is Disposition.RETRY
    assert verdict.retryable
    assert verdict.retry_after_s == 7.0
    assert verdict.reason is not None and "busy" in verdict.reason


@pytest.mark.parametrize(
    ("status", "phrase"),
    [
        (400, "Bad Request"),
        (401, "Unauthorized"),
        (403, "Forbidden"),
        (413, "Request Entity Too Large"),
        (418, "I'm a Teapot"),
        (301, "Moved Permanently"),
    ],
)
def test_client_errors_fail_with_status_and_body(status: int, phrase: str) -> None:
    verdict = classify_status(status, "VAPID credentials do not match\n  the subscription")
    assert verdict.disposition is Disposition.FAILED
    assert verdict.status == status
    assert verdict.reason == (f"{status} {phrase}: VAPID credentials do not match the subscription")


def test_failure_reason_keeps_a_short_excerpt_of_a_long_body() -> None:
    reason = failure_reason(400, "x" * 5000)
    assert reason.startswith("400 Bad Request: xxx")
    assert reason.endswith("...")
    assert len(reason) < 250


def test_failure_reason_without_body_or_known_phrase() -> None:
    assert failure_reason(403) == "403 Forbidden"
    assert failure_reason(499, "") == "499"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("1e999", None),
    ],
)
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_after_as_http_date() -> None:
    when = datetime.fromtimestamp(NOW + 30, tz=UTC)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=NOW) == pytest.approx(30)


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # RFC 850
        "Sun Nov  6 08:49:37 1994",  # asctime
    ],
)
def test_retry_after_accepts_the_three_http_date_forms(value: str) -> None:
    then = datetime(1994, 11, 6, 8, 49, 37, tzinfo=UTC).timestamp()
    assert parse_retry_after(value, now=then - 12) == pytest.approx(12)


def test_retry_after_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now=NOW) == 0.0


def test_timeouts_are_retryable() -> None:
    for exc in (
        TimeoutError(),
        aiohttp.ServerTimeoutError("read"),
        aiohttp.ConnectionTimeoutError(),
    ):
        verdict = classify_exception(exc)
        assert verdict.disposition is Disposition.RETRY
        assert verdict.status is None
        assert verdict.reason is not None and "timeout" in verdict.reason


def test_connection_errors_are_retryable() -> None:
    for exc in (
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(111, "Connection refused"),
        ConnectionResetError(104, "reset by peer"),
        aiohttp.ClientPayloadError("truncated"),
    ):
        verdict = classify_exception(exc)
        assert verdict.disposition is Disposition.RETRY, exc
        assert verdict.reason is not None and verdict.reason.startswith("connection error")


def test_a_dropped_connection_is_retried_at_once_then_with_backoff() -> None:
    policy = RetryPolicy(max_attempts=4, base_delay_s=0.5, jitter=0)
    for exc in (
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientOSError(errno.ECONNRESET, "Connection reset by peer"),
        BrokenPipeError(errno.EPIPE, "Broken pipe"),
    ):
        verdict = classify_exception(exc)
        assert verdict.retry_now, exc
        assert retry_delay(policy, 1, verdict) == 0.0
        assert retry_delay(policy, 2, verdict) == 1.0
    refused = classify_exception(aiohttp.ClientOSError(errno.ECONNREFUSED, "refused"))
    assert not refused.retry_now
    assert retry_delay(policy, 1, refused) == 0.5


def test_unusable_url_and_unknown_errors_fail_with_their_name() -> None:
    verdict = classify_exception(aiohttp.InvalidURL("nope://"))
    assert verdict.disposition is Disposition.FAILED
    assert verdict.reason is not None and "invalid endpoint URL" in verdict.reason
    verdict = classify_exception(RuntimeError("odd"))
    assert verdict.disposition is Disposition.FAILED
    assert verdict.reason == "RuntimeError: odd"


RETRY_503 = Verdict(Disposition.RETRY, 503, "503 Service Unavailable")


def test_backoff_doubles_and_is_capped_without_jitter() -> None:
    policy = RetryPolicy(
        max_attempts=10, base_delay_s=0.5, max_delay_s=3, max_total_wait_s=100, jitter=0
    )
    delays = [retry_delay(policy, n, RETRY_503) for n in range(1, 6)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_jitter_only_shortens_backoff_within_its_fraction() -> None:
    policy = RetryPolicy(
        max_attempts=10, base_delay_s=1, max_delay_s=60, max_total_wait_s=100, jitter=0.5
    )
    rng = random.Random(7)
    delays = [retry_delay(policy, 3, RETRY_503, rng=rng) for _ in range(200)]
    assert all(isinstance(d, float) and 2.0 <= d <= 4.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 100  # actually spread, not constant


def test_retry_after_is_honoured_never_shortened() -> None:
    policy = RetryPolicy(max_attempts=4, max_delay_s=10, jitter=0.2)
    verdict = Verdict(Disposition.RETRY, 429, "429 Too Many Requests", retry_after_s=2.0)
    rng = random.Random(1)
    delays = [retry_delay(policy, 1, verdict, rng=rng) for _ in range(100)]
    assert all(isinstance(d, float) and 2.0 <= d <= 2.4 for d in delays)


def test_retry_after_zero_retries_at_once() -> None:
    verdict = Verdict(Disposition.RETRY, 503, "503", retry_after_s=0.0)
    assert retry_delay(RetryPolicy(), 1, verdict) == 0.0


def test_retry_after_beyond_the_cap_gives_up_with_the_reason() -> None:
    policy = RetryPolicy(max_delay_s=10)
    verdict = Verdict(Disposition.RETRY, 429, "429 Too Many Requests", retry_after_s=3600)
    decision = retry_delay(policy, 1, verdict)
    assert isinstance(decision, GiveUp)
    assert "3600s" in decision.reason and "429 Too Many Requests" in decision.reason


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert isinstance(retry_delay(policy, 2, RETRY_503), float)
    decision = retry_delay(policy, 3, RETRY_503)
    assert isinstance(decision, GiveUp)
    assert decision.reason == "retries exhausted after 3 attempts: 503 Service Unavailable"


def test_total_wait_is_bounded() -> None:
    policy = RetryPolicy(
        max_attempts=10, base_delay_s=4, max_delay_s=8, max_total_wait_s=10, jitter=0
    )
    assert retry_delay(policy, 1, RETRY_503, waited_s=0) == 4.0
    decision = retry_delay(policy, 2, RETRY_503, waited_s=4)  # 4 + 8 > 10
    assert isinstance(decision, GiveUp)
    assert "retry budget of 10s" in decision.reason


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"base_delay_s": -1}, {"jitter": 1.5}, {"max_total_wait_s": -2}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)
