"""approval: ad-hoc campaign requests and their approval by e-mail.

Events:
* API Gateway HTTP API (payload v2): the request form, ``POST /v1/requests`` and the
  pages behind the e-mail links → ``app`` (functions/approval/app.py);
* ``{"action": "prepare", "request": id}`` from its own async invocation → count the
  audience, mail approvers and requester;
* ``{"action": "release", "request": id}`` from its own async invocation → write the
  approved audience under the audience prefix, once;
* ``{"action": "sweep"}`` from the schedule → expire undecided requests, finish
  interrupted releases.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions.approval.app import app
from pushpipe.approval.service import prepare, release, sweep
from pushpipe.approval.wiring import wiring
from pushpipe.shared.observability import logger, metrics, tracer

MAX_BODY_BYTES = 64 * 1024


def _too_large(event: dict[str, Any]) -> dict[str, Any] | None:
    body = event.get("body") or ""
    size = len(base64.b64decode(body)) if event.get("isBase64Encoded") else len(body.encode())
    if size <= MAX_BODY_BYTES:
        return None
    return {
        "statusCode": 413,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {"error": "too_large", "message": f"request body is over {MAX_BODY_BYTES} bytes"}
        ),
    }


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action in ("prepare", "release"):
        request_id = str(event.get("request", ""))
        logger.append_keys(request=request_id)
        w = wiring()
        step = prepare if action == "prepare" else release
        return {"request": request_id, "result": step(request_id, w.ports, w.config)}
    if action == "sweep":
        w = wiring()
        return sweep(w.ports, w.config)
    if "requestContext" in event:
        early = _too_large(event)
        if early is not None:
            return early
        return app.resolve(event, context)
    raise ValueError(f"approval got an event it does not know: keys {sorted(event)}")
