"""Per-tenant credentials and settings, kept in one Secrets Manager JSON secret.

Secret shape::

    {"tenants": {
        "acme": {"report_keys": ["<bearer key>", ...],      # reports: Authorization: Bearer
                 "webhook_secret": "<shared secret>",       # orders: X-Pushpipe-Hmac-Sha256
                 "attribution_window_h": 24,
                 "site": {"key": "<public site key>",          # X-Pushpipe-Site-Key
                          "origins": ["https://shop.example"], # where it may be used from
                          "subscribe_per_minute": 600}}}}

Several report keys may be valid at once so a tenant can rotate without downtime. The
site key is public (it is in the shop's page): what binds it is the browser's ``Origin``
(a page of another site cannot use it, and the API's CORS answers name only allowed
origins) and the per-minute limit (what bounds a script that forges ``Origin``).
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
SITE_KEY_HEADER = "X-Pushpipe-Site-Key"
DEFAULT_SUBSCRIBE_PER_MINUTE = 600


class NotAuthenticated(PushpipeError):
    """No or unknown credentials (HTTP 401)."""


class Forbidden(PushpipeError):
    """Valid credentials that do not grant this (HTTP 403)."""


class SiteKey(BaseModel):
    key: str = Field(min_length=16, max_length=128)
    origins: list[str] = Field(default_factory=list)  # exact: scheme://host[:port]
    subscribe_per_minute: int = Field(default=DEFAULT_SUBSCRIBE_PER_MINUTE, ge=1, le=100_000)


class TenantConfig(BaseModel):
    report_keys: list[str] = Field(default_factory=list)
    site: SiteKey | None = None
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

    def authorize_site(
        self, site_key: str | None, origin: str | None, claimed_tenant: str | None = None
    ) -> tuple[str, SiteKey]:
        """The tenant whose public site key ``site_key`` is, used from ``origin``.

        Unknown keys are 401; a key used from an origin it is not bound to, or for a
        tenant other than its own, is 403.
        """
        if not site_key:
            raise NotAuthenticated(f"missing {SITE_KEY_HEADER} header (the tenant's site key)")
        given = site_key.strip().encode()
        owner: tuple[str, SiteKey] | None = None
        for name, cfg in self._tenants().items():
            if cfg.site is not None and hmac.compare_digest(given, cfg.site.key.encode()):
                owner = (name, cfg.site)
        if owner is None:
            raise NotAuthenticated("site key is not valid")
        tenant, site = owner
        if claimed_tenant and claimed_tenant != tenant:
            raise Forbidden(f"this site key cannot subscribe to tenant {claimed_tenant!r}")
        if not origin or origin not in site.origins:
            raise Forbidden(
                f"origin {origin or '(none)'} is not one of this site key's allowed web origins"
            )
        return tenant, site

    def site_origin_allowed(self, origin: str | None) -> bool:
        """Whether ``origin`` is an allowed web origin of any tenant's site key (what a
        CORS preflight, which carries no key, can be answered from)."""
        if not origin:
            return False
        return any(
            cfg.site is not None and origin in cfg.site.origins for cfg in self._tenants().values()
        )

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
