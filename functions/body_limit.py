"""The one body-size precheck of the HTTP APIs (API Gateway HTTP API, payload v2).

A body over the limit is refused with 413 before anything parses it; both APIs answer
the same JSON error.
"""

from __future__ import annotations

import base64
import json
from typing import Any

MAX_BODY_BYTES = 64 * 1024  # every route that does not declare a smaller limit


def body_size(event: dict[str, Any]) -> int:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return len(base64.b64decode(body))
    return len(body.encode())


def too_large(
    event: dict[str, Any], limit: int = MAX_BODY_BYTES, cors: bool = False
) -> dict[str, Any] | None:
    """The 413 response for a body over ``limit`` bytes, or None when it fits."""
    if body_size(event) <= limit:
        return None
    headers = {"Content-Type": "application/json"}
    if cors:
        headers["Access-Control-Allow-Origin"] = "*"
    return {
        "statusCode": 413,
        "headers": headers,
        "body": json.dumps(
            {"error": "too_large", "message": f"request body is over {limit} bytes"}
        ),
    }
