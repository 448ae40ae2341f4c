"""The local API Gateway: an HTTP API (payload format 2.0) for the topology's routes.

A request is matched against the routes (``{name}`` and greedy ``{name+}`` path
parameters; an ``OPTIONS`` request matches any route of its path), turned into the API
Gateway v2 event the function receives in AWS, and the function's answer into the HTTP
response: a ``statusCode``/``headers``/``cookies``/``body`` dict as it is, any other
return value as a 200 JSON body, as HTTP API infers it. A failed invocation is a 500.
"""

from __future__ import annotations

import base64
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote, urlsplit

from pushpipe import topology as t
from pushpipe_local.runtime.http_base import QuietHandler
from pushpipe_local.runtime.pool import InvokeResult

log = logging.getLogger(__name__)

Invoke = Callable[[str, Any], InvokeResult]


def route_regex(path: str) -> re.Pattern[str]:
    """The regex of a route path: ``{name}`` is one segment, ``{name+}`` the rest."""
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\+\\\}", r"(?P<\1>.+)", re.escape(path))
    pattern = re.sub(r"\\\{([A-Za-z0-9_]+)\\\}", r"(?P<\1>[^/]+)", pattern)
    return re.compile(f"^{pattern}$")


def match_route(
    compiled: list[tuple[t.Route, re.Pattern[str]]], method: str, path: str
) -> tuple[t.Route, re.Match[str]] | None:
    """The first route of ``method`` (or ``ANY``) matching ``path``; for ``OPTIONS``, the
    last route whose path matches, if none is declared for ``OPTIONS`` itself."""
    match = None
    for route, rx in compiled:
        m = rx.match(path)
        if m and route.method.upper() in (method, "ANY"):
            return route, m
        if m and method == "OPTIONS":
            match = (route, m)
    return match


def _body_fields(body: bytes) -> dict[str, Any]:
    try:
        text, b64 = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, b64 = base64.b64encode(body).decode(), True
    return {"body": text if body else None, "isBase64Encoded": b64}


def _request_context(
    handler: QuietHandler, route_key: str, method: str, path: str, stage: str
) -> dict[str, Any]:
    now = time.time()
    return {
        "accountId": "123456789012",
        "apiId": "local",
        "stage": stage,
        "domainName": handler.headers.get("Host", "localhost"),
        "requestId": str(uuid.uuid4()),
        "routeKey": route_key,
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": handler.client_address[0],
            "userAgent": handler.headers.get("User-Agent", ""),
        },
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }


def api_event(
    handler: QuietHandler,
    route: t.Route,
    m: re.Match[str],
    parts: SplitResult,
    body: bytes,
    stage: str,
) -> dict[str, Any]:
    """The API Gateway v2 (payload format 2.0) event of one request."""
    route_key = f"{route.method.upper()} {route.path}"
    method = handler.command.upper()
    return {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": parts.path,
        "rawQueryString": parts.query,
        "headers": {k.lower(): v for k, v in handler.headers.items()},
        "queryStringParameters": {k: ",".join(v) for k, v in parse_qs(parts.query).items()} or None,
        "pathParameters": {k: unquote(v) for k, v in m.groupdict().items()} or None,
        "requestContext": _request_context(handler, route_key, method, parts.path, stage),
        **_body_fields(body),
        "stageVariables": None,
    }


def http_api_handler(
    invoke: Invoke, routes: tuple[t.Route, ...], stage: str = "$default"
) -> type[QuietHandler]:
    """The request handler class of an HTTP API serving ``routes`` through ``invoke``."""
    compiled = [(r, route_regex(r.path)) for r in routes]

    class Handler(QuietHandler):
        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            match = match_route(compiled, self.command.upper(), parts.path)
            if match is None:
                return self._json(404, {"message": "Not Found"})
            route, m = match
            event = api_event(self, route, m, parts, self._body(), stage)
            try:
                result = invoke(route.function, event)
            except KeyError:
                return self._json(500, {"message": f"no function {route.function}"})
            if not result.ok:
                log.error("%s failed: %s", route.function, result.error)
                return self._json(500, {"message": "Internal Server Error"})
            self._proxy_response(result.payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

        def _proxy_response(self, payload: Any) -> None:
            if not isinstance(payload, dict) or "statusCode" not in payload:
                # HTTP API 2.0 infers a 200 JSON response from a plain return value
                return self._json(200, payload)
            body = payload.get("body") or ""
            data = base64.b64decode(body) if payload.get("isBase64Encoded") else body.encode()
            headers = dict(payload.get("headers") or {})
            for k, vs in (payload.get("multiValueHeaders") or {}).items():
                headers[k] = ",".join(vs)
            self._raw(
                int(payload["statusCode"]), data, headers, cookies=payload.get("cookies") or []
            )

    return Handler
