"""The approval function's HTTP API: the request form, ``POST /v1/requests``, and the
pages behind the e-mail links.

Every link opens a confirmation page (GET changes nothing, so mail scanners and link
previews that fetch links approve nothing); the page's button POSTs the token back and
only that performs the action. Refusals (forged, expired, used, foreign links,
self-approval, a request that is no longer pending) are pages with a clear reason and
the matching status code.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from functions.approval import pages
from pushpipe.approval.models import (
    Action,
    LinkInvalid,
    LinkRefused,
    RequestInvalid,
    RequestNotFound,
    parse_request,
)
from pushpipe.approval.service import inspect, payload_previews, perform, submit
from pushpipe.approval.wiring import wiring
from pushpipe.shared.errors import ConfigurationError, StoreError
from pushpipe.shared.observability import logger, metrics
from pushpipe.shared.tenants import Forbidden, NotAuthenticated

app = APIGatewayHttpResolver()

HTML = "text/html; charset=utf-8"
JSON = "application/json"
_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",  # a page URL holds a link token: never pass it on
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": _CSP,
}
ACTIONS = {a.value: a for a in (Action.APPROVE, Action.REJECT, Action.TEST)}


def html(status: int, body: str, csp: str | None = None) -> Response:
    headers = dict(HEADERS)
    if csp:
        headers["Content-Security-Policy"] = csp
    return Response(status_code=status, content_type=HTML, body=body, headers=headers)


def as_json(status: int, body: Any) -> Response:
    return Response(
        status_code=status,
        content_type=JSON,
        body=json.dumps(body),
        headers={"Cache-Control": "no-store"},
    )


def _form() -> dict[str, str]:
    raw = app.current_event.decoded_body or ""
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _is_form() -> bool:
    ctype = (app.current_event.headers or {}).get("content-type", "")
    return ctype.startswith("application/x-www-form-urlencoded")


def refusal(exc: LinkRefused) -> Response:
    metrics.add_metric(name=f"LinksRefused_{exc.kind}", unit="Count", value=1)
    logger.info("link refused", extra={"kind": exc.kind, "reason": exc.message})
    titles = {
        "invalid": "This link is not valid",
        "expired": "This link has expired",
        "used": "This link was already used",
        "not-an-approver": "You are not an approver of this request",
        "self-approval": "You cannot approve your own request",
        "closed": "This request is no longer waiting for a decision",
        "already-decided": "You have already approved this request",
        "no-test-device": "No test device registered",
    }
    return html(exc.status, pages.refusal_page(titles.get(exc.kind, "Refused"), exc.message))


# --- the request form and the request API --------------------------------------------------
@app.get("/v1/requests/form")
def request_form() -> Response:
    w = wiring()
    return html(200, pages.form_page("/v1/requests", w.config.audience_prefix))


@app.post("/v1/requests")
def post_request() -> Response:
    w = wiring()
    form = _is_form()
    if form:
        fields = _form()
        raw: Any = pages.form_to_request(fields)
        authorization = f"Bearer {fields.get('key', '')}"
    else:
        try:
            raw = json.loads(app.current_event.decoded_body or "")
        except ValueError:
            return as_json(400, {"error": "malformed_json", "message": "the body is not JSON"})
        authorization = (app.current_event.headers or {}).get("authorization")
    tenant = raw.get("tenant") if isinstance(raw, dict) else None

    def fail(status: int, code: str, message: str) -> Response:
        metrics.add_metric(name=f"RequestsRefused_{code}", unit="Count", value=1)
        if form:
            kept = {k: v for k, v in fields.items() if k != "key"}
            page = pages.form_page("/v1/requests", w.config.audience_prefix, kept, message)
            return html(status, page)
        return as_json(status, {"error": code, "message": message})

    try:
        w.tenants.authorize_report(str(tenant or ""), authorization)
        body = parse_request(raw)
        req = submit(body, w.ports, w.config)
    except NotAuthenticated as exc:
        return fail(401, "not_authenticated", f"tenant API key: {exc}")
    except Forbidden:
        return fail(403, "forbidden", f"this API key does not belong to tenant {tenant!r}")
    except RequestInvalid as exc:
        return fail(422, "invalid_request", str(exc))
    if form:
        return html(201, pages.submitted_page(req))
    return as_json(
        202,
        {
            "id": req.id,
            "tenant": req.tenant,
            "campaign": req.campaign,
            "state": req.state.value,
            "stage": req.stage.value,
            "approvers": list(req.eligible_approvers()),
            "approvals_required": req.approvals_required,
            "expires_at": req.expires_at,
            "status_url": f"{w.config.api_url}/v1/requests/{req.id}",
        },
    )


@app.get("/v1/requests/<request_id>")
def get_request(request_id: str) -> Response:
    w = wiring()
    authorization = (app.current_event.headers or {}).get("authorization")
    try:
        req = w.ports.store.get(request_id)
        w.tenants.authorize_report(req.tenant, authorization)
    except RequestNotFound as exc:
        return as_json(404, {"error": "not_found", "message": str(exc)})
    except NotAuthenticated as exc:
        return as_json(401, {"error": "not_authenticated", "message": str(exc)})
    except Forbidden:
        return as_json(403, {"error": "forbidden", "message": "this key cannot read this request"})
    return as_json(
        200,
        {
            "id": req.id,
            "tenant": req.tenant,
            "campaign": req.campaign,
            "requester": req.requester,
            "state": req.state.value,
            "stage": req.stage.value,
            "reason": req.reason,
            "recipients": req.audience_total,
            "malformed": req.audience_malformed,
            "approvals": req.approvals,
            "approvals_required": req.approvals_required,
            "expires_at": req.expires_at,
            "audience_key": req.audience_key,
            "released": req.released,
            "request": req.request.model_dump(mode="json"),
            "decisions": [d.__dict__ for d in req.decisions],
        },
    )


# --- the e-mail links ----------------------------------------------------------------------
def _action(name: str) -> Action:
    action = ACTIONS.get(name)
    if action is None:
        raise LinkInvalid(
            f"There is no action {name!r}. Open the link exactly as it is in the e-mail."
        )
    return action


@app.get("/v1/approval/<name>")
def confirm(name: str) -> Response:
    w = wiring()
    token = (app.current_event.query_string_parameters or {}).get("t")
    try:
        action = _action(name)
        view = inspect(token, w.ports, w.config, expect=action)
    except LinkRefused as exc:
        return refusal(exc)
    previews = payload_previews(view.request, w.ports, w.config)
    return html(
        200,
        pages.confirm_page(
            action,
            token or "",
            f"/v1/approval/{action.value}",
            view.request,
            previews,
            view.claims.approver,
            view.devices,
        ),
    )


@app.post("/v1/approval/<name>")
def act(name: str) -> Response:
    w = wiring()
    fields = _form()
    token = fields.get("t") or (app.current_event.query_string_parameters or {}).get("t")
    try:
        action = _action(name)
        result = perform(token, w.ports, w.config, reason=fields.get("reason", ""), expect=action)
    except LinkRefused as exc:
        return refusal(exc)
    return html(200, pages.result_page(result.title, result.message, result.details))


@app.get("/v1/approvers/device")
def device_page() -> Response:
    w = wiring()
    token = (app.current_event.query_string_parameters or {}).get("t")
    try:
        view = inspect(token, w.ports, w.config, expect=Action.DEVICE)
    except LinkRefused as exc:
        return refusal(exc)
    body, nonce = pages.device_page(
        token or "",
        view.claims.approver,
        w.vapid_public_key(),
        "/v1/approvers/device",
        "/v1/approvers/sw.js",
    )
    csp = (
        f"default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-{nonce}'; "
        "connect-src 'self'; worker-src 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    return html(200, body, csp)


@app.post("/v1/approvers/device")
def register_device() -> Response:
    w = wiring()
    try:
        body = json.loads(app.current_event.decoded_body or "")
        token, subscription = body.get("t"), body.get("subscription")
    except (ValueError, AttributeError):
        return as_json(400, {"error": "malformed_json", "message": "expected {t, subscription}"})
    try:
        result = perform(token, w.ports, w.config, subscription=subscription, expect=Action.DEVICE)
    except LinkRefused as exc:
        return as_json(exc.status, {"error": exc.kind, "message": exc.message})
    except RequestInvalid as exc:
        return as_json(422, {"error": "invalid_request", "message": str(exc)})
    return as_json(201, {"message": result.message})


@app.get("/v1/approvers/sw.js")
def service_worker() -> Response:
    return Response(
        status_code=200,
        content_type="text/javascript; charset=utf-8",
        body=pages.sw_js(),
        headers={"Cache-Control": "no-cache"},
    )


# --- errors that are not the caller's --------------------------------------------------------
@app.exception_handler(StoreError)
def _store_error(exc: StoreError) -> Response:
    logger.warning("store call failed", extra={"error": str(exc)})
    return html(
        HTTPStatus.SERVICE_UNAVAILABLE,
        pages.refusal_page("Temporarily unavailable", f"Please retry in a minute ({exc.code})."),
    )


@app.exception_handler(ConfigurationError)
def _misconfigured(exc: ConfigurationError) -> Response:
    logger.error("configuration error", extra={"error": str(exc)})
    return html(
        HTTPStatus.INTERNAL_SERVER_ERROR,
        pages.refusal_page("pushpipe is misconfigured", str(exc)),
    )
