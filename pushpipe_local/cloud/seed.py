"""What a fresh local cloud is seeded with besides generated keys: the demo tenant, with a
random report key and webhook secret (nothing secret is in the repo)."""

from __future__ import annotations

import secrets

DEMO_TENANT = "demo"


def default_tenants_secret(tenant: str = DEMO_TENANT) -> dict:
    """A tenant secret value for a fresh local cloud: one tenant with a random report key
    and webhook secret (the local cloud writes it to the tenants secret)."""
    return {
        "tenants": {
            tenant: {
                "report_keys": [f"rk-{secrets.token_urlsafe(24)}"],
                "webhook_secret": f"wh-{secrets.token_urlsafe(24)}",
                "attribution_window_h": 24,
            }
        }
    }
