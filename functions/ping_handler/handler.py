"""ping_handler: the HTTP API of pings, orders, reports and subscriptions.

API Gateway HTTP API (payload v2). Before routing, two checks Powertools' validation
cannot do: a body over the limit is refused with 413 without being parsed, and a
``text/plain`` ping (what sw.js sends, to avoid a CORS preflight per ping) is read as JSON.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.body_limit import MAX_BODY_BYTES, too_large
from functions.ping_handler.app import app
from pushpipe.pings.wiring import api_ports
from pushpipe.shared.observability import logger, metrics, tracer

PLAIN_JSON_PATHS = ("/v1/pings",)


def precheck(event: dict[str, Any], max_ping_bytes: int) -> dict[str, Any] | None:
    """413 for oversized bodies; ``text/plain`` pings read as JSON. Mutates ``event``."""
    path = event.get("rawPath", "")
    limit = max_ping_bytes if path in PLAIN_JSON_PATHS else MAX_BODY_BYTES
    refused = too_large(event, limit, cors=True)
    if refused is not None:
        metrics.add_metric(name="RequestsTooLarge", unit="Count", value=1)
        return refused
    headers = event.setdefault("headers", {}) or {}
    if path in PLAIN_JSON_PATHS and headers.get("content-type", "").startswith("text/plain"):
        headers["content-type"] = "application/json"
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    early = precheck(event, api_ports().max_ping_bytes)
    if early is not None:
        return early
    return app.resolve(event, context)
