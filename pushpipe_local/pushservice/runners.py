"""Ways to run the push service outside the caller's event loop.

``PushServiceThread`` serves a ``PushService`` on its own event loop in a daemon thread
and marshals Python calls onto it (tests). ``start_pushservice_process`` runs
``python -m pushpipe_local.pushservice`` in a child process and returns a
``PushServiceProcess`` once the child has printed its URL (local cloud, benchmarks).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pushpipe_local.pushservice.faults import FaultRule
from pushpipe_local.pushservice.http import PushServer
from pushpipe_local.pushservice.keys import Subscriber
from pushpipe_local.pushservice.service import PushService


class PushServiceThread:
    """A ``PushService`` on its own event loop in a daemon thread (for tests).

    ``start()`` returns the URL; the Python-side methods below run on the service's loop,
    so they are safe to call from the test thread while pushes are being received.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **service_kwargs: Any) -> None:
        self.service = PushService(**service_kwargs)
        self.server = PushServer(self.service, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.server.url

    def start(self, timeout: float = 10.0) -> str:
        if self._thread is not None:
            return self.url
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready, failure))
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="pushservice", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"push service did not start within {timeout} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"push service failed to start: {failure[0]!r}") from failure[0]
        return self.url

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.server.stop()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the service loop and return its result."""
        if self._loop is None or self._thread is None:
            return fn(*args, **kwargs)

        async def invoke() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(30)

    def register(self, subscribers: Iterable[Subscriber | Mapping[str, Any]]) -> list[Subscriber]:
        return self.call(self.service.register, list(subscribers))

    def create_subscribers(
        self, count: int, application_server_key: str | None = None
    ) -> list[Subscriber]:
        return self.call(self.service.create_subscribers, count, application_server_key)

    def unsubscribe(self, sub_id: str) -> bool:
        return self.call(self.service.unsubscribe, sub_id)

    def set_faults(
        self,
        latency_ms: float | None = None,
        rules: Iterable[FaultRule | Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return self.call(
            self.service.set_faults, latency_ms, None if rules is None else list(rules)
        )

    def clear_faults(self) -> dict[str, Any]:
        return self.call(self.service.clear_faults)

    def stats(self) -> dict[str, Any]:
        return self.call(self.service.stats)

    def received(
        self, after: int = 0, limit: int = 1000, subscriber: str | None = None
    ) -> dict[str, Any]:
        return self.call(self.service.received, after, limit, subscriber)

    def pending(self, sub_id: str, drain: bool = False) -> list[dict[str, Any]]:
        return self.call(self.service.pending, sub_id, drain)

    def reset(self, subscribers: bool = False) -> None:
        self.call(self.service.reset, subscribers)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if loop is None or thread is None or stopped is None:
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> PushServiceThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PushServiceProcess:
    """A push service running as ``python -m pushpipe_local.pushservice``."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> PushServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_pushservice_process(
    port: int = 0,
    state_file: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    subscribers: int = 0,
    latency_ms: float = 0.0,
    extra_args: Iterable[str] = (),
    python: str = sys.executable,
    timeout: float = 60.0,
) -> PushServiceProcess:
    """Start the service in a child process and wait for the URL it prints."""
    cmd = [python, "-m", "pushpipe_local.pushservice", "--host", host, "--port", str(port)]
    if state_file is not None:
        cmd += ["--state-file", os.fspath(state_file)]
    if subscribers:
        cmd += ["--subscribers", str(subscribers)]
    if latency_ms:
        cmd += ["--latency-ms", str(latency_ms)]
    cmd += list(extra_args)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    url_holder: list[str] = []

    def read_url() -> None:
        assert process.stdout is not None
        url_holder.append(process.stdout.readline().strip())

    reader = threading.Thread(target=read_url, daemon=True)
    reader.start()
    reader.join(timeout)
    url = url_holder[0] if url_holder else ""
    if not url.startswith("http"):
        process.kill()
        process.wait()
        raise RuntimeError(
            f"push service process did not report its URL within {timeout} s "
            f"(exit code {process.returncode}); see its stderr above"
        )
    return PushServiceProcess(process, url)
