"""Per push-service origin: throttling and a circuit breaker, shared by every message.

A 429 (or WNS's 406) is the push service saying "slower": it is about the origin, not
about the one message that got it. So the sender keeps one ``OriginGate`` per origin,
for its life (a warm container: the whole chain): a throttle holds back every message
to that origin until the service's Retry-After (or a backoff) has passed, instead of
each message finding out on its own; repeated server errors or timeouts open a circuit
for the origin, and its messages are deferred without a request (the chain carries
them) while the other origins of the batch go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

FAILURES_TO_OPEN = 20  # server errors or timeouts in a row (no success between) open it
OPEN_S = 30.0  # how long an open circuit defers its origin's messages


@dataclass
class OriginGate:
    not_before: float = 0.0  # clock time before which no request goes to the origin
    failures: int = 0  # server errors / timeouts in a row
    open_until: float = 0.0  # the circuit is open until then
    throttles: int = 0
    opened: int = 0


class OriginGates:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        failures_to_open: int = FAILURES_TO_OPEN,
        open_s: float = OPEN_S,
    ) -> None:
        self.clock = clock
        self.failures_to_open = failures_to_open
        self.open_s = open_s
        self._gates: dict[str, OriginGate] = {}

    def gate(self, origin: str) -> OriginGate:
        gate = self._gates.get(origin)
        if gate is None:
            if len(self._gates) >= 10_000:  # bounded: forget the least useful half
                self._gates = dict(list(self._gates.items())[5_000:])
            gate = self._gates[origin] = OriginGate()
        return gate

    def refusal(self, origin: str) -> str | None:
        """Why no request may go to ``origin`` now (its circuit is open), or None."""
        gate = self._gates.get(origin)
        if gate is not None and gate.open_until > self.clock():
            left = gate.open_until - self.clock()
            return (
                f"circuit open for {origin} after {self.failures_to_open} server errors or "
                f"timeouts in a row (retried in {left:.0f} s)"
            )
        return None

    def wait_s(self, origin: str) -> float:
        """How long a request to ``origin`` must wait for its throttle (0: go)."""
        gate = self._gates.get(origin)
        return max(0.0, gate.not_before - self.clock()) if gate is not None else 0.0

    def throttled(self, origin: str, delay_s: float) -> None:
        gate = self.gate(origin)
        gate.not_before = max(gate.not_before, self.clock() + delay_s)
        gate.throttles += 1

    def failed(self, origin: str) -> None:
        gate = self.gate(origin)
        gate.failures += 1
        if gate.failures >= self.failures_to_open:
            gate.open_until = self.clock() + self.open_s
            gate.opened += 1
            gate.failures = self.failures_to_open - 1  # half-open: one more failure reopens

    def throttles(self) -> dict[str, float]:
        """The origins throttled now, with the wall-clock time (epoch s) each may be asked
        again: what a chain tells the other chains of its run."""
        now, wall = self.clock(), time.time()
        return {
            o: round(wall + g.not_before - now, 3)
            for o, g in self._gates.items()
            if g.not_before > now
        }

    def adopt(self, throttles: dict[str, float]) -> None:
        """Throttles another chain of the run found (epoch s): wait for them too."""
        now, wall = self.clock(), time.time()
        for origin, until in throttles.items():
            if until > wall:
                gate = self.gate(origin)
                gate.not_before = max(gate.not_before, now + (until - wall))

    def succeeded(self, origin: str) -> None:
        gate = self._gates.get(origin)
        if gate is not None:
            gate.failures = 0
