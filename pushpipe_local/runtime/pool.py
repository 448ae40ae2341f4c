"""The warm containers of the local Lambda runtime: per function, a pool of worker
processes that import the handler once and keep module state between invocations.

The most recently used idle worker is reused first, as Lambda tends to; a new one is
started (a cold start) while the function is under its concurrency limit, otherwise the
invocation waits for a worker to come free. A worker that exceeds the timeout is killed.
The worker process itself is ``pushpipe_local.runtime.worker``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pushpipe import topology as t
from pushpipe_local.runtime import worker as worker_module

log = logging.getLogger(__name__)
_CTX = mp.get_context("spawn")
START_TIMEOUT_S = 120


@dataclass
class FunctionConfig:
    spec: t.Function
    env: dict[str, str]
    timeout_s: float
    max_concurrency: int
    retry_delays_s: tuple[float, ...] = (1.0, 2.0)


@dataclass
class InvokeResult:
    ok: bool
    payload: Any = None
    error: dict | None = None
    duration_ms: float = 0.0
    request_id: str = ""


def invocation_kind(event: Any) -> str:
    """What an invocation is counted as: the event's ``action`` (chain, sweep, ...), else
    its event source (``aws:sqs``, ``aws:kinesis``) or its HTTP route, else ``other``."""
    if not isinstance(event, dict):
        return "other"
    return str(
        event.get("action")
        or event.get("Records", [{}])[0].get("eventSource", "")
        or event.get("routeKey")
        or "other"
    )


class _Worker:
    """One container: a spawned process running ``worker.serve``, talked to over a pipe."""

    def __init__(self, cfg: FunctionConfig, log_path: Path) -> None:
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.process = _CTX.Process(
            target=worker_module.serve,
            args=(child, cfg.spec.handler, cfg.env, str(log_path)),
            daemon=True,
            name=f"lambda-{cfg.spec.name}",
        )
        self.process.start()
        child.close()
        if not self.conn.poll(START_TIMEOUT_S):
            self.kill()
            raise RuntimeError(
                f"worker for {cfg.spec.name} did not start within {START_TIMEOUT_S} s"
            )
        self.conn.recv()

    def run(self, inv: dict, timeout_s: float) -> dict:
        try:
            self.conn.send(inv)
            if self.conn.poll(timeout_s + 1.0):
                return self.conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError, OSError):
            return {
                "ok": False,
                "error": {
                    "errorType": "Runtime.ExitError",
                    "errorMessage": "the function's process exited",
                },
            }
        self.kill()
        return {
            "ok": False,
            "error": {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {timeout_s:.2f} seconds",
            },
        }

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)

    def close(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.conn.send(None)
        self.process.join(2)
        self.kill()


class FunctionPool:
    """The warm containers of one function."""

    def __init__(self, cfg: FunctionConfig, log_dir: Path, region: str) -> None:
        self.cfg = cfg
        self.region = region
        self.log_path = log_dir / f"{cfg.spec.name}.log"
        self._idle: list[_Worker] = []
        self._busy: dict[str, _Worker] = {}
        self._cond = threading.Condition()
        self._starting = 0
        self.invocations = 0
        self.errors = 0
        self.cold_starts = 0
        # invocations by the event's "action" (or its source), e.g. chain / sweep / sqs
        self.kinds: dict[str, int] = {}

    def _checkout(self) -> _Worker:
        with self._cond:
            while True:
                while self._idle:
                    w = self._idle.pop()  # LIFO: the warmest container first
                    if w.alive:
                        return w
                if len(self._busy) + self._starting < self.cfg.max_concurrency:
                    self._starting += 1
                    break
                self._cond.wait()
        try:
            self.cold_starts += 1
            return _Worker(self.cfg, self.log_path)
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify_all()

    def invoke(self, event: Any, request_id: str | None = None) -> InvokeResult:
        request_id = request_id or str(uuid.uuid4())
        t0 = time.time()
        w = self._checkout()
        kind = invocation_kind(event)
        with self._cond:
            self._busy[request_id] = w
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
        started = time.time()
        inv = {
            "event": event,
            "request_id": request_id,
            "function_name": self.cfg.spec.name,
            "memory_mb": self.cfg.spec.memory_mb,
            "region": self.region,
            "deadline_ms": started * 1000 + self.cfg.timeout_s * 1000,
        }
        log.info(
            "%s start %s (checkout %.0f ms)",
            self.cfg.spec.name,
            request_id[:8],
            (started - t0) * 1000,
        )
        answer = w.run(inv, self.cfg.timeout_s)
        log.info(
            "%s end %s ok=%s %.0f ms",
            self.cfg.spec.name,
            request_id[:8],
            answer.get("ok"),
            (time.time() - started) * 1000,
        )
        self._checkin(request_id, w, bool(answer.get("ok")))
        return InvokeResult(
            ok=bool(answer.get("ok")),
            payload=answer.get("result"),
            error=answer.get("error"),
            duration_ms=(time.time() - started) * 1000,
            request_id=request_id,
        )

    def _checkin(self, request_id: str, w: _Worker, ok: bool) -> None:
        with self._cond:
            self._busy.pop(request_id, None)
            self.invocations += 1
            if w.alive:
                self._idle.append(w)
            if not ok:
                self.errors += 1
            self._cond.notify_all()

    def prewarm(self, n: int) -> None:
        """Start ``n`` containers ahead of traffic (Lambda's provisioned concurrency)."""
        n = min(n, self.cfg.max_concurrency)
        workers: list[_Worker] = []

        def start() -> None:
            workers.append(_Worker(self.cfg, self.log_path))

        threads = [threading.Thread(target=start, daemon=True) for _ in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        with self._cond:
            self._idle.extend(workers)
            self._cond.notify_all()

    def kill_busy(self) -> str | None:
        """Kill one running invocation's container (a crash, for tests)."""
        with self._cond:
            victims = list(self._busy.items())
        if not victims:
            return None
        request_id, w = victims[0]
        w.kill()
        return request_id

    @property
    def busy(self) -> int:
        with self._cond:
            return len(self._busy) + self._starting

    def status(self) -> dict[str, Any]:
        """The pool's counters, as the runtime's status endpoint reports them."""
        return {
            "invocations": self.invocations,
            "errors": self.errors,
            "cold_starts": self.cold_starts,
            "kinds": dict(self.kinds),
            "busy": self.busy,
        }

    def close(self) -> None:
        with self._cond:
            workers = self._idle + list(self._busy.values())
            self._idle, self._busy = [], {}
        for w in workers:
            w.close()
