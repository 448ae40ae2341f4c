"""VAPID (RFC 8292): one signed JWT per push-service origin, reused until near expiry.

Signing is an ECDSA P-256 operation; doing it per message (as ``pywebpush.webpush``
does) costs more than the HTTP request around it. A push service only checks that
``aud`` is its own origin and ``exp`` is at most 24 hours ahead, so one token per
origin serves every message to that origin for hours.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from py_vapid import Vapid02, VapidException
from py_vapid.utils import b64urlencode

from pushpipe.shared.errors import ConfigurationError

MAX_LIFETIME_S = 24 * 3600  # RFC 8292 section 2: exp no more than 24 hours ahead
DEFAULT_LIFETIME_S = 12 * 3600
DEFAULT_RENEW_BEFORE_S = 3600
_DEFAULT_PORTS = {"https": 443, "http": 80}
# What py_vapid accepts as ``sub``: a mailto: address, or an https: origin without path.
_SUBJECT = re.compile(
    r"^(mailto:[^@\s]+@(localhost|[\w%-]+(\.[\w%-]+)+)|https://(localhost|[\w-]+(\.[\w-]+)+))$",
    re.IGNORECASE,
)


def origin_of(endpoint: str) -> str:
    """``scheme://host[:port]`` of a push endpoint, default port omitted (RFC 6454).

    Raises ValueError for anything that is not an absolute http(s) URL.
    """
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid push endpoint {endpoint[:100]!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"invalid push endpoint {endpoint[:100]!r}: not an absolute http(s) URL")
    host = parts.hostname  # lower-cased, userinfo stripped
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _load_key(private_key: str | bytes | Vapid02) -> Vapid02:
    if isinstance(private_key, Vapid02):
        return private_key
    text = private_key.decode() if isinstance(private_key, bytes) else private_key
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            return Vapid02.from_pem(text.encode())
        return Vapid02.from_string(text)  # raw 32-byte key or DER, base64url
    except (ValueError, TypeError, VapidException) as exc:
        raise ConfigurationError(
            "VAPID private key is neither a PEM, a base64url DER nor a base64url raw "
            f"P-256 key: {exc}"
        ) from None


def public_key_b64(vapid: Vapid02) -> str:
    """The application server key (uncompressed P-256 point, base64url, no padding)."""
    raw = vapid.public_key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return b64urlencode(raw)


def generate_vapid_keypair() -> tuple[str, str]:
    """A fresh VAPID key pair: (private key PEM, public application server key b64url).

    The PEM goes to the secret store (or the local cloud's settings); the public key
    is what browsers pass to ``pushManager.subscribe({applicationServerKey})``.
    """
    vapid = Vapid02(ec.generate_private_key(ec.SECP256R1()))
    return vapid.private_pem().decode(), public_key_b64(vapid)


@dataclass(slots=True)
class _Token:
    authorization: str
    exp: int


class VapidSigner:
    """Signs VAPID JWTs, one per origin, cached until ``renew_before_s`` before ``exp``.

    ``private_key``: PEM, base64url DER or base64url raw 32-byte P-256 key (whatever
    ``py_vapid.Vapid02`` loads), or a ``Vapid02`` instance.
    ``subject``: ``mailto:ops@example.com`` or an ``https:`` URL (RFC 8292 ``sub``).
    ``clock``: seconds since the epoch; injectable for tests.
    """

    def __init__(
        self,
        private_key: str | bytes | Vapid02,
        subject: str,
        *,
        lifetime_s: int = DEFAULT_LIFETIME_S,
        renew_before_s: int = DEFAULT_RENEW_BEFORE_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _SUBJECT.match(subject or ""):
            raise ConfigurationError(
                f"VAPID subject must be a mailto: address or an https: origin, got {subject!r}"
            )
        if not 0 < lifetime_s <= MAX_LIFETIME_S:
            raise ConfigurationError(
                f"VAPID token lifetime must be within (0, {MAX_LIFETIME_S}] s, got {lifetime_s}"
            )
        if not 0 <= renew_before_s < lifetime_s:
            raise ConfigurationError(
                f"renew_before_s must be within [0, lifetime_s), got {renew_before_s}"
            )
        self._vapid = _load_key(private_key)
        self.subject = subject
        self.public_key = public_key_b64(self._vapid)
        self._lifetime_s = lifetime_s
        self._renew_before_s = renew_before_s
        self._clock = clock
        self._tokens: dict[str, _Token] = {}
        self.signatures = 0  # JWTs signed so far (each one an ECDSA signature)

    def authorization_for_origin(self, origin: str) -> str:
        """The ``Authorization`` header value for an origin, signing only when needed."""
        now = self._clock()
        token = self._tokens.get(origin)
        if token is None or token.exp - now < self._renew_before_s:
            token = self._sign(origin, now)
            self._tokens[origin] = token
        return token.authorization

    def headers_for(self, endpoint: str) -> dict[str, str]:
        """``{"Authorization": "vapid t=<jwt>, k=<public key>"}`` for the endpoint's origin."""
        return {"Authorization": self.authorization_for_origin(origin_of(endpoint))}

    def claims_for(self, origin: str) -> dict[str, str | int]:
        """The claims of the token currently cached for an origin (for logs and tests)."""
        token = self._tokens.get(origin)
        if token is None:
            raise KeyError(f"no VAPID token signed for {origin}")
        return {"aud": origin, "exp": token.exp, "sub": self.subject}

    def _sign(self, origin: str, now: float) -> _Token:
        exp = int(now) + self._lifetime_s
        claims = {"aud": origin, "exp": exp, "sub": self.subject}
        try:
            headers = self._vapid.sign(claims)
        except VapidException as exc:
            raise ValueError(f"cannot sign a VAPID token for {origin}: {exc}") from None
        self.signatures += 1
        # py_vapid writes "vapid t=<jwt>,k=<key>"; RFC 8292's own examples separate the
        # parameters with ", " and every push service reads both.
        return _Token(headers["Authorization"].replace(",k=", ", k=", 1), exp)
