"""The public HTTP API: pings, orders, reports and subscriptions.

Routes are typed with pydantic models; Powertools validates requests and generates the
OpenAPI document from this code (``GET /openapi.json``, Swagger UI at ``/docs``).
Domain errors become HTTP answers in one place, the exception handlers at the end.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Annotated

from aws_lambda_powertools.event_handler import (
    APIGatewayHttpResolver,
    CORSConfig,
    Response,
    content_types,
)
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from pushpipe.pings.attribution import OrderIn, OrderResult, record_order
from pushpipe.pings.ingest import PingAccepted, PingBatchIn, PingIn, PingStreamError, accept_pings
from pushpipe.pings.reports import CampaignReport, build_report
from pushpipe.pings.wiring import api_ports
from pushpipe.shared.errors import ConfigurationError, InvalidSubscription, StoreError
from pushpipe.shared.observability import logger, metrics
from pushpipe.shared.ratelimit import RateLimited
from pushpipe.shared.tenants import (
    SITE_KEY_HEADER,
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TENANT_HEADER,
    Forbidden,
    NotAuthenticated,
)
from pushpipe.shared.tokens import TokenExpired, TokenInvalid
from pushpipe.subscriptions.models import (
    KeysChangeRefused,
    SubscribeIn,
    subscription_from_request,
)

cors = CORSConfig(
    allow_origin="*",  # pings and subscriptions come from every shop's domain
    allow_headers=["Content-Type", "Authorization", "X-Pushpipe-Auth", SITE_KEY_HEADER],
    max_age=86400,
)
app = APIGatewayHttpResolver(cors=cors, enable_validation=True)
app.configure_openapi(
    title="pushpipe API",
    version="1",
    description="Delivery and click pings, order webhooks, campaign reports, subscriptions.",
    security_schemes={"reportKey": HTTPBearer(description="the tenant's report key")},
)
app.enable_swagger(path="/docs")


class ErrorBody(BaseModel):
    error: str
    message: str


class SubscribeOut(BaseModel):
    id: str
    tenant: str


def _error(
    status: HTTPStatus, code: str, message: str, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(error=code, message=message).model_dump(),
        headers=headers,
    )


ERRORS: dict[int, OpenAPIResponse] = {
    401: {"description": "forged token / missing or wrong credentials", "content": {}},
    403: {"description": "expired token / credentials of another tenant"},
    413: {"description": "body too large"},
    422: {"description": "invalid request"},
}


# --- pings -----------------------------------------------------------------------------
@app.post(
    "/v1/pings",
    tags=["pings"],
    summary="Report that a notification was delivered (shown), clicked or closed",
    description="One ping or a batch of up to 20. All tokens are verified before anything "
    "is accepted: one bad token rejects the request and nothing of it is counted. Accepts "
    "`text/plain` bodies too, so browsers send it without a CORS preflight.",
    responses={202: {"description": "accepted"}, **ERRORS},
)
def post_pings(
    body: Annotated[PingIn | PingBatchIn, Body(description="a ping or {pings: [...]}")],
) -> Response[PingAccepted]:
    ports = api_ports()
    pings = body.pings if isinstance(body, PingBatchIn) else [body]
    records = accept_pings(pings, ports.signing_keys(), ports.writer)
    metrics.add_metric(name="PingsAccepted", unit="Count", value=len(records))
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=PingAccepted(accepted=len(records)),
    )


# --- orders ----------------------------------------------------------------------------
@app.post(
    "/v1/orders",
    tags=["revenue"],
    summary="The shop's order webhook (HMAC-SHA256 of the raw body, base64)",
    description=f"Headers `{WEBHOOK_TENANT_HEADER}` and `{WEBHOOK_SIGNATURE_HEADER}`. The "
    "order is attributed to the last notification the subscriber clicked within the "
    "tenant's attribution window; an order id counts once however often it is delivered.",
    responses={200: {"description": "recorded (or already recorded)"}, **ERRORS},
)
def post_order(
    order: OrderIn,
    x_pushpipe_tenant: Annotated[str | None, Header(alias=WEBHOOK_TENANT_HEADER.lower())] = None,
    x_pushpipe_hmac_sha256: Annotated[
        str | None, Header(alias=WEBHOOK_SIGNATURE_HEADER.lower())
    ] = None,
) -> OrderResult:
    ports = api_ports()
    raw = app.current_event.decoded_body or ""
    cfg = ports.tenants.verify_webhook(
        x_pushpipe_tenant, raw.encode() if isinstance(raw, str) else raw, x_pushpipe_hmac_sha256
    )
    result = record_order(
        order, x_pushpipe_tenant or "", cfg.attribution_window_h, ports.counters, time.time()
    )
    if not result.duplicate:
        metrics.add_metric(name="OrdersRecorded", unit="Count", value=1)
    return result


# --- reports ---------------------------------------------------------------------------
@app.get(
    "/v1/tenants/<tenant>/campaigns/<campaign>/report",
    tags=["reports"],
    summary="Sent, impressions, clicks, CTR, closes, orders and revenue per variant and hour",
    security=[{"reportKey": []}],
    responses={200: {"description": "the report"}, **ERRORS},
)
def get_report(
    tenant: str,
    campaign: str,
    authorization: Annotated[str | None, Header()] = None,
) -> CampaignReport:
    ports = api_ports()
    ports.tenants.authorize_report(tenant, authorization)
    return build_report(tenant, campaign, ports.counters.campaign_rows(tenant, campaign))


# --- subscriptions ---------------------------------------------------------------------
@app.post(
    "/v1/subscriptions",
    tags=["subscriptions"],
    summary="Subscribe a browser (PushSubscription.toJSON() plus topics, language, country)",
    description=f"The tenant is the one whose public site key is in `{SITE_KEY_HEADER}`; "
    "the request must come from one of that key's allowed web origins (`Origin`) and "
    "stays within its per-minute limit. Subscribing a known endpoint again updates it; "
    "changing its keys needs the current subscription's auth secret in `X-Pushpipe-Auth`.",
    responses={
        201: {"description": "stored"},
        401: ERRORS[401],
        403: {"description": "origin not allowed / keys change without proof"},
        422: ERRORS[422],
        429: {"description": "over the site key's per-minute limit"},
    },
)
def post_subscription(
    body: SubscribeIn,
    site_key: Annotated[str | None, Header(alias=SITE_KEY_HEADER.lower())] = None,
    origin: Annotated[str | None, Header()] = None,
    x_pushpipe_auth: Annotated[str | None, Header(alias="x-pushpipe-auth")] = None,
) -> Response[SubscribeOut]:
    ports = api_ports()
    tenant, site = ports.tenants.authorize_site(site_key, origin, body.tenant)
    ports.limiter.take(f"subscribe#{tenant}", site.subscribe_per_minute)
    sub = ports.subscriptions.put(subscription_from_request(body, tenant), proof=x_pushpipe_auth)
    metrics.add_metric(name="Subscribed", unit="Count", value=1)
    return Response(
        status_code=HTTPStatus.CREATED,
        content_type=content_types.APPLICATION_JSON,
        body=SubscribeOut(id=sub.id, tenant=sub.tenant),
    )


@app.delete(
    "/v1/subscriptions/<sub_id>",
    tags=["subscriptions"],
    summary="Unsubscribe; proven by the subscription's auth secret in X-Pushpipe-Auth",
    description="Idempotent: a subscription that is already gone (unsubscribed, pruned "
    "after a 404/410) answers 204 as well, so a browser's own unsubscribe always succeeds.",
    responses={204: {"description": "removed (or already gone)"}, 403: ERRORS[403]},
)
def delete_subscription(
    sub_id: str,
    tenant: Annotated[str, Query(min_length=1, max_length=64)],
    x_pushpipe_auth: Annotated[str | None, Header(alias="x-pushpipe-auth")] = None,
) -> Response[None]:
    store = api_ports().subscriptions
    sub = store.get(tenant, sub_id)
    if sub is not None:
        if not sub.proven_by(x_pushpipe_auth):
            raise Forbidden("X-Pushpipe-Auth must carry the subscription's auth secret")
        store.delete(tenant, sub_id)
    return Response(status_code=HTTPStatus.NO_CONTENT)


SITE_PATHS = "/v1/subscriptions"


def site_cors(event: dict, response: dict) -> dict:
    """Subscription routes answer CORS for the tenants' allowed web origins only (the
    other routes are for every shop and answer ``*``). Mutates and returns ``response``."""
    if not str(event.get("rawPath", "")).startswith(SITE_PATHS):
        return response
    headers = response.setdefault("headers", {})
    for name in [k for k in headers if k.lower() == "access-control-allow-origin"]:
        del headers[name]
    origin = (event.get("headers") or {}).get("origin")
    if api_ports().tenants.site_origin_allowed(origin):
        headers["Access-Control-Allow-Origin"] = origin
    headers["Vary"] = "Origin"
    return response


@app.get("/openapi.json", include_in_schema=False)
def openapi_json():  # untyped: a Response annotation would enter the schema
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(),
    )


# --- errors: one place maps domain errors to HTTP --------------------------------------
@app.exception_handler(TokenInvalid)
def _token_invalid(exc: TokenInvalid) -> Response:
    metrics.add_metric(name="PingsRejectedForged", unit="Count", value=1)
    return _error(HTTPStatus.UNAUTHORIZED, "token_invalid", str(exc))


@app.exception_handler(TokenExpired)
def _token_expired(exc: TokenExpired) -> Response:
    metrics.add_metric(name="PingsRejectedExpired", unit="Count", value=1)
    return _error(HTTPStatus.FORBIDDEN, "token_expired", str(exc))


@app.exception_handler(NotAuthenticated)
def _not_authenticated(exc: NotAuthenticated) -> Response:
    return _error(HTTPStatus.UNAUTHORIZED, "not_authenticated", str(exc))


@app.exception_handler(Forbidden)
def _forbidden(exc: Forbidden) -> Response:
    return _error(HTTPStatus.FORBIDDEN, "forbidden", str(exc))


@app.exception_handler(NotFoundError)
def _not_found(exc: NotFoundError) -> Response:
    return _error(HTTPStatus.NOT_FOUND, "not_found", str(exc.msg))


@app.exception_handler(KeysChangeRefused)
def _keys_change_refused(exc: KeysChangeRefused) -> Response:
    metrics.add_metric(name="SubscriptionTakeoversRefused", unit="Count", value=1)
    return _error(HTTPStatus.FORBIDDEN, "keys_change_refused", str(exc))


@app.exception_handler(RateLimited)
def _rate_limited(exc: RateLimited) -> Response:
    metrics.add_metric(name="RequestsRateLimited", unit="Count", value=1)
    retry = {"Retry-After": str(exc.retry_after_s)}
    return _error(HTTPStatus.TOO_MANY_REQUESTS, "rate_limited", str(exc), retry)


@app.exception_handler(InvalidSubscription)
def _invalid_subscription(exc: InvalidSubscription) -> Response:
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_subscription", str(exc))


@app.exception_handler(RequestValidationError)
def _invalid_request(exc: RequestValidationError) -> Response:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return _error(HTTPStatus.BAD_REQUEST, "malformed_json", "the body is not valid JSON")
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {e.get('msg')}")
    return _error(HTTPStatus.UNPROCESSABLE_ENTITY, "invalid_request", "; ".join(parts))


@app.exception_handler(PingStreamError)
def _stream_unavailable(exc: PingStreamError) -> Response:
    logger.warning("ping stream refused records", extra={"error": str(exc)})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "stream_unavailable", str(exc))


@app.exception_handler(StoreError)
def _store_unavailable(exc: StoreError) -> Response:
    logger.warning("store call failed", extra={"error": str(exc)})
    return _error(HTTPStatus.SERVICE_UNAVAILABLE, "store_unavailable", str(exc))


@app.exception_handler(ConfigurationError)
def _misconfigured(exc: ConfigurationError) -> Response:
    logger.error("configuration error", extra={"error": str(exc)})
    return _error(HTTPStatus.INTERNAL_SERVER_ERROR, "misconfigured", str(exc))
