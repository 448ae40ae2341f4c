"""Signed, expiring, single-use links for approvers.

A link token binds a request, an approver's address and one action to an expiry and a
random id (``jti``)::

    a1.<kid>.<base64url(claims json)>.<base64url(HMAC-SHA256)>

The MAC key is derived from the signing secret's key ``kid`` for this purpose only
(``HMAC(key, "pushpipe approval links v1")``), so a ping token and a link token can
never stand in for each other. Verification checks the signature first, then the
expiry; *single use* is enforced by the store: using a link writes a token-use item
``attribute_not_exists`` in the same transaction as the decision it carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

from pushpipe.approval.models import Action, LinkExpired, LinkInvalid
from pushpipe.shared.tokens import SigningKeys

VERSION = "a1"
_PURPOSE = b"pushpipe approval links v1"
MAX_TOKEN_CHARS = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _link_key(key: bytes) -> bytes:
    return hmac.new(key, _PURPOSE, hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class LinkClaims:
    request: str
    approver: str
    action: str
    exp: int  # unix seconds
    jti: str  # unique per link: the single-use key


def new_claims(request: str, approver: str, action: Action, exp: int) -> LinkClaims:
    return LinkClaims(request, approver, action.value, exp, secrets.token_urlsafe(12))


def sign_link(claims: LinkClaims, keys: SigningKeys) -> str:
    body = _b64(json.dumps(asdict(claims), separators=(",", ":")).encode())
    head = f"{VERSION}.{keys.active}.{body}"
    mac = hmac.new(_link_key(keys.keys[keys.active]), head.encode(), hashlib.sha256).digest()
    return f"{head}.{_b64(mac)}"


def verify_link(token: str | None, keys: SigningKeys, now: float | None = None) -> LinkClaims:
    """The claims of a genuine, unexpired link; ``LinkInvalid`` / ``LinkExpired`` if not.

    Does not consume the link: the store does that with the decision."""
    if not token:
        raise LinkInvalid("This link has no token. Open the link exactly as it is in the e-mail.")
    parts = token.split(".") if len(token) <= MAX_TOKEN_CHARS else []
    if len(parts) != 4 or parts[0] != VERSION:
        raise LinkInvalid("This link is malformed. Open the link exactly as it is in the e-mail.")
    _, kid, body, mac = parts
    key = keys.keys.get(kid)
    if key is None:
        raise LinkInvalid("This link was signed with a key that is no longer valid.")
    expected = hmac.new(_link_key(key), f"{VERSION}.{kid}.{body}".encode(), hashlib.sha256)
    try:
        given = _unb64(mac)
    except ValueError as exc:
        raise LinkInvalid("This link's signature is malformed.") from exc
    if not hmac.compare_digest(expected.digest(), given):
        raise LinkInvalid("This link's signature does not match: it was not issued by pushpipe.")
    try:
        claims = LinkClaims(**json.loads(_unb64(body)))
        Action(claims.action)
    except (ValueError, TypeError) as exc:
        raise LinkInvalid("This link's content is malformed.") from exc
    if claims.exp < (time.time() if now is None else now):
        raise LinkExpired(
            "This link has expired. Links in approval e-mails work for a limited time."
        )
    return claims
