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

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from functions import body_gate
from functions.approval.app import app
from pushpipe.approval.service import prepare, release, sweep
from pushpipe.approval.wiring import wiring
from pushpipe.shared.observability import logger, metrics, tracer


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry tokens
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
        refused = body_gate.refuse(event)
        if refused is not None:
            return refused
        return app.resolve(event, context)
    raise ValueError(f"approval got an event it does not know: keys {sorted(event)}")
