"""A tenant (a shop) at the local HTTP API: its keys, ad-hoc requests, orders and reports.

The tenant's report (API) key and webhook secret are read from the local tenant secret;
a tenant that is not there yet is added with fresh keys (the deployed pipeline reads the
secret too, and ping_handler caches it for minutes). With them: ad-hoc campaign requests
(``POST /v1/requests``, ``GET /v1/requests/{id}``), the shop's signed order webhook
(``POST /v1/orders``), and the campaign report
(``GET /v1/tenants/{tenant}/campaigns/{campaign}/report``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Protocol

from pushpipe import topology as t
from pushpipe.shared.tenants import (
    WEBHOOK_SIGNATURE_HEADER,
    WEBHOOK_TENANT_HEADER,
    webhook_signature,
)
from pushpipe_local.cloud.provision import physical_name
from pushpipe_local.cloud.seed import new_tenant

# Where a tenant uploads the audience file of an ad-hoc request: under drafts/<tenant>/
# (not under the audience prefix, so that nothing sends it before it is approved).
DRAFTS = t.DRAFTS_PREFIX


class Api(Protocol):
    """A local cloud as a tenant reaches it: its HTTP API and AWS clients."""

    @property
    def api_url(self) -> str: ...

    def client(self, service: str) -> Any: ...


# --- the tenant secret ---------------------------------------------------------------------
TENANT_SECRET = physical_name("secret", t.TENANT_SECRET.name)


def _tenants_secret(sm: Any) -> dict[str, Any]:
    return json.loads(sm.get_secret_value(SecretId=TENANT_SECRET)["SecretString"] or "{}")


def _tenant_entry(api: Api, tenant: str, keyless_is_missing: bool) -> dict[str, Any]:
    """The tenant's entry in the local tenant secret, added with fresh keys if missing
    (or, with ``keyless_is_missing``, if it has no report key)."""
    sm = api.client("secretsmanager")
    value = _tenants_secret(sm)
    tenants = value.setdefault("tenants", {})
    missing = tenant not in tenants
    if keyless_is_missing:
        missing = not (tenants.get(tenant) or {}).get("report_keys")
    if missing:
        tenants[tenant] = new_tenant()
        sm.put_secret_value(SecretId=TENANT_SECRET, SecretString=json.dumps(value))
    return tenants[tenant]


def ensure_tenant(api: Api, tenant: str) -> dict:
    """The tenant's entry in the local tenant secret, created if missing."""
    return _tenant_entry(api, tenant, keyless_is_missing=False)


def tenant_key(api: Api, tenant: str) -> str:
    """The tenant's API (report) key from the local tenant secret; a tenant that is not
    there yet is added with fresh keys, as ``pushpipe report`` does."""
    return _tenant_entry(api, tenant, keyless_is_missing=True)["report_keys"][0]


def _send_json(req: urllib.request.Request, timeout: float = 60) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --- ad-hoc requests -------------------------------------------------------------------------
def post_request(api: Api, body: dict) -> tuple[int, dict]:
    """``POST /v1/requests`` with the tenant's key: (HTTP status, JSON answer)."""
    key = tenant_key(api, body["tenant"])
    req = urllib.request.Request(
        f"{api.api_url}/v1/requests",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
        method="POST",
    )
    return _send_json(req)


def request_status(api: Api, tenant: str, request_id: str) -> dict:
    """``GET /v1/requests/{id}`` (an error status raises ``HTTPError``)."""
    req = urllib.request.Request(
        f"{api.api_url}/v1/requests/{request_id}",
        headers={"Authorization": f"Bearer {tenant_key(api, tenant)}"},
    )
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def wait_for_state(
    api: Api, tenant: str, request_id: str, states: Iterable[str], timeout_s: float = 60.0
) -> dict:
    """Poll the request until its state (or, while pending, its stage) is in ``states``."""
    wanted = set(states)
    end = time.time() + timeout_s
    status: dict = {}
    while time.time() < end:
        status = request_status(api, tenant, request_id)
        if status["state"] in wanted or (
            status["state"] == "pending" and status["stage"] in wanted
        ):
            return status
        time.sleep(0.3)
    raise TimeoutError(f"request {request_id} is {status.get('state')}/{status.get('stage')}")


# --- orders ----------------------------------------------------------------------------------
def post_order(api: Api, tenant: str, subscriber: str, order_id: str, amount: str) -> bool:
    """The shop's order webhook, signed with the tenant's webhook secret."""
    secret = _tenant_entry(api, tenant, keyless_is_missing=True)["webhook_secret"]
    body = json.dumps(
        {
            "order_id": order_id,
            "subscriber": subscriber,
            "amount": amount,
            "currency": "EUR",
            "ts": datetime.now(UTC).isoformat(),
        }
    ).encode()
    req = urllib.request.Request(
        f"{api.api_url}/v1/orders",
        data=body,
        headers={
            "Content-Type": "application/json",
            WEBHOOK_TENANT_HEADER: tenant,
            WEBHOOK_SIGNATURE_HEADER: webhook_signature(secret, body),
        },
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status == 200
    except urllib.error.HTTPError:
        return False


# --- the report ------------------------------------------------------------------------------
def fetch_report(api: Api, tenant: str, campaign: str) -> dict:
    """GET the report through the local HTTP API with ``tenant``'s first report key.

    Raises ``SystemExit`` with the reason if the tenant has no key or the API refuses."""
    cfg = (_tenants_secret(api.client("secretsmanager")).get("tenants") or {}).get(tenant)
    if not cfg or not cfg.get("report_keys"):
        raise SystemExit(f"tenant {tenant!r} has no report key in the local tenant secret")
    req = urllib.request.Request(
        f"{api.api_url}/v1/tenants/{tenant}/campaigns/{campaign}/report",
        headers={"Authorization": f"Bearer {cfg['report_keys'][0]}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"report API answered {exc.code}: {exc.read().decode()[:300]}") from exc


def counts_match(report: dict, expected: dict[str, dict[str, int]]) -> bool:
    """Whether the report's counts equal ``expected`` ({variant: {type: n}})."""
    got = {v["variant"]: v for v in report["variants"]}
    return all(
        got.get(variant, {}).get(kind, 0) == n
        for variant, kinds in expected.items()
        for kind, n in kinds.items()
    )


def wait_for_counts(
    api: Api,
    tenant: str,
    campaign: str,
    expected: dict[str, dict[str, int]],
    timeout_s: float = 60.0,
) -> dict:
    """Poll the report until its ping counts equal ``expected`` ({variant: {type: n}})."""
    end = time.time() + timeout_s
    report: dict = {}
    while time.time() < end:
        report = fetch_report(api, tenant, campaign)
        if counts_match(report, expected):
            return report
        time.sleep(0.5)
    return report


def _conversions(report: dict) -> int:
    cmp = report.get("comparison") or {}
    return sum(
        r["conversions"]
        for r in [*cmp.get("variants", []), cmp.get("control") or {"conversions": 0}]
    )


def wait_for_conversions(
    api: Api, tenant: str, campaign: str, conversions: int, timeout_s: float = 60
) -> dict:
    """Poll the report until its comparison counts ``conversions`` orders (variants and
    control group together); the last report if they do not all arrive in time."""
    end = time.time() + timeout_s
    report = fetch_report(api, tenant, campaign)
    while time.time() < end:
        if _conversions(report) >= conversions:
            break
        time.sleep(0.5)
        report = fetch_report(api, tenant, campaign)
    return report
