"""The push service over HTTP: ``PushServer`` serves a ``PushService`` with aiohttp.

Push side (RFC 8030): ``POST /wpush/v2/{id}`` receives a push, ``GET /m/{seq}`` reads and
``DELETE /m/{seq}`` acknowledges a message. Admin side, for tests and the demo:
``/_admin/health``, ``/_admin/subscriptions`` (create, list, delete, pending view),
``/_admin/faults`` (get, set, clear), ``/_admin/stats``, ``/_admin/received`` and
``/_admin/reset``. Timeout faults and the added latency are applied here, around
``PushService.accept``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import web

from pushpipe_local.pushservice.deliveries import Delivery
from pushpipe_local.pushservice.faults import FaultRule
from pushpipe_local.pushservice.protocol import PUSH_PATH
from pushpipe_local.pushservice.service import PushService
from pushpipe_local.pushservice.vapid import VapidError, load_vapid_key

log = logging.getLogger(__name__)


class PushServer:
    """A ``PushService`` served on ``host:port`` (0 picks a free port) in the running loop."""

    def __init__(self, service: PushService, host: str = "127.0.0.1", port: int = 0) -> None:
        self.service = service
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    @property
    def url(self) -> str:
        """The base URL of the started server (the service's ``public_url`` when set)."""
        if self._url is None:
            raise RuntimeError("push service not started")
        return self.service.public_url or self._url

    async def start(self) -> str:
        """Bind and serve; returns the base URL (``http://host:port``)."""
        if self._runner is not None:
            return self.url
        runner = web.AppRunner(build_app(self.service), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self._url = f"http://{host}:{bound_port}"
        self.port = bound_port
        log.info("push service listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop serving; requests in flight get up to a second to finish."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()


def build_app(service: PushService) -> web.Application:
    """An aiohttp application with the push and admin routes of ``service``."""
    routes = _Routes(service)
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_post(PUSH_PATH + "{id}", routes.push)
    app.router.add_get("/m/{seq}", routes.get_message)
    app.router.add_delete("/m/{seq}", routes.delete_message)
    app.router.add_get("/_admin/health", routes.health)
    app.router.add_post("/_admin/subscriptions", routes.create_subscriptions)
    app.router.add_get("/_admin/subscriptions", routes.list_subscriptions)
    app.router.add_delete("/_admin/subscriptions/{id}", routes.unsubscribe)
    app.router.add_get("/_admin/subscriptions/{id}/pending", routes.pending)
    app.router.add_get("/_admin/faults", routes.get_faults)
    app.router.add_post("/_admin/faults", routes.set_faults)
    app.router.add_delete("/_admin/faults", routes.clear_faults)
    app.router.add_get("/_admin/stats", routes.stats)
    app.router.add_get("/_admin/received", routes.received)
    app.router.add_post("/_admin/reset", routes.reset)
    return app


class _Routes:
    """The request handlers, bound to one service."""

    def __init__(self, service: PushService) -> None:
        self.service = service

    # ---- push endpoint

    async def push(self, request: web.Request) -> web.StreamResponse:
        service = self.service
        sub_id = request.match_info["id"]
        fault = service.pick_fault(sub_id)
        if fault is not None and fault.timeout is not None:
            dropped = await self._hold(request, fault, fault.timeout)
            if dropped is not None:
                return dropped
            fault = None
        body = await request.read()
        origin = _request_base(request)
        outcome = service.accept(
            sub_id, request.headers, body, audiences=service.audiences(origin), fault=fault
        )
        latency = service.faults.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000.0)
        headers = dict(outcome.headers)
        if outcome.status == 201 and outcome.delivery is not None:
            headers["Location"] = f"{origin}/m/{outcome.delivery.seq}"
            return web.Response(status=201, headers=headers)
        return web.Response(status=outcome.status, text=outcome.reason + "\n", headers=headers)

    async def _hold(
        self, request: web.Request, fault: FaultRule, timeout: float
    ) -> web.Response | None:
        """Apply a timeout fault: wait, then drop the connection (a response) or go on (None)."""
        self.service.count_timeout_fault()
        await asyncio.sleep(timeout)
        if fault.then != "drop":
            return None
        self.service.count_dropped(time.time())
        if request.transport is not None:
            request.transport.abort()
        # Nothing reaches the client: the connection is already gone.
        return web.Response(status=504, text="injected timeout fault\n")

    async def get_message(self, request: web.Request) -> web.Response:
        return web.json_response(self._delivery_from(request).to_json())

    async def delete_message(self, request: web.Request) -> web.Response:
        self.service.acknowledge(self._delivery_from(request))
        return web.Response(status=204)

    def _delivery_from(self, request: web.Request) -> Delivery:
        try:
            seq = int(request.match_info["seq"])
        except ValueError:
            raise web.HTTPNotFound(text="no such message\n") from None
        delivery = self.service.delivery(seq)
        if delivery is None:
            raise web.HTTPNotFound(text=f"message {seq} is unknown or no longer kept\n")
        return delivery

    # ---- admin

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "subscribers": self.service.subscriber_count})

    async def create_subscriptions(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200_000:
            raise _bad_request("'count' must be an integer between 1 and 200000")
        key = body.get("application_server_key")
        if key is not None:
            try:
                load_vapid_key(str(key))
            except VapidError as exc:
                raise _bad_request(f"application_server_key: {exc.reason}") from None
        created = self.service.create_subscribers(count, key)
        base = _request_base(request)
        return web.json_response(
            {"subscriptions": [s.subscription(base) for s in created]}, status=201
        )

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        offset = _int_query(request, "offset", 0)
        limit = _int_query(request, "limit", 1000)
        subs = self.service.subscriptions(_request_base(request), offset, limit)
        return web.json_response(
            {"total": self.service.subscriber_count, "offset": offset, "subscriptions": subs}
        )

    async def unsubscribe(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["id"]
        if not self.service.unsubscribe(sub_id):
            raise web.HTTPNotFound(text=f"no push subscription {sub_id!r}\n")
        return web.Response(status=204)

    async def pending(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["id"]
        if self.service.subscriber(sub_id) is None:
            raise web.HTTPNotFound(text=f"no push subscription {sub_id!r}\n")
        drain = request.query.get("drain", "").lower() in ("1", "true", "yes")
        messages = self.service.pending(sub_id, drain)
        return web.json_response({"subscriber": sub_id, "messages": messages})

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.faults.to_json())

    async def set_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        unknown = set(body) - {"latency_ms", "rules"}
        if unknown:
            raise _bad_request(f"unknown field(s) {sorted(unknown)}; use latency_ms and rules")
        latency = body.get("latency_ms")
        if latency is not None and (
            isinstance(latency, bool) or not isinstance(latency, int | float)
        ):
            raise _bad_request("'latency_ms' must be a number")
        try:
            config = self.service.set_faults(latency_ms=latency, rules=body.get("rules"))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(config)

    async def clear_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.clear_faults())

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.stats())

    async def received(self, request: web.Request) -> web.Response:
        after = _int_query(request, "after", 0)
        limit = _int_query(request, "limit", 1000)
        subscriber = request.query.get("subscriber")
        return web.json_response(self.service.received(after, limit, subscriber))

    async def reset(self, request: web.Request) -> web.Response:
        body = await _json_body(request) if request.can_read_body else {}
        drop_subscribers = body.get("subscribers", False)
        if not isinstance(drop_subscribers, bool):
            raise _bad_request("'subscribers' must be true or false")
        self.service.reset(subscribers=drop_subscribers)
        return web.json_response(self.service.stats())


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=reason + "\n")


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise _bad_request(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request("request body must be a JSON object")
    return body


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"query parameter {name!r} must be an integer") from None
    if value < 0:
        raise _bad_request(f"query parameter {name!r} must be >= 0")
    return value


def _request_base(request: web.Request) -> str:
    """``scheme://host`` of the request, as the client addressed the service."""
    return f"{request.scheme}://{request.host}"
