"""One batch on the sender's pool of workers: the window of requests in flight.

A worker takes the next message, encrypts it (so encryption overlaps the requests of
the other workers) and posts it; a message to retry is parked on a timer so that a 429
never holds up the rest of the batch.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp.payload import BytesPayload
from yarl import URL

from pushpipe.push.models import Outcome, PushMessage, SendResult
from pushpipe.push.outcomes import OUT_OF_TIME, Disposition, GiveUp, Verdict, retry_delay


class Invalid(Exception):
    """A message that must not leave: the reason goes into its SendResult."""


@dataclass(slots=True)
class Prepared:
    url: URL
    origin: str
    body: BytesPayload
    headers: dict[str, str]


@dataclass(slots=True)
class _Job:
    index: int
    message: PushMessage
    prepared: Prepared | None = None
    attempts: int = 0
    waited_s: float = 0.0
    timer: asyncio.TimerHandle | None = None


class Batch:
    """One batch on a pool of ``concurrency`` workers.

    A worker takes the next message, encrypts it (so encryption overlaps the requests
    of the other workers) and posts it. A message to retry is parked on a timer and
    its worker moves on; when the timer fires the message goes back to the queue.
    Workers wait only when nothing is ready and something is parked, and all leave
    once nothing is ready and nothing is parked.
    """

    def __init__(
        self,
        sender: Any,  # the WebPushSender whose internals a batch drives
        session: aiohttp.ClientSession,
        loop: asyncio.AbstractEventLoop,
        messages: Sequence[PushMessage],
        dry_run: bool,
        deadline: float | None,
    ) -> None:
        self.sender = sender
        self.session = session
        self.loop = loop
        self.dry_run = dry_run
        self.deadline = deadline
        self.results: list[SendResult | None] = [None] * len(messages)
        self.ready: deque[_Job] = deque(_Job(i, m) for i, m in enumerate(messages))
        self.parked: set[asyncio.TimerHandle] = set()
        self.idle: list[asyncio.Future[None]] = []

    async def run(self) -> list[SendResult]:
        workers = min(self.sender.concurrency, len(self.results))
        try:
            await asyncio.gather(*(self._worker() for _ in range(workers)))
        finally:
            for handle in self.parked:
                handle.cancel()
        return self.results  # type: ignore[return-value]  # every slot is filled

    async def _worker(self) -> None:
        ready = self.ready
        while True:
            if ready:
                await self._attempt(ready.popleft())
            elif self.parked:
                waiter = self.loop.create_future()
                self.idle.append(waiter)
                await waiter
            else:
                for waiter in self.idle:  # nothing left anywhere: let the others go too
                    if not waiter.done():
                        waiter.set_result(None)
                self.idle.clear()
                return

    def _unpark(self, job: _Job) -> None:
        self.parked.discard(job.timer)  # type: ignore[arg-type]
        self.ready.append(job)
        while self.idle:
            waiter = self.idle.pop()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def _attempt(self, job: _Job) -> None:
        sender = self.sender
        message = job.message
        rid = message.recipient_id
        if job.prepared is None:
            try:
                job.prepared = sender._prepare(message)
            except Invalid as exc:
                self.results[job.index] = SendResult(rid, Outcome.FAILED, None, str(exc), 0)
                return
            if self.dry_run and rid not in sender.allow_list:
                self.results[job.index] = SendResult(rid, Outcome.SKIPPED, None, "dry run", 0)
                return
        else:  # a retry: same ciphertext, a token valid now
            try:
                job.prepared.headers["Authorization"] = sender._authorization(job.prepared.origin)
            except Invalid as exc:
                self.results[job.index] = SendResult(
                    rid, Outcome.FAILED, None, str(exc), job.attempts
                )
                return
        if not self._origin_allows(job):
            return
        origin = job.prepared.origin
        job.attempts += 1
        verdict = await sender._post(self.session, job.prepared, self.deadline)
        self._tell_gate(origin, verdict)
        disposition = verdict.disposition
        if disposition is not Disposition.RETRY:
            outcome = _OUTCOMES[disposition]
            self.results[job.index] = SendResult(
                rid, outcome, verdict.status, verdict.reason, job.attempts
            )
            return
        delay = retry_delay(sender.retry, job.attempts, verdict, job.waited_s, sender._rng)
        if (
            not isinstance(delay, GiveUp)
            and self.deadline is not None
            and time.monotonic() + delay >= self.deadline
        ):
            delay = GiveUp(
                f"out of time for the batch after {job.attempts} attempts: {verdict.reason}"
            )
        if isinstance(delay, GiveUp):  # a transient answer: not delivered yet, not failed
            self.results[job.index] = SendResult(
                rid, Outcome.DEFERRED, verdict.status, delay.reason, job.attempts
            )
            return
        job.waited_s += delay
        job.timer = self.loop.call_later(delay, self._unpark, job)
        self.parked.add(job.timer)

    def _origin_allows(self, job: _Job) -> bool:
        """False if the job's origin holds it back: deferred (open circuit, or a throttle
        that outlasts the batch) or parked until the throttle ends."""
        gates = self.sender.gates
        assert job.prepared is not None
        origin = job.prepared.origin
        rid = job.message.recipient_id
        refused = gates.refusal(origin)
        if refused is None:
            wait = gates.wait_s(origin)
            if wait <= 0:
                return True
            too_long = wait > self.sender.retry.max_delay_s or (
                self.deadline is not None and time.monotonic() + wait >= self.deadline
            )
            if not too_long:
                job.timer = self.loop.call_later(wait, self._unpark, job)
                self.parked.add(job.timer)
                return False
            refused = f"{origin} is throttling: the next request may go in {wait:.0f} s"
        self.results[job.index] = SendResult(rid, Outcome.DEFERRED, None, refused, job.attempts)
        return False

    def _tell_gate(self, origin: str, verdict: Verdict) -> None:
        gates = self.sender.gates
        if verdict.status in (406, 429):
            backoff = self.sender.retry.base_delay_s * 2 ** min(6, gates.gate(origin).throttles)
            ra = verdict.retry_after_s
            gates.throttled(origin, ra if ra is not None else min(backoff, 10.0))
        elif verdict.disposition is Disposition.RETRY:  # 5xx, timeouts, connection errors
            if verdict.reason != OUT_OF_TIME:  # no request was made: not the origin's fault
                gates.failed(origin)
        else:
            gates.succeeded(origin)


_OUTCOMES = {
    Disposition.SENT: Outcome.SENT,
    Disposition.PRUNED: Outcome.PRUNED,
    Disposition.FAILED: Outcome.FAILED,
}
