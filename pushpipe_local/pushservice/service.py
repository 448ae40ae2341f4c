"""Local push service: the receiving side of RFC 8030 that stands in for FCM / autopush.

A sender talks to it exactly as it talks to a browser vendor's push service:

    POST /wpush/v2/{id}   TTL, Urgency, Topic, Content-Encoding: aes128gcm,
                          Authorization: vapid t=<JWT>, k=<key>  ->  201 Created

It checks the request headers (RFC 8030 section 5), the VAPID token and its signature
(RFC 8292), decrypts the aes128gcm body (RFC 8291) with the subscriber's private key and
records the plaintext, so tests and the demo can check what each subscriber really got.
Faults (latency, 429 with Retry-After, 5xx, 404/410, 400/403/413, timeouts) are injected
per subscriber through ``/_admin/faults``.

The pure parts (``decrypt_push``, ``verify_vapid``, ``VapidVerifier``, ``FaultRule``) work
without HTTP; ``PushService.accept`` is the whole push decision without the transport.
``PushService`` runs in an event loop, ``PushServiceThread`` in a background thread (tests)
and ``python -m pushpipe_local.pushservice.service`` in a child process (demo, benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import http_ece
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

log = logging.getLogger("pushpipe_local.pushservice.service")

#: RFC 8030 section 7.2 / RFC 8291 section 4: push services must accept 4096 octets.
MAX_BODY_OCTETS = 4096
#: The longest TTL the service keeps (FCM's 28 days); larger values are reduced.
MAX_TTL_S = 28 * 24 * 3600
#: RFC 8292 section 2: ``exp`` no more than 24 hours after the request.
VAPID_MAX_AHEAD_S = 24 * 3600
URGENCIES = frozenset({"very-low", "low", "normal", "high"})
PUSH_PATH = "/wpush/v2/"
_TOPIC_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_TTL_RE = re.compile(r"[0-9]{1,10}")
_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")
_FAULT_STATUSES = frozenset({400, 403, 404, 410, 413, 429, 500, 502, 503})
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    410: "Gone",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


# --------------------------------------------------------------------------- base64url


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url, as Web Push keys and JWTs use it."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str | bytes) -> bytes:
    """Decode base64url with or without padding; raise ValueError on bad input."""
    raw = text.encode("ascii") if isinstance(text, str) else text
    raw = raw.strip().rstrip(b"=")
    try:
        return base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64url: {exc}") from exc


def _public_bytes(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )


# --------------------------------------------------------------------------- subscribers


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
        public = _public_bytes(private_key.public_key())
        if "p256dh" in record and b64url_decode(record["p256dh"]) != public:
            raise ValueError(f"subscriber {sub_id}: p256dh does not match the private key")
        return cls(sub_id, private_key, public, auth, record.get("application_server_key"))


def new_subscriber(application_server_key: str | None = None) -> Subscriber:
    """One subscriber with a fresh P-256 key pair and a random 16-octet auth secret."""
    private_key = ec.generate_private_key(ec.SECP256R1())
    return Subscriber(
        id=secrets.token_urlsafe(16),
        private_key=private_key,
        public_key=_public_bytes(private_key.public_key()),
        auth_secret=secrets.token_bytes(16),
        application_server_key=application_server_key,
    )


def generate_subscribers(n: int, application_server_key: str | None = None) -> list[Subscriber]:
    """``n`` subscribers as browsers would create them (real keys, about 20 us each)."""
    if n < 0:
        raise ValueError("subscriber count must be >= 0")
    return [new_subscriber(application_server_key) for _ in range(n)]


# --------------------------------------------------------------------------- decryption


class DecryptionError(ValueError):
    """The body could not be decrypted with the subscriber's keys (answered with 400)."""


def decrypt_push(body: bytes, private_key: ec.EllipticCurvePrivateKey, auth_secret: bytes) -> bytes:
    """Decrypt an RFC 8291 aes128gcm push message body as the receiving browser does."""
    try:
        return http_ece.decrypt(
            body, private_key=private_key, auth_secret=auth_secret, version="aes128gcm"
        )
    except http_ece.ECEException as exc:
        raise DecryptionError(f"aes128gcm decryption failed: {exc.message}") from exc
    except (ValueError, TypeError, IndexError) as exc:
        # e.g. the keyid in the header is not a P-256 point
        raise DecryptionError(f"aes128gcm decryption failed: {exc}") from exc


# --------------------------------------------------------------------------- VAPID


class VapidError(Exception):
    """A VAPID failure with the status a push service answers (401 absent, 403 invalid)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class VapidClaims:
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


def _load_vapid_key(key: str) -> ec.EllipticCurvePublicKey:
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
    claims = _claims_from_verified(_verify_signature(token, _load_vapid_key(key)), key)
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
        now = time.time() if now is None else now
        auds = (audiences,) if isinstance(audiences, str) else audiences
        token, key = parse_vapid_authorization(authorization)
        claims = self._verified.get((token, key))
        if claims is None:
            self.misses += 1
            public_key = self._keys.get(key)
            if public_key is None:
                public_key = _load_vapid_key(key)
                if len(self._keys) >= self.max_entries:
                    self._keys.clear()
                self._keys[key] = public_key
            claims = _claims_from_verified(_verify_signature(token, public_key), key)
            self._remember((token, key), claims, now)
        else:
            self.hits += 1
        _check_aud(claims.aud, auds)
        _check_exp(claims.exp, now)
        return claims

    def _remember(self, cache_key: tuple[str, str], claims: VapidClaims, now: float) -> None:
        if claims.exp <= now:
            return
        if len(self._verified) >= self.max_entries:
            self._verified = {k: c for k, c in self._verified.items() if c.exp > now}
            if len(self._verified) >= self.max_entries:
                self._verified.clear()
        self._verified[cache_key] = claims

    def clear(self) -> None:
        self._verified.clear()
        self._keys.clear()


# --------------------------------------------------------------------------- faults


def _fraction_point(sub_id: str, seed: str) -> float:
    digest = hashlib.sha256(f"{seed}:{sub_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(slots=True)
class FaultRule:
    """One injected fault: which subscribers it hits, what happens, and how often.

    Exactly one of ``status`` (answer with that status) or ``timeout`` (hold the request
    open that many seconds, then ``then``: "drop" closes the connection with nothing
    delivered, "deliver" processes the push normally, late). ``subscribers`` or
    ``fraction`` (a deterministic share of ids, by hash of seed and id) selects who is hit;
    neither means everyone. ``times`` limits it to the first N requests per subscriber,
    so a retry can succeed. A 404/410 marks the subscription gone: later pushes to it get
    the same status whatever ``times`` says.
    """

    status: int | None = None
    retry_after: int | None = None
    timeout: float | None = None
    then: str = "drop"
    subscribers: frozenset[str] | None = None
    fraction: float | None = None
    seed: str = ""
    times: int | None = None
    name: str = ""
    fired: int = 0
    _per_subscriber: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if (self.status is None) == (self.timeout is None):
            raise ValueError("a fault rule needs exactly one of 'status' or 'timeout'")
        if self.status is not None and self.status not in _FAULT_STATUSES:
            raise ValueError(
                f"fault status {self.status} not supported; use one of {sorted(_FAULT_STATUSES)}"
            )
        if self.timeout is not None and not 0 <= self.timeout <= 3600:
            raise ValueError("fault 'timeout' must be between 0 and 3600 seconds")
        if self.then not in ("drop", "deliver"):
            raise ValueError("fault 'then' must be 'drop' or 'deliver'")
        if self.retry_after is not None and self.retry_after < 0:
            raise ValueError("fault 'retry_after' must be >= 0 seconds")
        if self.status == 429 and self.retry_after is None:
            self.retry_after = 1
        if self.subscribers is not None and self.fraction is not None:
            raise ValueError("a fault rule matches 'subscribers' or 'fraction', not both")
        if self.fraction is not None and not 0.0 <= self.fraction <= 1.0:
            raise ValueError("fault 'fraction' must be between 0 and 1")
        if self.times is not None and self.times < 1:
            raise ValueError("fault 'times' must be >= 1 (or null for every request)")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        if not isinstance(data, Mapping):
            raise ValueError("a fault rule must be a JSON object")
        known = {
            "status",
            "retry_after",
            "timeout",
            "then",
            "subscribers",
            "fraction",
            "seed",
            "times",
            "name",
        }
        unknown = set(data) - known - {"fired"}
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {sorted(unknown)}")
        subs = data.get("subscribers")
        if subs is not None and (
            isinstance(subs, str) or not all(isinstance(s, str) for s in subs)
        ):
            raise ValueError("fault 'subscribers' must be a list of subscriber ids")
        try:
            return cls(
                status=None if data.get("status") is None else int(data["status"]),
                retry_after=None if data.get("retry_after") is None else int(data["retry_after"]),
                timeout=None if data.get("timeout") is None else float(data["timeout"]),
                then=str(data.get("then", "drop")),
                subscribers=None if subs is None else frozenset(subs),
                fraction=None if data.get("fraction") is None else float(data["fraction"]),
                seed=str(data.get("seed", "")),
                times=None if data.get("times") is None else int(data["times"]),
                name=str(data.get("name", "")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid fault rule {dict(data)!r}: {exc}") from exc

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "times": self.times, "fired": self.fired}
        if self.status is not None:
            out["status"] = self.status
            if self.retry_after is not None:
                out["retry_after"] = self.retry_after
        else:
            out["timeout"] = self.timeout
            out["then"] = self.then
        if self.subscribers is not None:
            out["subscribers"] = sorted(self.subscribers)
        if self.fraction is not None:
            out["fraction"] = self.fraction
            out["seed"] = self.seed
        return out

    def matches(self, sub_id: str) -> bool:
        if self.subscribers is not None:
            return sub_id in self.subscribers
        if self.fraction is not None:
            return _fraction_point(sub_id, self.seed) < self.fraction
        return True

    def take(self, sub_id: str) -> bool:
        """True (and counted) when this rule fires for this request of ``sub_id``."""
        if not self.matches(sub_id):
            return False
        if self.times is not None:
            used = self._per_subscriber.get(sub_id, 0)
            if used >= self.times:
                return False
            self._per_subscriber[sub_id] = used + 1
        self.fired += 1
        return True


@dataclass(slots=True)
class FaultConfig:
    latency_ms: float = 0.0
    rules: list[FaultRule] = field(default_factory=list)

    def pick(self, sub_id: str) -> FaultRule | None:
        for rule in self.rules:
            if rule.take(sub_id):
                return rule
        return None

    def to_json(self) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "rules": [r.to_json() for r in self.rules]}


def _coerce_rules(rules: Iterable[FaultRule | Mapping[str, Any]]) -> list[FaultRule]:
    if isinstance(rules, str | bytes | Mapping):
        raise ValueError("'rules' must be a list of fault rules")
    return [r if isinstance(r, FaultRule) else FaultRule.from_json(r) for r in rules]


# --------------------------------------------------------------------------- deliveries


def describe_payload(plaintext: bytes) -> tuple[Any, str, str | None]:
    """(payload, format, nid): parsed JSON if it is JSON, else text, else base64url."""
    if not plaintext:
        return None, "empty", None
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        return b64url_encode(plaintext), "base64url", None
    try:
        value = json.loads(text)
    except ValueError:
        return text, "text", None
    nid = value.get("nid") if isinstance(value, dict) else None
    return value, "json", None if nid is None else str(nid)


@dataclass(slots=True)
class Delivery:
    """One push accepted with 201 and decrypted."""

    seq: int
    subscriber: str
    received_at: float
    ttl: int
    urgency: str
    topic: str | None
    payload: Any
    payload_format: str
    nid: str | None
    size: int
    vapid_sub: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "message_id": str(self.seq),
            "subscriber": self.subscriber,
            "received_at": self.received_at,
            "ttl": self.ttl,
            "urgency": self.urgency,
            "topic": self.topic,
            "nid": self.nid,
            "payload": self.payload,
            "payload_format": self.payload_format,
            "size": self.size,
            "vapid_sub": self.vapid_sub,
        }


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What the push endpoint answers: status, reason text, extra headers."""

    status: int
    reason: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    delivery: Delivery | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None and not hasattr(headers, "getall"):  # plain dict: case-insensitive
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


# --------------------------------------------------------------------------- the service


class PushService:
    """The push service state and its aiohttp application.

    All methods must run on the service's event loop thread once it is started (the
    admin routes do; ``PushServiceThread`` marshals its calls). Before ``start`` they can
    be called from anywhere.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        public_url: str | None = None,
        state_file: str | os.PathLike[str] | None = None,
        max_records: int = 100_000,
        max_pending_per_subscriber: int = 100,
        require_vapid: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.public_url = public_url.rstrip("/") if public_url else None
        self.state_file = Path(state_file) if state_file else None
        self.max_records = max_records
        self.max_pending = max_pending_per_subscriber
        self.require_vapid = require_vapid
        self.vapid = VapidVerifier()
        self.faults = FaultConfig()
        self._subscribers: dict[str, Subscriber] = {}
        self._gone: dict[str, int] = {}
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self._url: str | None = None
        self._reset_counters()
        if self.state_file and self.state_file.exists():
            self._load_state()

    # ---- lifecycle

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("push service not started")
        return self.public_url or self._url

    def build_app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(PUSH_PATH + "{id}", self._handle_push)
        app.router.add_get("/m/{seq}", self._handle_get_message)
        app.router.add_delete("/m/{seq}", self._handle_delete_message)
        app.router.add_get("/_admin/health", self._admin_health)
        app.router.add_post("/_admin/subscriptions", self._admin_create_subscriptions)
        app.router.add_get("/_admin/subscriptions", self._admin_list_subscriptions)
        app.router.add_delete("/_admin/subscriptions/{id}", self._admin_unsubscribe)
        app.router.add_get("/_admin/subscriptions/{id}/pending", self._admin_pending)
        app.router.add_get("/_admin/faults", self._admin_get_faults)
        app.router.add_post("/_admin/faults", self._admin_set_faults)
        app.router.add_delete("/_admin/faults", self._admin_clear_faults)
        app.router.add_get("/_admin/stats", self._admin_stats)
        app.router.add_get("/_admin/received", self._admin_received)
        app.router.add_post("/_admin/reset", self._admin_reset)
        return app

    async def start(self) -> str:
        """Bind and serve; returns the base URL (``http://host:port``)."""
        if self._runner is not None:
            return self.url
        runner = web.AppRunner(self.build_app(), access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, backlog=1024)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        self._url = f"http://{host}:{bound_port}"
        self.port = bound_port
        log.info("push service listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # ---- subscribers

    def register(self, subscribers: Iterable[Subscriber | Mapping[str, Any]]) -> list[Subscriber]:
        """Add subscribers (objects or ``to_record`` dicts); persists the state file."""
        added = [s if isinstance(s, Subscriber) else Subscriber.from_record(s) for s in subscribers]
        for sub in added:
            self._subscribers[sub.id] = sub
            self._gone.pop(sub.id, None)
        self._save_state()
        return added

    def create_subscribers(
        self, count: int, application_server_key: str | None = None
    ) -> list[Subscriber]:
        return self.register(generate_subscribers(count, application_server_key))

    def subscriber(self, sub_id: str) -> Subscriber | None:
        return self._subscribers.get(sub_id)

    @property
    def subscribers(self) -> list[Subscriber]:
        return list(self._subscribers.values())

    def subscriptions(self, offset: int = 0, limit: int | None = None) -> list[dict[str, Any]]:
        """PushSubscription JSONs with endpoints on this service's base URL."""
        stop = None if limit is None else offset + limit
        base = self.public_url or self._url or f"http://{self.host}:{self.port}"
        return [s.subscription(base) for s in islice(self._subscribers.values(), offset, stop)]

    def unsubscribe(self, sub_id: str) -> bool:
        """The browser dropped the subscription: later pushes get 410 Gone."""
        if sub_id not in self._subscribers:
            return False
        self._gone[sub_id] = 410
        self._pending.pop(sub_id, None)
        return True

    # ---- faults

    def set_faults(
        self,
        latency_ms: float | None = None,
        rules: Iterable[FaultRule | Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Set the added latency and/or replace the fault rules (None keeps the current)."""
        new_rules = self.faults.rules if rules is None else _coerce_rules(rules)
        new_latency = self.faults.latency_ms
        if latency_ms is not None:
            new_latency = float(latency_ms)
            if not 0 <= new_latency <= 600_000:
                raise ValueError("latency_ms must be between 0 and 600000")
        self.faults = FaultConfig(latency_ms=new_latency, rules=new_rules)
        return self.faults.to_json()

    def clear_faults(self) -> dict[str, Any]:
        self.faults = FaultConfig()
        return self.faults.to_json()

    # ---- the push decision (no transport)

    def pick_fault(self, sub_id: str) -> FaultRule | None:
        """The fault rule that fires for this request, if any (known, live subscribers)."""
        if not self.faults.rules or sub_id not in self._subscribers or sub_id in self._gone:
            return None
        return self.faults.pick(sub_id)

    def accept(
        self,
        sub_id: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        audiences: Iterable[str],
        fault: FaultRule | None = None,
        now: float | None = None,
    ) -> PushOutcome:
        """Decide and record one push request exactly as the HTTP endpoint does."""
        now = time.time() if now is None else now
        outcome = self._decide(sub_id, headers, body, tuple(audiences), fault, now)
        self._count(outcome.status, now)
        return outcome

    def _decide(
        self,
        sub_id: str,
        headers: Mapping[str, str],
        body: bytes,
        audiences: tuple[str, ...],
        fault: FaultRule | None,
        now: float,
    ) -> PushOutcome:
        sub = self._subscribers.get(sub_id)
        if sub is None:
            return PushOutcome(404, f"no push subscription {sub_id!r} on this service")
        gone = self._gone.get(sub_id)
        if gone is not None:
            return PushOutcome(gone, f"push subscription {sub_id} has expired or was removed")
        if fault is not None and fault.status is not None:
            return self._fault_outcome(sub_id, fault)

        ttl_text = _header(headers, "TTL")
        if ttl_text is None:
            return PushOutcome(400, "missing TTL header (RFC 8030 section 5.2)")
        if not _TTL_RE.fullmatch(ttl_text.strip()):
            return PushOutcome(400, f"TTL must be a non-negative integer, got {ttl_text!r}")
        ttl = min(int(ttl_text), MAX_TTL_S)
        urgency = (_header(headers, "Urgency") or "normal").strip().lower()
        if urgency not in URGENCIES:
            return PushOutcome(
                400, f"Urgency {urgency!r} is not one of very-low, low, normal, high"
            )
        topic = _header(headers, "Topic")
        if topic is not None and not _TOPIC_RE.fullmatch(topic):
            return PushOutcome(
                400, f"Topic {topic!r} must be 1-32 characters of the base64url alphabet"
            )

        if len(body) > MAX_BODY_OCTETS:
            return PushOutcome(
                413, f"body of {len(body)} octets exceeds the {MAX_BODY_OCTETS}-octet limit"
            )

        vapid_sub: str | None = None
        authorization = _header(headers, "Authorization")
        if authorization is not None or self.require_vapid:
            try:
                claims = self.vapid.verify(authorization, audiences, now)
            except VapidError as exc:
                extra = {"WWW-Authenticate": "vapid"} if exc.status == 401 else {}
                return PushOutcome(exc.status, exc.reason, extra)
            if sub.application_server_key and claims.key != sub.application_server_key:
                return PushOutcome(
                    403,
                    "VAPID key k does not match the applicationServerKey this subscription "
                    "was created with",
                )
            vapid_sub = claims.sub

        if body:
            encoding = (_header(headers, "Content-Encoding") or "").strip().lower()
            if encoding != "aes128gcm":
                return PushOutcome(
                    400,
                    f"Content-Encoding {encoding or '(none)'!r} not supported: "
                    "payloads must be aes128gcm (RFC 8291)",
                )
            try:
                plaintext = decrypt_push(body, sub.private_key, sub.auth_secret)
            except DecryptionError as exc:
                return PushOutcome(400, f"{exc} for subscription {sub_id}")
        else:
            plaintext = b""

        # sub.id, not the request's copy: one string shared by every record of a subscriber
        delivery = self._record(sub.id, plaintext, len(body), ttl, urgency, topic, vapid_sub, now)
        return PushOutcome(201, "", {"TTL": str(ttl)}, delivery)

    def _fault_outcome(self, sub_id: str, rule: FaultRule) -> PushOutcome:
        status = rule.status or 500
        self._faults_injected[str(status)] += 1
        label = f" ({rule.name})" if rule.name else ""
        headers: dict[str, str] = {}
        if rule.retry_after is not None and status in (429, 503):
            headers["Retry-After"] = str(rule.retry_after)
        if status in (404, 410):
            self._gone[sub_id] = status
            self._pending.pop(sub_id, None)
            return PushOutcome(status, f"injected fault{label}: subscription {sub_id} is gone")
        return PushOutcome(status, f"injected fault{label}: {_REASONS[status]}", headers)

    def _record(
        self,
        sub_id: str,
        plaintext: bytes,
        size: int,
        ttl: int,
        urgency: str,
        topic: str | None,
        vapid_sub: str | None,
        now: float,
    ) -> Delivery:
        payload, fmt, nid = describe_payload(plaintext)
        self._seq += 1
        delivery = Delivery(
            self._seq, sub_id, now, ttl, urgency, topic, payload, fmt, nid, size, vapid_sub
        )
        records = self._records
        records.append(delivery)
        if len(records) > self.max_records * 1.25:
            drop = len(records) - self.max_records
            del records[:drop]
            self._record_base += drop

        self._receptions += 1
        if self._first_received_at is None:
            self._first_received_at = now
        self._last_received_at = now
        second = int(now)
        self._per_second[second] = self._per_second.get(second, 0) + 1

        identity = nid if nid is not None else hashlib.sha1(plaintext).hexdigest()
        pair = (sub_id, identity)
        seen = self._seen.get(pair, 0)
        self._seen[pair] = seen + 1
        if seen:
            self._duplicates += 1
            if seen == 1:
                self._duplicate_pairs += 1

        pending = self._pending.get(sub_id)
        if pending is None:
            pending = self._pending[sub_id] = {}
        key = f"t:{topic}" if topic else f"m:{delivery.seq}"
        if pending.pop(key, None) is not None:
            self._topic_replacements += 1
        pending[key] = delivery
        if len(pending) > self.max_pending:
            pending.pop(next(iter(pending)))
        return delivery

    def _count(self, status: int | str, now: float) -> None:
        self._requests += 1
        self._by_status[str(status)] += 1
        if self._first_request_at is None:
            self._first_request_at = now
        self._last_request_at = now

    # ---- inspection

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self._requests,
            "by_status": dict(self._by_status),
            "receptions": self._receptions,
            "distinct_notifications": len(self._seen),
            "duplicates": self._duplicates,
            "duplicate_pairs": self._duplicate_pairs,
            "first_request_at": self._first_request_at,
            "last_request_at": self._last_request_at,
            "first_received_at": self._first_received_at,
            "last_received_at": self._last_received_at,
            "received_per_second": [[s, c] for s, c in sorted(self._per_second.items())],
            "pending_messages": sum(len(p) for p in self._pending.values()),
            "topic_replacements": self._topic_replacements,
            "faults_injected": dict(self._faults_injected),
            "subscribers": len(self._subscribers),
            "gone": len(self._gone),
            "last_seq": self._seq,
            "vapid_cache": {"hits": self.vapid.hits, "misses": self.vapid.misses},
        }

    def received(
        self, after: int = 0, limit: int = 1000, subscriber: str | None = None
    ) -> dict[str, Any]:
        """Decrypted deliveries with ``seq > after`` in arrival order (a cursor)."""
        limit = max(1, min(int(limit), 10_000))
        start = max(0, int(after) - self._record_base)
        if subscriber is None:
            chosen = self._records[start : start + limit]
        else:
            chosen = list(
                islice((d for d in self._records[start:] if d.subscriber == subscriber), limit)
            )
        return {
            "records": [d.to_json() for d in chosen],
            "next": chosen[-1].seq if chosen else max(int(after), self._record_base),
            "last_seq": self._seq,
            "oldest_seq": self._record_base + 1,
        }

    def delivery(self, seq: int) -> Delivery | None:
        index = seq - self._record_base - 1
        if 0 <= index < len(self._records):
            return self._records[index]
        return None

    def pending(self, sub_id: str, drain: bool = False) -> list[dict[str, Any]]:
        """The subscription's undelivered view after Topic collapse (RFC 8030 section 5.4)."""
        view = self._pending.pop(sub_id, {}) if drain else self._pending.get(sub_id, {})
        return [d.to_json() for d in view.values()]

    def reset(self, subscribers: bool = False) -> None:
        """Forget deliveries, counters, faults and gone marks (and subscribers if asked).

        Sequence numbers keep growing, so a cursor held across a reset stays valid.
        """
        self._reset_counters()
        self._gone.clear()
        self.faults = FaultConfig()
        self.vapid.clear()
        if subscribers:
            self._subscribers.clear()
            self._save_state()

    def _reset_counters(self) -> None:
        self._records: list[Delivery] = []
        self._record_base = self._seq
        self._pending: dict[str, dict[str, Delivery]] = {}
        self._seen: dict[tuple[str, str], int] = {}
        self._by_status: Counter[str] = Counter()
        self._faults_injected: Counter[str] = Counter()
        self._per_second: dict[int, int] = {}
        self._requests = 0
        self._receptions = 0
        self._duplicates = 0
        self._duplicate_pairs = 0
        self._topic_replacements = 0
        self._first_request_at: float | None = None
        self._last_request_at: float | None = None
        self._first_received_at: float | None = None
        self._last_received_at: float | None = None

    # ---- state file

    def _load_state(self) -> None:
        assert self.state_file is not None
        try:
            data = json.loads(self.state_file.read_text())
            records = data["subscribers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"cannot read push service state {self.state_file}: {exc}") from exc
        for record in records:
            sub = Subscriber.from_record(record)
            self._subscribers[sub.id] = sub
        log.info("restored %d subscribers from %s", len(self._subscribers), self.state_file)

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        data = {"version": 1, "subscribers": [s.to_record() for s in self._subscribers.values()]}
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pushservice-", dir=self.state_file.parent)
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh)
        os.replace(tmp, self.state_file)

    # ---- HTTP: push endpoint

    async def _handle_push(self, request: web.Request) -> web.StreamResponse:
        sub_id = request.match_info["id"]
        fault = self.pick_fault(sub_id)
        if fault is not None and fault.timeout is not None:
            self._faults_injected["timeout"] += 1
            await asyncio.sleep(fault.timeout)
            if fault.then == "drop":
                self._count("dropped", time.time())
                if request.transport is not None:
                    request.transport.abort()
                # Nothing reaches the client: the connection is already gone.
                return web.Response(status=504, text="injected timeout fault\n")
            fault = None
        body = await request.read()
        origin = f"{request.scheme}://{request.host}"
        audiences = (origin,) if not self.public_url else (origin, self._origin_of_public())
        outcome = self.accept(sub_id, request.headers, body, audiences=audiences, fault=fault)
        latency = self.faults.latency_ms
        if latency > 0:
            await asyncio.sleep(latency / 1000.0)
        headers = dict(outcome.headers)
        if outcome.status == 201 and outcome.delivery is not None:
            headers["Location"] = f"{origin}/m/{outcome.delivery.seq}"
            return web.Response(status=201, headers=headers)
        return web.Response(status=outcome.status, text=outcome.reason + "\n", headers=headers)

    def _origin_of_public(self) -> str:
        parts = urlsplit(self.public_url or "")
        return f"{parts.scheme}://{parts.netloc}"

    async def _handle_get_message(self, request: web.Request) -> web.Response:
        delivery = self._delivery_from(request)
        return web.json_response(delivery.to_json())

    async def _handle_delete_message(self, request: web.Request) -> web.Response:
        delivery = self._delivery_from(request)
        view = self._pending.get(delivery.subscriber, {})
        for key, pending in list(view.items()):
            if pending.seq == delivery.seq:
                del view[key]
        return web.Response(status=204)

    def _delivery_from(self, request: web.Request) -> Delivery:
        try:
            seq = int(request.match_info["seq"])
        except ValueError:
            raise web.HTTPNotFound(text="no such message\n") from None
        delivery = self.delivery(seq)
        if delivery is None:
            raise web.HTTPNotFound(text=f"message {seq} is unknown or no longer kept\n")
        return delivery

    # ---- HTTP: admin

    async def _admin_health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "subscribers": len(self._subscribers)})

    async def _admin_create_subscriptions(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        count = body.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200_000:
            raise _bad_request("'count' must be an integer between 1 and 200000")
        key = body.get("application_server_key")
        if key is not None:
            try:
                _load_vapid_key(str(key))
            except VapidError as exc:
                raise _bad_request(f"application_server_key: {exc.reason}") from None
        created = self.create_subscribers(count, key)
        base = _request_base(request)
        return web.json_response(
            {"subscriptions": [s.subscription(base) for s in created]}, status=201
        )

    async def _admin_list_subscriptions(self, request: web.Request) -> web.Response:
        offset = _int_query(request, "offset", 0)
        limit = _int_query(request, "limit", 1000)
        base = _request_base(request)
        subs = islice(self._subscribers.values(), offset, offset + max(0, limit))
        return web.json_response(
            {
                "total": len(self._subscribers),
                "offset": offset,
                "subscriptions": [s.subscription(base) for s in subs],
            }
        )

    async def _admin_unsubscribe(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["id"]
        if not self.unsubscribe(sub_id):
            raise web.HTTPNotFound(text=f"no push subscription {sub_id!r}\n")
        return web.Response(status=204)

    async def _admin_pending(self, request: web.Request) -> web.Response:
        sub_id = request.match_info["id"]
        if sub_id not in self._subscribers:
            raise web.HTTPNotFound(text=f"no push subscription {sub_id!r}\n")
        drain = request.query.get("drain", "").lower() in ("1", "true", "yes")
        return web.json_response({"subscriber": sub_id, "messages": self.pending(sub_id, drain)})

    async def _admin_get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.faults.to_json())

    async def _admin_set_faults(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        unknown = set(body) - {"latency_ms", "rules"}
        if unknown:
            raise _bad_request(f"unknown field(s) {sorted(unknown)}; use latency_ms and rules")
        latency = body.get("latency_ms")
        if latency is not None and (
            isinstance(latency, bool) or not isinstance(latency, int | float)
        ):
            raise _bad_request("'latency_ms' must be a number")
        try:
            config = self.set_faults(latency_ms=latency, rules=body.get("rules"))
        except ValueError as exc:
            raise _bad_request(str(exc)) from None
        return web.json_response(config)

    async def _admin_clear_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.clear_faults())

    async def _admin_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _admin_received(self, request: web.Request) -> web.Response:
        after = _int_query(request, "after", 0)
        limit = _int_query(request, "limit", 1000)
        subscriber = request.query.get("subscriber")
        return web.json_response(self.received(after, limit, subscriber))

    async def _admin_reset(self, request: web.Request) -> web.Response:
        body = await _json_body(request) if request.can_read_body else {}
        drop_subscribers = body.get("subscribers", False)
        if not isinstance(drop_subscribers, bool):
            raise _bad_request("'subscribers' must be true or false")
        self.reset(subscribers=drop_subscribers)
        return web.json_response(self.stats())


def _bad_request(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=reason + "\n")


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError as exc:
        raise _bad_request(f"request body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise _bad_request("request body must be a JSON object")
    return body


def _int_query(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad_request(f"query parameter {name!r} must be an integer") from None
    if value < 0:
        raise _bad_request(f"query parameter {name!r} must be >= 0")
    return value


def _request_base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


# --------------------------------------------------------------------------- runners


class PushServiceThread:
    """A ``PushService`` on its own event loop in a daemon thread (for tests).

    ``start()`` returns the URL; the Python-side methods below run on the service's loop,
    so they are safe to call from the test thread while pushes are being received.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1", **service_kwargs: Any) -> None:
        self.service = PushService(host, port, **service_kwargs)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        return self.service.url

    def start(self, timeout: float = 10.0) -> str:
        if self._thread is not None:
            return self.url
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(ready, failure))
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="pushservice", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"push service did not start within {timeout} s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError(f"push service failed to start: {failure[0]!r}") from failure[0]
        return self.url

    async def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        self._stopped = asyncio.Event()
        try:
            await self.service.start()
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            return
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self.service.stop()

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on the service loop and return its result."""
        if self._loop is None or self._thread is None:
            return fn(*args, **kwargs)

        async def invoke() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result(30)

    def register(self, subscribers: Iterable[Subscriber | Mapping[str, Any]]) -> list[Subscriber]:
        return self.call(self.service.register, list(subscribers))

    def create_subscribers(
        self, count: int, application_server_key: str | None = None
    ) -> list[Subscriber]:
        return self.call(self.service.create_subscribers, count, application_server_key)

    def unsubscribe(self, sub_id: str) -> bool:
        return self.call(self.service.unsubscribe, sub_id)

    def set_faults(
        self,
        latency_ms: float | None = None,
        rules: Iterable[FaultRule | Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        return self.call(
            self.service.set_faults, latency_ms, None if rules is None else list(rules)
        )

    def clear_faults(self) -> dict[str, Any]:
        return self.call(self.service.clear_faults)

    def stats(self) -> dict[str, Any]:
        return self.call(self.service.stats)

    def received(
        self, after: int = 0, limit: int = 1000, subscriber: str | None = None
    ) -> dict[str, Any]:
        return self.call(self.service.received, after, limit, subscriber)

    def pending(self, sub_id: str, drain: bool = False) -> list[dict[str, Any]]:
        return self.call(self.service.pending, sub_id, drain)

    def reset(self, subscribers: bool = False) -> None:
        self.call(self.service.reset, subscribers)

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread, stopped = self._loop, self._thread, self._stopped
        if loop is None or thread is None or stopped is None:
            return
        loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None
        self._loop = None

    def __enter__(self) -> PushServiceThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PushServiceProcess:
    """A push service running as ``python -m pushpipe_local.pushservice.service``."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process = process
        self.url = url

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float = 10.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> PushServiceProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_pushservice_process(
    port: int = 0,
    state_file: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    subscribers: int = 0,
    latency_ms: float = 0.0,
    extra_args: Iterable[str] = (),
    python: str = sys.executable,
    timeout: float = 60.0,
) -> PushServiceProcess:
    """Start the service in a child process and wait for the URL it prints."""
    cmd = [python, "-m", "pushpipe_local.pushservice.service", "--host", host, "--port", str(port)]
    if state_file is not None:
        cmd += ["--state-file", os.fspath(state_file)]
    if subscribers:
        cmd += ["--subscribers", str(subscribers)]
    if latency_ms:
        cmd += ["--latency-ms", str(latency_ms)]
    cmd += list(extra_args)
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    url_holder: list[str] = []

    def read_url() -> None:
        assert process.stdout is not None
        url_holder.append(process.stdout.readline().strip())

    reader = threading.Thread(target=read_url, daemon=True)
    reader.start()
    reader.join(timeout)
    url = url_holder[0] if url_holder else ""
    if not url.startswith("http"):
        process.kill()
        process.wait()
        raise RuntimeError(
            f"push service process did not report its URL within {timeout} s "
            f"(exit code {process.returncode}); see its stderr above"
        )
    return PushServiceProcess(process, url)


# --------------------------------------------------------------------------- CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m pushpipe_local.pushservice.service",
        description="Local RFC 8030 push service (VAPID check, aes128gcm decryption, faults).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-file", help="JSON file that keeps subscriber keys across runs")
    parser.add_argument("--url-file", help="also write the base URL to this file")
    parser.add_argument("--public-url", help="base URL used in endpoints (default: bound URL)")
    parser.add_argument(
        "--subscribers", type=int, default=0, help="make sure at least this many subscribers exist"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added latency per push")
    parser.add_argument(
        "--max-records",
        type=int,
        default=100_000,
        help="deliveries kept for /_admin/received (about 2 KB each); older ones are dropped",
    )
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve_forever(args: argparse.Namespace) -> None:
    service = PushService(
        args.host,
        args.port,
        public_url=args.public_url,
        state_file=args.state_file,
        max_records=args.max_records,
    )
    missing = args.subscribers - len(service.subscribers)
    if missing > 0:
        service.create_subscribers(missing)
    if args.latency_ms:
        service.set_faults(latency_ms=args.latency_ms)
    url = await service.start()
    if args.url_file:
        Path(args.url_file).write_text(url + "\n")
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await service.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the push service until SIGINT/SIGTERM; the first stdout line is its URL."""
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    try:
        asyncio.run(_serve_forever(args))
    except (OSError, ValueError) as exc:
        print(f"pushservice: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
