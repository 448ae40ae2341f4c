"""What a fresh local cloud's secrets are seeded with, generated at start-up (nothing
secret is in the repo): a VAPID key pair, ping-token signing keys, and the demo tenant
with a random report key and webhook secret."""

from __future__ import annotations

import base64
import secrets
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushpipe import topology as t

DEMO_TENANT = "demo"
# Where a local shop page may subscribe from: `python -m http.server -d web 8000` serves
# web/index.html at this origin (the site key is bound to it).
LOCAL_SITE_ORIGINS = ("http://localhost:8000", "http://127.0.0.1:8000")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_tenant() -> dict[str, Any]:
    """A tenant's entry in the tenant secret: a random report key, webhook secret and
    public site key (bound to the local shop page's origins)."""
    return {
        "report_keys": [f"rk-{secrets.token_urlsafe(24)}"],
        "webhook_secret": f"wh-{secrets.token_urlsafe(24)}",
        "attribution_window_h": 24,
        "site": {"key": f"sk-{secrets.token_urlsafe(18)}", "origins": list(LOCAL_SITE_ORIGINS)},
    }


def vapid_secret() -> dict[str, str]:
    """A fresh P-256 key pair: the private key as PKCS#8 PEM, the public key as the
    base64url uncompressed point browsers subscribe with."""
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = _b64url(
        key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    )
    return {"private_key": pem, "public_key": public}


def signing_secret() -> dict[str, Any]:
    """Fresh HMAC keys for ping tokens and links: one active key."""
    return {"active": "k1", "keys": {"k1": _b64url(secrets.token_bytes(32))}}


def json_defaults() -> dict[str, dict[str, Any]]:
    """Values of ``json`` secrets for the local run: the tenant secret with the demo
    tenant, its keys fresh."""
    return {t.TENANT_SECRET.name: {"tenants": {DEMO_TENANT: new_tenant()}}}


def fresh_secret(secret: t.Secret) -> dict[str, Any]:
    """A freshly generated value for one secret of the topology, by its kind."""
    if secret.kind == "vapid":
        return vapid_secret()
    if secret.kind == "hmac":
        return signing_secret()
    return json_defaults().get(secret.name, {})
