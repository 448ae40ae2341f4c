"""Per-tenant credentials and settings, kept in one Secrets Manager JSON secret.

Secret shape::

    {"tenants": {
        "acme": {"report_keys": ["<bearer key>", ...],      # reports: Authorization: Bearer
                 "webhook_secret": "<shared secret>",       # orders: X-Pushpipe-Hmac-Sha256
                 "attribution_window_h": 24}}}

Several report keys may be valid at once so a tenant can rotate without downtime.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Mapping

from pydantic import BaseModel, Field, ValidationError

from pushpipe.shared.errors import ConfigurationError, PushpipeError

DEFAULT_ATTRIBUTION_WINDOW_H = 24
WEBHOOK_SIGNATURE_HEADER = "X-Pushpipe-Hmac-Sha256"
WEBHOOK_TENANT_HEADER = "X-Pushpipe-Tenant"


class NotAuthenticated(PushpipeError):
    """No or unknown credentials (HTTP 401)."""


class Forbidden(PushpipeError):
    """Valid credentials that do not grant this (HTTP 403)."""


class TenantConfig(BaseModel):
    report_keys: list[str] = Field(default_factory=list)
    webhook_secret: str | None = Field(default=None, min_length=16)
    attribution_window_h: int = Field(default=DEFAULT_ATTRIBUTION_WINDOW_H, ge=1, le=30 * 24)


class TenantDirectory:
    """Reads the tenant secret through ``load`` (cached by Powertools Parameters)."""

    def __init__(self, load: Callable[[], Mapping]) -> None:
        self._load = load

    def _tenants(self) -> dict[str, TenantConfig]:
        raw = self._load() or {}
        try:
            tenants = raw.get("tenants", {})  # an empty secret: no tenants yet
            return {name: TenantConfig.model_validate(cfg) for name, cfg in tenants.items()}
        except (KeyError, TypeError, AttributeError, ValidationError) as exc:
            raise ConfigurationError(f"tenant secret is malformed: {exc}") from exc

    def get(self, tenant: str) -> TenantConfig | None:
        return self._tenants().get(tenant)

    def authorize_report(self, tenant: str, authorization: str | None) -> TenantConfig:
        """``Authorization: Bearer <key>`` must be one of ``tenant``'s report keys.

        A key of another tenant is recognised and refused with 403, a key of nobody with 401.
        """
        if not authorization or not authorization.startswith("Bearer "):
            raise NotAuthenticated("missing 'Authorization: Bearer <report key>' header")
        given = authorization[len("Bearer ") :].strip().encode()
        owner = None
        for name, cfg in self._tenants().items():
            # compare_digest on every key: no early exit that leaks timing
            if any(hmac.compare_digest(given, k.encode()) for k in cfg.report_keys):
                owner = name
        if owner is None:
            raise NotAuthenticated("report key is not valid")
        if owner != tenant:
            raise Forbidden(f"this report key cannot read tenant {tenant!r}")
        return self._tenants()[owner]

    def verify_webhook(
        self, tenant: str | None, body: bytes, signature: str | None
    ) -> TenantConfig:
        """Shopify-style: base64(HMAC-SHA256(webhook secret, raw body)) in the header."""
        if not tenant:
            raise NotAuthenticated(f"missing {WEBHOOK_TENANT_HEADER} header")
        if not signature:
            raise NotAuthenticated(f"missing {WEBHOOK_SIGNATURE_HEADER} header")
        cfg = self.get(tenant)
        if cfg is None or not cfg.webhook_secret:
            raise NotAuthenticated(f"unknown tenant {tenant!r} or no webhook secret")
        expected = webhook_signature(cfg.webhook_secret, body)
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            raise NotAuthenticated("webhook signature does not match the body")
        return cfg


def webhook_signature(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
