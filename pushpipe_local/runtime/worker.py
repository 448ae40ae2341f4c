"""A local Lambda "container": one process that imports a handler once and serves
invocations one at a time, keeping module state between them (warm starts).

Its pool (``pushpipe_local.runtime.pool``) starts it with ``multiprocessing`` (spawn),
sends invocation dicts over a pipe and reads back results. The pool enforces the timeout
by killing the process, as Lambda does.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any


class LocalContext:
    """The Lambda context object, with a remaining time that really runs down."""

    def __init__(self, inv: dict[str, Any]) -> None:
        self.function_name = inv["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{inv['region']}:123456789012:function:{inv['function_name']}"
        )
        self.memory_limit_in_mb = inv["memory_mb"]
        self.aws_request_id = inv["request_id"]
        self.log_group_name = f"/aws/lambda/{inv['function_name']}"
        self.log_stream_name = f"local/{os.getpid()}"
        self.identity = None
        self.client_context = None
        self._deadline_ms = inv["deadline_ms"]

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))


def serve(conn: Connection, handler_path: str, env: dict[str, str], log_path: str) -> None:
    """Entry point of the worker process."""
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - lives as long as the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log
    os.environ.update(env)
    module_name, _, attr = handler_path.rpartition(".")
    init_error: dict | None = None
    handler = None
    try:
        handler = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # an import error is reported on every invocation
        init_error = _error(exc, "Runtime.ImportModuleError")
    conn.send({"ready": True, "pid": os.getpid()})
    while True:
        try:
            inv = conn.recv()
        except EOFError:
            return
        if inv is None:
            return
        if init_error is not None or handler is None:
            conn.send({"ok": False, "error": init_error})
            continue
        try:
            result = handler(inv["event"], LocalContext(inv))
            conn.send({"ok": True, "result": result})
        except Exception as exc:  # the handler's error goes back to the invoker
            conn.send({"ok": False, "error": _error(exc)})


def _error(exc: BaseException, kind: str | None = None) -> dict[str, Any]:
    return {
        "errorType": kind or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc),
    }
