"""The one body precheck of the HTTP APIs (API Gateway HTTP API, payload v2).

Before a router or a parser sees a body, the gate refuses with a 4xx and a reason what
no route can use, so that no body can make a function fail (a Lambda error is a 5xx, it
counts against the errors alarm and can roll back a canary):

* a body over the route's limit → 413, before anything decodes it;
* bytes that are not UTF-8 → 400 (every route takes text: JSON or a form);
* a body a route reads as JSON that is not JSON, nests deeper than ``MAX_JSON_DEPTH`` or
  holds a number too long to convert → 400.

Every refusal adds one ``RequestsRefusedMalformed`` metric (the security metric a flood
of forged input raises; it alarms, it gates no deploy).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from pushpipe.shared.observability import logger, metrics

MAX_BODY_BYTES = 64 * 1024  # every route that does not declare a smaller limit
MAX_JSON_DEPTH = 32  # no request of any route nests deeper than 6; 32 leaves room
MAX_FORM_FIELDS = 100

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKET = re.compile(r"[\[\]{}]")
_FORM = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def response(self, cors: bool = False) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-store"}
        if cors:
            headers["Access-Control-Allow-Origin"] = "*"
        return {
            "statusCode": self.status,
            "headers": headers,
            "body": json.dumps({"error": self.code, "message": self.message}),
        }


def raw_body(event: dict[str, Any]) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body, validate=False)
    return body.encode("utf-8", "surrogatepass")


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in ``text`` (brackets inside strings do
    not count). Linear, no recursion: it is what keeps ``json.loads`` from recursing."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Refusal | None:
    """None when ``text`` is JSON a route may parse, else why not."""
    if json_depth(text) > max_depth:
        return Refusal(400, "too_deep", f"the JSON body nests deeper than {max_depth} levels")
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and numbers over Python's 4,300-digit limit
        return Refusal(400, "malformed_json", "the body is not valid JSON")
    return None


def check(
    event: dict[str, Any], limit: int = MAX_BODY_BYTES, json_even_if: tuple[str, ...] = ()
) -> Refusal | None:
    """The refusal of ``event``'s body, or None when the route may read it.

    A body is read as JSON unless it is a form (``application/x-www-form-urlencoded``)
    or the method takes no body; ``json_even_if`` lists content-type prefixes (such as
    ``text/plain`` for pings) that the route reads as JSON too — any other text/plain
    body is JSON for the routes as well, as Powertools parses it.
    """
    try:
        data = raw_body(event)
    except (binascii.Error, ValueError):
        return Refusal(400, "malformed_body", "the body is not valid base64")
    if len(data) > limit:
        return Refusal(413, "too_large", f"request body is over {limit} bytes")
    if not data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Refusal(400, "not_utf8", "the body is not UTF-8 text")
    method = (event.get("requestContext", {}).get("http", {}).get("method") or "").upper()
    ctype = ((event.get("headers") or {}).get("content-type") or "").lower()
    if ctype.startswith(_FORM):
        if text.count("&") + 1 > MAX_FORM_FIELDS:
            return Refusal(400, "malformed_form", f"a form has at most {MAX_FORM_FIELDS} fields")
        return None
    if method in ("POST", "PUT", "PATCH") or any(ctype.startswith(p) for p in json_even_if):
        return check_json(text)
    return None


def refuse(
    event: dict[str, Any],
    limit: int = MAX_BODY_BYTES,
    json_even_if: tuple[str, ...] = (),
    cors: bool = False,
) -> dict[str, Any] | None:
    """The response refusing ``event``'s body (counted and logged), or None to route it."""
    refused = check(event, limit, json_even_if)
    if refused is None:
        return None
    metrics.add_metric(name="RequestsRefusedMalformed", unit="Count", value=1)
    logger.info("body refused", extra={"path": event.get("rawPath"), "reason": refused.code})
    return refused.response(cors=cors)
