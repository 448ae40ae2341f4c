"""Signed ping tokens.

Every push carries a token that binds tenant, campaign, variant, notification id and
subscriber id to an expiry, signed with HMAC-SHA256. The ping handler verifies it
before anything is stored or counted, so a ping cannot be forged, moved to another
tenant or campaign, or replayed after it expires.

Format: ``v1.<kid>.<base64url(claims json)>.<base64url(hmac)>``. ``kid`` names the
signing key so keys can be rotated: the verifier keeps the previous keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass

from pushpipe.shared.errors import PushpipeError

VERSION = "v1"
DEFAULT_TTL_S = 30 * 24 * 3600  # pings may come days after the push (TTL up to 28 days)


class TokenInvalid(PushpipeError):
    """Malformed or forged (HTTP 401)."""


class TokenExpired(PushpipeError):
    """Well signed but past its expiry (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class PingClaims:
    tenant: str
    campaign: str
    variant: str
    notification: str
    subscriber: str
    exp: int  # unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class SigningKeys:
    """The active key id and every key still accepted (active + previous)."""

    active: str
    keys: dict[str, bytes]

    @classmethod
    def from_secret(cls, secret: dict) -> SigningKeys:
        """``{"active": "k1", "keys": {"k1": "<base64url>", ...}}`` as stored in Secrets Manager."""
        try:
            keys = {kid: _unb64(value) for kid, value in secret["keys"].items()}
            active = secret["active"]
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise PushpipeError(f"signing secret is malformed: {exc!r}") from exc
        if active not in keys or any(len(k) < 32 for k in keys.values()):
            raise PushpipeError("signing secret needs an active key of at least 32 bytes")
        return cls(active=active, keys=keys)


def sign(claims: PingClaims, keys: SigningKeys) -> str:
    # UTF-8, not \u escapes: a subscriber id of 128 emoji costs 512 bytes, not 1,536
    body = _b64(json.dumps(asdict(claims), separators=(",", ":"), ensure_ascii=False).encode())
    head = f"{VERSION}.{keys.active}.{body}"
    mac = hmac.new(keys.keys[keys.active], head.encode(), hashlib.sha256).digest()
    return f"{head}.{_b64(mac)}"


def verify(token: str, keys: SigningKeys, now: float | None = None) -> PingClaims:
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 4 or parts[0] != VERSION:
        raise TokenInvalid("ping token is malformed")
    _, kid, body, mac = parts
    key = keys.keys.get(kid)
    if key is None:
        raise TokenInvalid("ping token is signed with an unknown key")
    expected = hmac.new(key, f"{VERSION}.{kid}.{body}".encode(), hashlib.sha256).digest()
    try:
        given = _unb64(mac)
    except ValueError as exc:
        raise TokenInvalid("ping token signature is malformed") from exc
    if not hmac.compare_digest(expected, given):
        raise TokenInvalid("ping token signature does not match")
    try:
        claims = PingClaims(**json.loads(_unb64(body)))
    except (ValueError, TypeError) as exc:
        raise TokenInvalid("ping token claims are malformed") from exc
    if claims.exp < (time.time() if now is None else now):
        raise TokenExpired("ping token has expired")
    return claims


def notification_id(campaign: str, subscriber: str) -> str:
    """Deterministic per campaign and subscriber: a resend after a crash reuses it, so
    pings of the duplicate collapse onto the same notification."""
    return hashlib.sha256(f"{campaign}\x1f{subscriber}".encode()).hexdigest()[:24]
