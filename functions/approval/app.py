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
from pushpipe.approval.decisions import inspect, perform
from pushpipe.approval.models import (
    Action,
    LinkInvalid,
    LinkRefused,
    RequestInvalid,
    RequestNotFound,
    parse_request,
)
from pushpipe.approval.service import payload_previews, submit
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
    if _is_form():
        fields = _form()
        raw: Any = pages.form_to_request(fields)
        authorization: str | None = f"Bearer {fields.get('key', '')}"
    else:
        try:
            raw = json.loads(app.current_event.decoded_body or "")
        except ValueError as exc:
            raise MalformedBody("the body is not JSON") from exc
        authorization = (app.current_event.headers or {}).get("authorization")
    tenant = raw.get("tenant") if isinstance(raw, dict) else None
    try:
        w.tenants.authorize_report(str(tenant or ""), authorization)
    except Forbidden as exc:
        raise Forbidden(f"this API key does not belong to tenant {tenant!r}") from exc
    req = submit(parse_request(raw), w.ports, w.config)
    if _is_form():
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
    req = w.ports.store.get(request_id)
    try:
        w.tenants.authorize_report(req.tenant, authorization)
    except Forbidden as exc:
        raise Forbidden("this key cannot read this request") from exc
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
    action = _action(name)
    view = inspect(token, w.ports, w.config, expect=action)
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
    action = _action(name)
    result = perform(token, w.ports, w.config, reason=fields.get("reason", ""), expect=action)
    return html(200, pages.result_page(result.title, result.message, result.details))


@app.get("/v1/approvers/device")
def device_page() -> Response:
    w = wiring()
    token = (app.current_event.query_string_parameters or {}).get("t")
    view = inspect(token, w.ports, w.config, expect=Action.DEVICE)
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
    except (ValueError, AttributeError) as exc:
        raise MalformedBody("expected {t, subscription}") from exc
    result = perform(token, w.ports, w.config, subscription=subscription, expect=Action.DEVICE)
    return as_json(201, {"message": result.message})


@app.get("/v1/approvers/sw.js")
def service_worker() -> Response:
    return Response(
        status_code=200,
        content_type="text/javascript; charset=utf-8",
        body=pages.sw_js(),
        headers={"Cache-Control": "no-cache"},
    )


# --- every error's answer, in one place ----------------------------------------------------
# Link pages answer HTML; the request API and the device registration answer JSON; the
# request form answers its own page again, with the message and what was typed (no key).
class MalformedBody(Exception):
    """The body could not be read as the route expects (HTTP 400)."""


_JSON_ROUTES = (("GET", "/v1/requests/"), ("POST", "/v1/approvers/device"))


def _submitting() -> bool:
    """The request is ``POST /v1/requests`` (the form or the JSON request API)."""
    event = app.current_event
    return event.request_context.http.method == "POST" and event.raw_path == "/v1/requests"


def _answers_json() -> bool:
    if _submitting():
        return not _is_form()
    event = app.current_event
    method, path = event.request_context.http.method, event.raw_path
    return any(method == m and path.startswith(p) for m, p in _JSON_ROUTES)


def _caller_error(status: int, code: str, message: str) -> Response:
    if _submitting():
        metrics.add_metric(name=f"RequestsRefused_{code}", unit="Count", value=1)
        if _is_form():
            kept = {k: v for k, v in _form().items() if k != "key"}
            prefix = wiring().config.audience_prefix
            return html(status, pages.form_page("/v1/requests", prefix, kept, message))
    return as_json(status, {"error": code, "message": message})


@app.exception_handler(LinkRefused)
def _link_refused(exc: LinkRefused) -> Response:
    if _answers_json():
        return as_json(exc.status, {"error": exc.kind, "message": exc.message})
    return refusal(exc)


@app.exception_handler(MalformedBody)
def _malformed(exc: MalformedBody) -> Response:
    return as_json(400, {"error": "malformed_json", "message": str(exc)})


@app.exception_handler(NotAuthenticated)
def _not_authenticated(exc: NotAuthenticated) -> Response:
    message = f"tenant API key: {exc}" if _submitting() else str(exc)
    return _caller_error(401, "not_authenticated", message)


@app.exception_handler(Forbidden)
def _forbidden(exc: Forbidden) -> Response:
    return _caller_error(403, "forbidden", str(exc))


@app.exception_handler(RequestInvalid)
def _invalid(exc: RequestInvalid) -> Response:
    return _caller_error(422, "invalid_request", str(exc))


@app.exception_handler(RequestNotFound)
def _not_found(exc: RequestNotFound) -> Response:
    return _caller_error(404, "not_found", str(exc))


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
