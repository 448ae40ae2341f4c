"""VAPID (RFC 8292): the ``Authorization: vapid t=<JWT>, k=<key>`` check of a push request.

``verify_vapid`` checks one header: the ES256 signature of the JWT with key ``k``, and its
``aud``, ``exp`` and ``sub`` claims. ``VapidVerifier`` does the same with a cache of
verified tokens, as a push service does for senders that reuse one JWT for many pushes.
Failures raise ``VapidError`` carrying the status to answer (401 absent, 403 invalid).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from pushpipe_local.pushservice.crypto import b64url_decode

#: RFC 8292 section 2: ``exp`` no more than 24 hours after the request.
VAPID_MAX_AHEAD_S = 24 * 3600


class VapidError(Exception):
    """A VAPID failure with the status a push service answers (401 absent, 403 invalid)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VapidClaims:
    """The claims of a verified VAPID JWT, with the key ``k`` that signed it."""

    aud: str
    sub: str
    exp: float
    key: str  # the ``k`` parameter: base64url uncompressed P-256 point


def parse_vapid_authorization(authorization: str | None) -> tuple[str, str]:
    """Split ``vapid t=<JWT>, k=<key>`` into (token, key); VapidError(401) if unusable."""
    if not authorization:
        raise VapidError(401, "missing Authorization header: VAPID (RFC 8292) is required")
    scheme, _, params = authorization.strip().partition(" ")
    if scheme.lower() != "vapid":
        raise VapidError(
            401,
            f"unsupported Authorization scheme {scheme!r}: use RFC 8292 'vapid t=<JWT>, k=<key>'",
        )
    parts: dict[str, str] = {}
    for item in params.split(","):
        name, sep, value = item.strip().partition("=")
        if sep:
            parts[name.strip().lower()] = value.strip()
    token, key = parts.get("t"), parts.get("k")
    if not token or not key:
        raise VapidError(401, "VAPID Authorization lacks the t= (token) or k= (key) parameter")
    return token, key


def load_vapid_key(key: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key a base64url ``k`` (or applicationServerKey) encodes; 403 if not."""
    try:
        raw = b64url_decode(key)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError as exc:
        raise VapidError(403, f"VAPID k= is not a P-256 public key: {exc}") from exc


def _verify_signature(token: str, public_key: ec.EllipticCurvePublicKey) -> dict[str, Any]:
    """Check the ES256 JWS and return the claims (403 on any defect)."""
    pieces = token.split(".")
    if len(pieces) != 3:
        raise VapidError(403, "VAPID token is not a JWT (expected header.claims.signature)")
    try:
        header = json.loads(b64url_decode(pieces[0]))
        claims = json.loads(b64url_decode(pieces[1]))
        signature = b64url_decode(pieces[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise VapidError(403, f"VAPID JWT is malformed: {exc}") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256":
        alg = header.get("alg") if isinstance(header, dict) else None
        raise VapidError(403, f"VAPID JWT alg must be ES256, got {alg!r}")
    if not isinstance(claims, dict):
        raise VapidError(403, "VAPID JWT claims are not a JSON object")
    if len(signature) != 64:
        raise VapidError(403, "VAPID JWT signature must be 64 octets (raw r||s for ES256)")
    der = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    signing_input = f"{pieces[0]}.{pieces[1]}".encode("ascii")
    try:
        public_key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VapidError(403, "VAPID JWT signature does not verify with key k") from None
    return claims


def _check_sub(sub: Any) -> str:
    if not isinstance(sub, str) or not sub:
        raise VapidError(403, "VAPID JWT has no 'sub' claim (a mailto: or https: contact URI)")
    lowered = sub.lower()
    if lowered.startswith("mailto:"):
        if "@" not in sub[7:]:
            raise VapidError(403, f"VAPID 'sub' {sub!r} is not a mailto: address")
    elif lowered.startswith("https:"):
        if not urlsplit(sub).netloc:
            raise VapidError(403, f"VAPID 'sub' {sub!r} is not an https: URL")
    else:
        raise VapidError(403, f"VAPID 'sub' {sub!r} must be a mailto: or https: URI")
    return sub


def _check_exp(exp: float, now: float) -> None:
    if exp <= now:
        raise VapidError(403, f"VAPID JWT expired {int(now - exp)} s ago (exp={exp})")
    if exp > now + VAPID_MAX_AHEAD_S:
        raise VapidError(
            403,
            f"VAPID JWT exp is {int(exp - now)} s ahead; RFC 8292 allows at most 24 hours",
        )


def _check_aud(aud: str, audiences: Iterable[str]) -> None:
    allowed = tuple(audiences)
    if aud not in allowed:
        raise VapidError(
            403,
            f"VAPID 'aud' {aud!r} does not match the push resource origin "
            f"{' or '.join(repr(a) for a in allowed)}",
        )


def _claims_from_verified(claims: dict[str, Any], key: str) -> VapidClaims:
    aud = claims.get("aud")
    if not isinstance(aud, str) or not aud:
        raise VapidError(403, "VAPID JWT has no 'aud' claim (the push service origin)")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        raise VapidError(403, "VAPID JWT has no numeric 'exp' claim")
    return VapidClaims(aud=aud, sub=_check_sub(claims.get("sub")), exp=float(exp), key=key)


def verify_vapid(
    authorization: str | None,
    audiences: str | Iterable[str],
    now: float | None = None,
) -> VapidClaims:
    """Verify an RFC 8292 Authorization header for a push to one of ``audiences``.

    ``audiences`` is the origin (``scheme://host[:port]``) of the push resource, or several
    spellings of it. Raises VapidError(401) when VAPID is absent or unparseable and
    VapidError(403) when the token, its signature or one of its claims is invalid.
    """
    token, key = parse_vapid_authorization(authorization)
    claims = _claims_from_verified(_verify_signature(token, load_vapid_key(key)), key)
    _check_aud(claims.aud, (audiences,) if isinstance(audiences, str) else audiences)
    _check_exp(claims.exp, time.time() if now is None else now)
    return claims


class VapidVerifier:
    """``verify_vapid`` with a cache of verified tokens, kept until each token's ``exp``.

    Senders reuse one JWT for many pushes (that is the point of ``exp``), so after the
    first push a token costs a dict lookup instead of an ECDSA verification. The cache
    key is the (token, key) pair; ``aud`` and ``exp`` are re-checked on every call.
    """

    def __init__(self, max_entries: int = 50_000) -> None:
        self.max_entries = max_entries
        self._verified: dict[tuple[str, str], VapidClaims] = {}
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self.hits = 0
        self.misses = 0

    def verify(
        self,
        authorization: str | None,
        audiences: str | Iterable[str],
        now: float | None = None,
    ) -> VapidClaims:
        """``verify_vapid``, skipping the signature check of a token verified before."""
        now = time.time() if now is None else now
        auds = (audiences,) if isinstance(audiences, str) else audiences
        token, key = parse_vapid_authorization(authorization)
        claims = self._verified.get((token, key))
        if claims is None:
            self.misses += 1
            claims = _claims_from_verified(_verify_signature(token, self._public_key(key)), key)
            self._remember((token, key), claims, now)
        else:
            self.hits += 1
        _check_aud(claims.aud, auds)
        _check_exp(claims.exp, now)
        return claims

    def _public_key(self, key: str) -> ec.EllipticCurvePublicKey:
        public_key = self._keys.get(key)
        if public_key is None:
            public_key = load_vapid_key(key)
            if len(self._keys) >= self.max_entries:
                self._keys.clear()
            self._keys[key] = public_key
        return public_key

    def _remember(self, cache_key: tuple[str, str], claims: VapidClaims, now: float) -> None:
        if claims.exp <= now:
            return
        if len(self._verified) >= self.max_entries:
            self._verified = {k: c for k, c in self._verified.items() if c.exp > now}
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
        self._verified[cache_key] = claims

    def clear(self) -> None:
        """Forget every verified token and parsed key."""
        self._verified.clear()
        self._keys.clear()
