"""Simulated browsers' push subscriptions: their keys, their JSON forms and the state file.

A ``Subscriber`` holds what only the browser knows (the P-256 private key and the auth
secret) next to what it hands to the application (``subscription``). ``read_subscribers``
and ``write_subscribers`` keep them across runs of the service.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from pushpipe_local.pushservice.crypto import b64url_decode, b64url_encode, public_key_bytes
from pushpipe_local.pushservice.protocol import PUSH_PATH

_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A simulated browser's push subscription, with the keys only the browser holds."""

    id: str
    private_key: ec.EllipticCurvePrivateKey
    public_key: bytes  # 65-octet uncompressed P-256 point
    auth_secret: bytes  # 16 octets
    #: When set, the subscription is restricted (RFC 8292 section 3.2): pushes must be
    #: signed with this VAPID public key (base64url, uncompressed point).
    application_server_key: str | None = None

    @property
    def p256dh(self) -> str:
        return b64url_encode(self.public_key)

    @property
    def auth(self) -> str:
        return b64url_encode(self.auth_secret)

    def subscription(self, base_url: str) -> dict[str, Any]:
        """The PushSubscription JSON a browser hands to the application."""
        return {
            "id": self.id,
            "endpoint": f"{base_url.rstrip('/')}{PUSH_PATH}{self.id}",
            "keys": {"p256dh": self.p256dh, "auth": self.auth},
        }

    def to_record(self) -> dict[str, Any]:
        """JSON form including the private key (state file, tests)."""
        d = self.private_key.private_numbers().private_value.to_bytes(32, "big")
        record: dict[str, Any] = {
            "id": self.id,
            "private_key": b64url_encode(d),
            "p256dh": self.p256dh,
            "auth": self.auth,
        }
        if self.application_server_key:
            record["application_server_key"] = self.application_server_key
        return record

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Subscriber:
        """Inverse of ``to_record``; checks that the key pair and secret are consistent."""
        try:
            sub_id = str(record["id"])
            d = int.from_bytes(b64url_decode(record["private_key"]), "big")
            auth = b64url_decode(record["auth"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid subscriber record: {exc!r}") from exc
        if not _ID_RE.fullmatch(sub_id):
            raise ValueError(f"invalid subscriber id {sub_id!r}: use 1-128 base64url characters")
        if len(auth) != 16:
            raise ValueError(f"subscriber {sub_id}: auth secret must be 16 octets")
        private_key = ec.derive_private_key(d, ec.SECP256R1())
        public = public_key_bytes(private_key.public_key())
        if "p256dh" in record and b64url_decode(record["p256dh"]) != public:
            raise ValueError(f"subscriber {sub_id}: p256dh does not match the private key")
        return cls(sub_id, private_key, public, auth, record.get("application_server_key"))


def new_subscriber(application_server_key: str | None = None) -> Subscriber:
    """One subscriber with a fresh P-256 key pair and a random 16-octet auth secret."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    return Subscriber(
        id=secrets.token_urlsafe(16),
        private_key=private_key,
        public_key=public_key_bytes(private_key.public_key()),
        auth_secret=secrets.token_bytes(16),
        application_server_key=application_server_key,
    )


def generate_subscribers(n: int, application_server_key: str | None = None) -> list[Subscriber]:
    """``n`` subscribers as browsers would create them (real keys, about 20 us each)."""
    if n < 0:
        raise ValueError("subscriber count must be >= 0")
    return [new_subscriber(application_server_key) for _ in range(n)]


def read_subscribers(path: Path) -> list[Subscriber]:
    """The subscribers kept in a state file; ValueError if it is unreadable."""
    try:
        data = json.loads(path.read_text())
        records = data["subscribers"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"cannot read push service state {path}: {exc}") from exc
    return [Subscriber.from_record(record) for record in records]


def write_subscribers(path: Path, subscribers: Iterable[Subscriber]) -> None:
    """Replace the state file atomically with these subscribers (private keys included)."""
    data = {"version": 1, "subscribers": [s.to_record() for s in subscribers]}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".pushservice-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)
