"""CloudFormation custom resource: give each secret its first real value at deploy time.

The secrets are created by CloudFormation with a throw-away placeholder
(``{"seeded": false, ...}``). On Create (and on Update, for a secret still holding the
placeholder) this handler writes the value the functions expect, so no key material is
ever in the repository, the template or the CDK output:

- ``vapid``: ``{"private_key": "<PEM>", "public_key": "<base64url application server key>"}``
  (a fresh P-256 key pair; the public key is what browsers pass to ``subscribe``).
- ``hmac``: ``{"active": "k1", "keys": {"k1": "<base64url 32 random bytes>"}}``
  (the format ``pushpipe.shared.tokens.SigningKeys.from_secret`` reads).
- ``json``: ``{}`` (filled by the operator), except the tenant directory (the resource
  passes ``Tenants``): ``{"tenants": {"<id>": {"report_keys": ["<key>"],
  "webhook_secret": "<secret>", "attribution_window_h": 24}}}`` (``pushpipe.shared.tenants``).

A secret that already holds a seeded value is never overwritten: replacing the VAPID
key would orphan every browser subscription. The one exception is additive: a tenant
named in ``Tenants`` but missing from the directory gets fresh keys; existing tenants
and their keys are left as they are. Delete does nothing (the secret is retained).

Runs in Lambda with the same bundle as the functions; no CDK import here.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.request
from typing import Any

import boto3

PLACEHOLDER_KEY = "seeded"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def initial_value(kind: str) -> dict[str, Any]:
    """A fresh secret value of ``kind``, checked against the reader's own parser."""
    if kind == "vapid":
        from pushpipe.push.vapid import VapidSigner, generate_vapid_keypair

        private_pem, public_key = generate_vapid_keypair()
        # The signer is what send_batch builds from this value: fail here, not at send.
        VapidSigner(private_pem, "mailto:seed@example.com")
        return {"private_key": private_pem, "public_key": public_key}
    if kind == "hmac":
        from pushpipe.shared.tokens import SigningKeys

        value = {"active": "k1", "keys": {"k1": _b64url(secrets.token_bytes(32))}}
        SigningKeys.from_secret(value)
        return value
    if kind == "json":
        return {}
    raise ValueError(f"unknown secret kind {kind!r} (expected vapid, hmac or json)")


def tenant_entry() -> dict[str, Any]:
    """Fresh credentials for one tenant, in the shape ``pushpipe.shared.tenants`` validates."""
    from pushpipe.shared.tenants import TenantConfig

    entry = {
        "report_keys": [secrets.token_urlsafe(32)],
        "webhook_secret": secrets.token_urlsafe(32),
        "attribution_window_h": 24,
        # public; no origin is allowed until the operator adds the shop's web origins
        "site": {"key": f"sk-{secrets.token_urlsafe(18)}", "origins": []},
    }
    TenantConfig.model_validate(entry)
    return entry


def add_tenants(value: dict[str, Any], tenants: list[str]) -> list[str]:
    """Add the missing ``tenants`` to a tenant directory in place; the ids added."""
    directory = value.setdefault("tenants", {})
    if not isinstance(directory, dict):
        raise ValueError("tenant secret is malformed: 'tenants' is not an object")
    added = [tenant for tenant in tenants if tenant not in directory]
    for tenant in added:
        directory[tenant] = tenant_entry()
    return added


def is_placeholder(secret_string: str | None) -> bool:
    """True while the secret still holds what CloudFormation generated at creation."""
    if not secret_string:
        return True
    try:
        value = json.loads(secret_string)
    except ValueError:
        return False
    return isinstance(value, dict) and value.get(PLACEHOLDER_KEY) is False


def seed(secret_id: str, kind: str, tenants: list[str] | None = None, client: Any = None) -> str:
    """Write the initial value into ``secret_id`` unless it already holds one.

    Returns ``seeded``, ``kept`` or ``added <n> tenants``.
    """
    client = client or boto3.client("secretsmanager")
    current = client.get_secret_value(SecretId=secret_id).get("SecretString")
    if is_placeholder(current):
        value = initial_value(kind)
        if tenants is not None:
            add_tenants(value, tenants)
        client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
        return "seeded"
    if tenants:
        value = json.loads(current)
        added = add_tenants(value, tenants)
        if added:
            client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(value))
            return f"added {len(added)} tenants"
    return "kept"


def public_data(secret_id: str, kind: str, client: Any = None) -> dict[str, str]:
    """What the stack may show about a secret: the VAPID public key, nothing else."""
    if kind != "vapid":
        return {}
    client = client or boto3.client("secretsmanager")
    try:
        value = json.loads(client.get_secret_value(SecretId=secret_id)["SecretString"])
    except ValueError:
        return {"PublicKey": ""}
    return {"PublicKey": str(value.get("public_key", "")) if isinstance(value, dict) else ""}


def _respond(event: dict, status: str, reason: str, data: dict | None = None) -> None:
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:3000],
            "PhysicalResourceId": event.get("PhysicalResourceId")
            or f"seed-{event['ResourceProperties']['SecretId']}",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data or {},
        }
    ).encode()
    request = urllib.request.Request(
        event["ResponseURL"],
        data=body,
        method="PUT",
        headers={"content-type": "", "content-length": str(len(body))},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        response.read()


def handler(event: dict, context: Any) -> None:
    props = event.get("ResourceProperties", {})
    try:
        if event["RequestType"] == "Delete":
            _respond(event, "SUCCESS", "nothing to do on delete")
            return
        client = boto3.client("secretsmanager")
        outcome = seed(props["SecretId"], props["Kind"], props.get("Tenants"), client=client)
        data = {"Outcome": outcome, **public_data(props["SecretId"], props["Kind"], client)}
        _respond(event, "SUCCESS", f"secret {outcome}", data)
    except Exception as exc:  # CloudFormation must always get an answer, or it waits 1 h
        _respond(event, "FAILED", f"{type(exc).__name__}: {exc}")
