"""ping_handler: the HTTP API of pings, orders, reports and subscriptions.

API Gateway HTTP API (payload v2). Before routing, what Powertools' validation cannot do:
the body gate (functions/body_gate.py) refuses oversized, non-UTF-8, malformed and
too-deep bodies with a 4xx, and a ``text/plain`` ping (what sw.js sends, to avoid a CORS
preflight per ping) is read as JSON.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import body_gate
from functions.ping_handler.app import app, site_cors
from pushpipe.pings.wiring import api_ports
from pushpipe.shared.observability import logger, metrics, tracer

PLAIN_JSON_PATHS = ("/v1/pings",)


def precheck(event: dict[str, Any], max_ping_bytes: int) -> dict[str, Any] | None:
    """The body gate's refusal (4xx, CORS-readable) or None; ``text/plain`` pings are read
    as JSON. Mutates ``event``."""
    path = event.get("rawPath", "")
    limit = max_ping_bytes if path in PLAIN_JSON_PATHS else body_gate.MAX_BODY_BYTES
    refused = body_gate.refuse(event, limit, json_even_if=("text/plain",), cors=True)
    if refused is not None:
        return refused
    headers = event.setdefault("headers", {}) or {}
    if path in PLAIN_JSON_PATHS and headers.get("content-type", "").startswith("text/plain"):
        headers["content-type"] = "application/json"
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry tokens
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    early = precheck(event, api_ports().max_ping_bytes)
    if early is not None:
        return site_cors(event, early)
    return site_cors(event, app.resolve(event, context))
