"""Fault injection: which pushes fail, and how (status, Retry-After, timeout, latency).

A ``FaultRule`` selects subscribers (a list, a deterministic fraction, or everyone) and
answers their requests with an error status, or holds them open as a timeout; ``times``
limits a rule to the first N requests per subscriber so retries can succeed.
``FaultConfig`` is the ordered rule list plus the latency added to every push, as set
through ``/_admin/faults``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

_T = TypeVar("_T")

#: The statuses a rule may inject, with the reason phrase its answer carries.
FAULT_REASONS: Mapping[int, str] = {
    # Accepted and never delivered: how Apple answers a revoked Safari subscription
    # (WebKit bug 249766), so only the missing pings tell (subscriptions/engagement.py).
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    406: "Not Acceptable",  # WNS: the channel is throttled
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


#: The fields of a rule's JSON form that ``from_json`` reads.
_JSON_FIELDS = frozenset(
    {"status", "retry_after", "timeout", "then", "subscribers", "fraction", "seed", "times", "name"}
)


def _optional(data: Mapping[str, Any], name: str, convert: Callable[[Any], _T]) -> _T | None:
    """``convert(data[name])``, or None when the field is absent or null."""
    value = data.get(name)
    return None if value is None else convert(value)


def _fraction_point(sub_id: str, seed: str) -> float:
    """A stable point in [0, 1) for this subscriber and seed."""
    digest = hashlib.sha256(f"{seed}:{sub_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(slots=True)
class FaultRule:
    """One injected fault: which subscribers it hits, what happens, and how often.

    Exactly one of ``status`` (answer with that status) or ``timeout`` (hold the request
    open that many seconds, then ``then``: "drop" closes the connection with nothing
    delivered, "deliver" processes the push normally, late). ``subscribers`` or
    ``fraction`` (a deterministic share of ids, by hash of seed and id) selects who is hit;
    neither means everyone. ``times`` limits it to the first N requests per subscriber,
    so a retry can succeed. A 404/410 marks the subscription gone: later pushes to it get
    the same status whatever ``times`` says.
    """

    status: int | None = None
    retry_after: int | None = None
    timeout: float | None = None
    then: str = "drop"
    subscribers: frozenset[str] | None = None
    fraction: float | None = None
    seed: str = ""
    times: int | None = None
    name: str = ""
    fired: int = 0
    _per_subscriber: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._check_action()
        self._check_selection()

    def _check_action(self) -> None:
        """What the rule does: a supported status or a timeout, and its parameters."""
        if (self.status is None) == (self.timeout is None):
            raise ValueError("a fault rule needs exactly one of 'status' or 'timeout'")
        if self.status is not None and self.status not in FAULT_REASONS:
            raise ValueError(
                f"fault status {self.status} not supported; use one of {sorted(FAULT_REASONS)}"
            )
        if self.timeout is not None and not 0 <= self.timeout <= 3600:
            raise ValueError("fault 'timeout' must be between 0 and 3600 seconds")
        if self.then not in ("drop", "deliver"):
            raise ValueError("fault 'then' must be 'drop' or 'deliver'")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("fault 'retry_after' must be >= 0 seconds")
        if self.status == 429 and self.retry_after is None:
            self.retry_after = 1

    def _check_selection(self) -> None:
        """Whom the rule hits and how often."""
        if self.subscribers is not None and self.fraction is not None:
            raise ValueError("a fault rule matches 'subscribers' or 'fraction', not both")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fault 'fraction' must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise ValueError("fault 'times' must be >= 1 (or null for every request)")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        """A rule from its ``/_admin/faults`` JSON; ValueError on any invalid field."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(data) - _JSON_FIELDS - {"fired"}
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {sorted(unknown)}")
        subs = data.get("subscribers")
        if subs is not None and (
            isinstance(subs, str) or not all(isinstance(s, str) for s in subs)
        ):
            raise ValueError("fault 'subscribers' must be a list of subscriber ids")
        try:
            return cls(
                status=_optional(data, "status", int),
                retry_after=_optional(data, "retry_after", int),
                timeout=_optional(data, "timeout", float),
                then=str(data.get("then", "drop")),
                subscribers=None if subs is None else frozenset(subs),
                fraction=_optional(data, "fraction", float),
                seed=str(data.get("seed", "")),
                times=_optional(data, "times", int),
                name=str(data.get("name", "")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid fault rule {dict(data)!r}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        """The rule's JSON form, with how often it has ``fired`` so far."""
        out: dict[str, Any] = {"name": self.name, "times": self.times, "fired": self.fired}
        if self.status is not None:
            out["status"] = self.status
            if self.retry_after is not None:
                out["retry_after"] = self.retry_after
        else:
            out["timeout"] = self.timeout
            out["then"] = self.then
        if self.subscribers is not None:
            out["subscribers"] = sorted(self.subscribers)
        if self.fraction is not None:
            out["fraction"] = self.fraction
            out["seed"] = self.seed
        return out

    def matches(self, sub_id: str) -> bool:
        """Whether the rule selects this subscriber (ignoring ``times``)."""
        if self.subscribers is not None:
            return sub_id in self.subscribers
        if self.fraction is not None:
            return _fraction_point(sub_id, self.seed) < self.fraction
        return True

    def take(self, sub_id: str) -> bool:
        """True (and counted) when this rule fires for this request of ``sub_id``."""
        if not self.matches(sub_id):
            return False
        if self.times is not None:
            used = self._per_subscriber.get(sub_id, 0)
            if used >= self.times:
                return False
            self._per_subscriber[sub_id] = used + 1
        self.fired += 1
        return True


@dataclass(slots=True)
class FaultConfig:
    """The added latency per push and the fault rules, first match wins."""

    latency_ms: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)

    def pick(self, sub_id: str) -> FaultRule | None:
        """The first rule that fires for this request of ``sub_id`` (counting it), if any."""
        for rule in self.rules:
            if rule.take(sub_id):
                return rule
        return None

    def to_json(self) -> dict[str, Any]:
        """The configuration as ``GET /_admin/faults`` returns it."""
        return {"latency_ms": self.latency_ms, "rules": [r.to_json() for r in self.rules]}


def coerce_rules(rules: Iterable[FaultRule | Mapping[str, Any]]) -> list[FaultRule]:
    """Rules given as objects or JSON; ValueError unless ``rules`` is a list of them."""
    if isinstance(rules, str | bytes | Mapping):
        raise ValueError("'rules' must be a list of fault rules")
    return [r if isinstance(r, FaultRule) else FaultRule.from_json(r) for r in rules]
