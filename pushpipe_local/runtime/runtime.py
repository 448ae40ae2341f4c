"""The local Lambda runtime: runs the unchanged handlers declared in the topology.

``Runtime`` holds a pool of warm containers per function (``pool``), and assembles:

* the Lambda ``Invoke`` API over HTTP (``invoke_api``), so that a handler's own
  ``boto3.client("lambda").invoke(...)`` reaches it through ``AWS_ENDPOINT_URL_LAMBDA``;
* asynchronous invocations (``InvocationType=Event``), run in a thread each and retried
  on error with the same request id, as Lambda does (``async_retries`` of the topology);
* an HTTP API gateway, payload format 2.0, for the topology's routes (``http_api``);
* the event sources (``pollers``): SQS queues, Kinesis streams, schedules, and a Firehose
  pump for delivery streams that read a Kinesis stream.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from pushpipe import topology as t
from pushpipe_local.runtime import http_base
from pushpipe_local.runtime.http_api import http_api_handler
from pushpipe_local.runtime.invoke_api import invoke_handler
from pushpipe_local.runtime.pollers import FirehosePump, KinesisPoller, Schedule, SqsPoller
from pushpipe_local.runtime.pool import FunctionConfig, FunctionPool, InvokeResult

log = logging.getLogger(__name__)

__all__ = ["AsyncFailure", "FunctionConfig", "InvokeResult", "Runtime"]


@dataclass
class AsyncFailure:
    function: str
    request_id: str
    event: Any
    error: dict | None
    attempts: int


@dataclass
class Runtime:
    """All function pools plus the async invocations, pollers and HTTP endpoints."""

    functions: dict[str, FunctionConfig]
    log_dir: Path
    region: str = "us-east-1"
    pools: dict[str, FunctionPool] = field(default_factory=dict)
    failures: list[AsyncFailure] = field(default_factory=list)
    _pending: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _servers: list[ThreadingHTTPServer] = field(default_factory=list)
    invoke_url: str = ""
    api_url: str = ""

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for cfg in self.functions.values():
            self.add_function(cfg)

    def add_function(self, cfg: FunctionConfig) -> None:
        self.functions[cfg.spec.name] = cfg
        self.pools[cfg.spec.name] = FunctionPool(cfg, self.log_dir, self.region)

    # -- invocation --------------------------------------------------------------------
    def pool(self, name: str) -> FunctionPool:
        """The pool of a function by name or ARN (``KeyError`` if there is none)."""
        name = name.split(":function:")[-1].split(":")[0]
        if name not in self.pools:
            raise KeyError(name)
        return self.pools[name]

    def invoke(self, name: str, event: Any) -> InvokeResult:
        return self.pool(name).invoke(event)

    def invoke_async(self, name: str, event: Any) -> str:
        pool = self.pool(name)
        request_id = str(uuid.uuid4())
        with self._lock:
            self._pending += 1
        th = threading.Thread(
            target=self._run_async,
            args=(pool, event, request_id),
            daemon=True,
            name=f"async-{pool.cfg.spec.name}",
        )
        th.start()
        return request_id

    def _run_async(self, pool: FunctionPool, event: Any, request_id: str) -> None:
        try:
            self._retry_async(pool, event, request_id)
        finally:
            with self._lock:
                self._pending -= 1

    def _retry_async(self, pool: FunctionPool, event: Any, request_id: str) -> None:
        retries = pool.cfg.spec.async_retries
        result = None
        for attempt in range(retries + 1):
            if self._stop.is_set():
                return
            result = pool.invoke(event, request_id)
            if result.ok:
                return
            log.warning(
                "async %s attempt %d failed: %s",
                pool.cfg.spec.name,
                attempt + 1,
                (result.error or {}).get("errorMessage"),
            )
            if attempt < retries:
                delays = pool.cfg.retry_delays_s
                self._stop.wait(delays[min(attempt, len(delays) - 1)])
        self.failures.append(
            AsyncFailure(
                pool.cfg.spec.name,
                request_id,
                event,
                result.error if result else None,
                retries + 1,
            )
        )

    @contextmanager
    def working(self) -> Iterator[None]:
        """Count as busy while the block runs (a poller handing a batch to a function)."""
        with self._lock:
            self._pending += 1
        try:
            yield
        finally:
            with self._lock:
                self._pending -= 1

    def busy(self) -> int:
        with self._lock:
            pending = self._pending
        return pending + sum(p.busy for p in self.pools.values())

    def wait_idle(self, timeout_s: float, quiet_s: float = 0.5) -> bool:
        """Wait until nothing runs or waits for quiet_s in a row (pollers may add work)."""
        end = time.time() + timeout_s
        quiet_since = None
        while time.time() < end:
            if self.busy() == 0:
                quiet_since = quiet_since or time.time()
                if time.time() - quiet_since >= quiet_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.05)
        return False

    def status(self) -> dict:
        return {
            "busy": self.busy(),
            "functions": {n: p.status() for n, p in self.pools.items()},
            "async_failures": len(self.failures),
        }

    # -- HTTP endpoints -----------------------------------------------------------------
    def start_invoke_api(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve the Lambda Invoke API; returns its URL (also ``invoke_url``)."""
        self.invoke_url = self._serve(invoke_handler(self), host, port)
        return self.invoke_url

    def start_http_api(
        self,
        routes: tuple[t.Route, ...],
        host: str = "127.0.0.1",
        port: int = 0,
        stage: str = "$default",
    ) -> str:
        """Serve an HTTP API for ``routes``; returns its URL (also ``api_url``)."""
        self.api_url = self._serve(http_api_handler(self.invoke, routes, stage), host, port)
        return self.api_url

    def _serve(self, handler: type[BaseHTTPRequestHandler], host: str, port: int) -> str:
        server = http_base.serve(handler, host, port)
        self._servers.append(server)
        return f"http://{host}:{server.server_address[1]}"

    # -- event sources ------------------------------------------------------------------
    @property
    def stopping(self) -> threading.Event:
        """Set when the runtime stops: pollers end their loops."""
        return self._stop

    def start_thread(self, target: Callable[[], None], name: str) -> None:
        threading.Thread(target=target, daemon=True, name=name).start()

    def poll_sqs(self, sqs: Any, queue_url: str, function: str, batch_size: int) -> None:
        SqsPoller(self, sqs, queue_url, function, batch_size).start()

    def poll_kinesis(
        self, kinesis: Any, stream: str, function: str, batch_size: int, window_s: float
    ) -> None:
        KinesisPoller(self, kinesis, stream, function, batch_size, window_s).start()

    def schedule(self, function: str, every_s: float, payload: dict) -> None:
        Schedule(self, function, every_s, payload).start()

    def pump_firehose(self, kinesis: Any, firehose: Any, stream: str, delivery: str) -> None:
        FirehosePump(self, kinesis, firehose, stream, delivery).start()

    def stop(self) -> None:
        self._stop.set()
        for s in self._servers:
            s.shutdown()
            s.server_close()
        for p in self.pools.values():
            p.close()
