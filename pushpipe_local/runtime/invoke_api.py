"""The Lambda ``Invoke`` API of the local runtime, over HTTP.

``POST /2015-03-31/functions/{name}/invocations`` with ``X-Amz-Invocation-Type``
``RequestResponse`` (the default: the handler's result, or its error with
``X-Amz-Function-Error``), ``Event`` (202, queued and retried as Lambda does) or
``DryRun`` (204 if the function exists). A handler's own
``boto3.client("lambda").invoke(...)`` reaches it through ``AWS_ENDPOINT_URL_LAMBDA``.
``GET /_local/status`` answers the runtime's counters (invocations, errors, cold starts).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from pushpipe_local.runtime.http_base import QuietHandler
from pushpipe_local.runtime.pool import FunctionPool, InvokeResult

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/(?P<name>[^/]+)/invocations$")


class Functions(Protocol):
    """What the endpoint needs of the runtime (a missing function raises ``KeyError``)."""

    def pool(self, name: str) -> FunctionPool: ...

    def invoke(self, name: str, event: Any) -> InvokeResult: ...

    def invoke_async(self, name: str, event: Any) -> str: ...

    def status(self) -> dict: ...


def invoke_handler(functions: Functions) -> type[QuietHandler]:
    """The request handler class of the Invoke API over ``functions``."""

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            m = INVOKE_PATH.match(urlsplit(self.path).path)
            if not m:
                return self._json(404, {"message": f"no route {self.path}"})
            name = unquote(m.group("name"))
            body = self._body()
            try:
                event = json.loads(body) if body else {}
            except ValueError:
                return self._json(
                    400,
                    {
                        "__type": "InvalidRequestContentException",
                        "message": "payload is not JSON",
                    },
                )
            try:
                self._invoke(name, event)
            except KeyError:
                self._json(
                    404,
                    {
                        "__type": "ResourceNotFoundException",
                        "message": f"Function not found: {name}",
                    },
                    {"x-amzn-ErrorType": "ResourceNotFoundException"},
                )

        def _invoke(self, name: str, event: Any) -> None:
            kind = self.headers.get("X-Amz-Invocation-Type", "RequestResponse")
            if kind == "Event":
                rid = functions.invoke_async(name, event)
                return self._raw(202, b"", {"x-amzn-RequestId": rid})
            if kind == "DryRun":
                functions.pool(name)
                return self._raw(204, b"", {})
            result = functions.invoke(name, event)
            headers = {
                "x-amzn-RequestId": result.request_id,
                "X-Amz-Executed-Version": "$LATEST",
            }
            if not result.ok:
                headers["X-Amz-Function-Error"] = "Unhandled"
                return self._json(200, result.error or {}, headers)
            return self._json(200, result.payload, headers)

        def do_GET(self) -> None:
            if urlsplit(self.path).path == "/_local/status":
                return self._json(200, functions.status())
            return self._json(404, {"message": "not found"})

    return Handler
