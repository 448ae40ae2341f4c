"""The local cloud's OIDC issuer: what Cognito's user pool is to the deployed stack.

It signs ID tokens with an RSA key generated at start-up and publishes the public key
at its JWKS endpoint, so the local HTTP API checks tokens as API Gateway's JWT
authorizer does (signature, issuer, audience, expiry) from the same discovery document.
Its endpoints have Cognito's paths:

- ``GET /.well-known/openid-configuration`` and ``GET /.well-known/jwks.json``
- ``GET|POST /oauth2/authorize``: the sign-in page of the authorization code flow with
  PKCE (S256 only), which the approval pages and the request form use
- ``POST /oauth2/token``: ``authorization_code`` (with the PKCE verifier) for the
  pages; ``password`` for the CLI and tests, which Cognito offers as
  ``InitiateAuth(USER_PASSWORD_AUTH)``

People are added with their ``<tenant>:<role>`` groups (``add_person``); passwords are
generated when not given. Nothing here is stored: a new cloud has new keys and people.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from pushpipe import topology as t

CODE_LIFETIME_S = 300
CLIENT_ID = "pushpipe-local"


class OAuthError(Exception):
    """An OAuth 2.0 error answer: ``error`` code, description, HTTP status."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error, self.description, self.status = error, description, status


@dataclass
class Person:
    email: str
    password: str
    groups: tuple[str, ...]
    subject: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class _Code:
    person: Person
    redirect_uri: str
    challenge: str
    nonce: str | None
    expires_at: float


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def pkce_challenge(verifier: str) -> str:
    return _b64url(hashlib.sha256(verifier.encode()).digest())


class LocalIssuer:
    """Keys, people, codes and tokens; ``url`` is set when its HTTP server starts."""

    def __init__(self, issuer: t.Issuer = t.PEOPLE, client_id: str = CLIENT_ID) -> None:
        self.spec = issuer
        self.client_id = client_id
        self.url = ""
        self.redirect_uris: set[str] = set()
        self.allowed_origins: set[str] = set()
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = _b64url(secrets.token_bytes(9))
        self._people: dict[str, Person] = {}
        self._codes: dict[str, _Code] = {}
        self._lock = threading.Lock()

    # -- configuration ------------------------------------------------------------------
    def add_person(
        self, email: str, groups: tuple[str, ...] | list[str], password: str | None = None
    ) -> Person:
        person = Person(email, password or secrets.token_urlsafe(12), tuple(groups))
        with self._lock:
            old = self._people.get(email.lower())
            if old is not None:
                person.subject = old.subject  # the same person keeps their subject
            self._people[email.lower()] = person
        return person

    def person(self, email: str) -> Person:
        return self._people[email.lower()]

    @property
    def people(self) -> dict[str, Person]:
        return dict(self._people)

    def allow_redirect(self, uri: str) -> None:
        """A redirect URI the client may use (the pages' callback on the HTTP API)."""
        self.redirect_uris.add(uri)
        parts = urlsplit(uri)
        self.allowed_origins.add(f"{parts.scheme}://{parts.netloc}")

    @property
    def authorize_url(self) -> str:
        return f"{self.url}/oauth2/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth2/token"

    def env(self) -> dict[str, str]:
        """The environment of functions that ``use`` the issuer."""
        return self.spec.env_values(
            self.url, self.client_id, self.authorize_url, self.token_url, self.spec.groups_claim
        )

    # -- documents ------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": self.authorize_url,
            "token_endpoint": self.token_url,
            "jwks_uri": f"{self.url}/.well-known/jwks.json",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "password"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(self.spec.scopes),
            "token_endpoint_auth_methods_supported": ["none"],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    # -- tokens ---------------------------------------------------------------------------
    def issue(
        self,
        person: Person,
        *,
        now: float | None = None,
        lifetime_s: int | None = None,
        audience: str | None = None,
        nonce: str | None = None,
        key: Any = None,
        issuer: str | None = None,
    ) -> dict[str, Any]:
        """An ID token (and an access token) for ``person``; the keyword arguments make
        the tokens a test needs: expired, for another audience, signed by another key."""
        now = time.time() if now is None else now
        lifetime = self.spec.token_lifetime_s if lifetime_s is None else lifetime_s
        claims = {
            "iss": issuer or self.url,
            "sub": person.subject,
            "aud": audience or self.client_id,
            "email": person.email,
            "email_verified": True,
            self.spec.groups_claim: list(person.groups),
            "token_use": "id",
            "auth_time": int(now),
            "iat": int(now),
            "exp": int(now + lifetime),
        }
        if nonce:
            claims["nonce"] = nonce
        signer = key or self._key
        id_token = jwt.encode(claims, signer, algorithm="RS256", headers={"kid": self.kid})
        access = {k: v for k, v in claims.items() if k not in ("aud", "email_verified", "nonce")}
        access.update(token_use="access", client_id=audience or self.client_id)
        access["scope"] = " ".join(self.spec.scopes)
        access_token = jwt.encode(access, signer, algorithm="RS256", headers={"kid": self.kid})
        return {
            "id_token": id_token,
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        }

    def sign_in(self, email: str, password: str) -> Person:
        person = self._people.get((email or "").strip().lower())
        if person is None or not secrets.compare_digest(person.password, password or ""):
            raise OAuthError("invalid_grant", "Incorrect username or password.", 400)
        return person

    # -- the authorization code flow ------------------------------------------------------
    def check_authorize(self, params: dict[str, str]) -> None:
        """What must hold before the sign-in page is shown (and again when it posts)."""
        if params.get("client_id") != self.client_id:
            raise OAuthError("invalid_client", "unknown client_id", 400)
        if params.get("redirect_uri") not in self.redirect_uris:
            raise OAuthError("invalid_request", "redirect_uri is not registered for the client")
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code")
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            raise OAuthError("invalid_request", "PKCE with code_challenge_method=S256 is required")

    def grant_code(self, params: dict[str, str], person: Person) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                person,
                params["redirect_uri"],
                params["code_challenge"],
                params.get("nonce"),
                time.time() + CODE_LIFETIME_S,
            )
        return code

    def token(self, form: dict[str, str]) -> dict[str, Any]:
        """The token endpoint's answer to one form post."""
        if form.get("client_id") != self.client_id:
            raise OAuthError("invalid_client", "unknown client_id", 401)
        grant = form.get("grant_type")
        if grant == "password":
            return self.issue(self.sign_in(form.get("username", ""), form.get("password", "")))
        if grant != "authorization_code":
            raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")
        with self._lock:
            code = self._codes.pop(form.get("code", ""), None)  # a code works once
        if code is None or code.expires_at < time.time():
            raise OAuthError("invalid_grant", "the code is unknown, used or expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorize request")
        verifier = form.get("code_verifier", "")
        if not verifier or not secrets.compare_digest(pkce_challenge(verifier), code.challenge):
            raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
        return self.issue(code.person, nonce=code.nonce)

    def sign_in_page(self, params: dict[str, str], error: str = "") -> str:
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k not in ("username", "password")
        )
        message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
        return (
            "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
            "<title>Sign in — pushpipe local</title>"
            "<style>body{font-family:system-ui;max-width:24rem;margin:4rem auto}"
            "label{display:block;margin:.8rem 0}.error{color:#b00}</style></head><body>"
            "<h1>Sign in</h1><p>The local cloud's issuer (Cognito in a deployed stack).</p>"
            f"{message}<form method='post' action='/oauth2/authorize'>{hidden}"
            "<label>E-mail <input name='username' type='email' autocomplete='username' "
            "required autofocus></label>"
            "<label>Password <input name='password' type='password' "
            "autocomplete='current-password' required></label>"
            "<button type='submit'>Sign in</button></form></body></html>"
        )

    def redirect_with_code(self, params: dict[str, str], person: Person) -> str:
        query = {"code": self.grant_code(params, person)}
        if params.get("state"):
            query["state"] = params["state"]
        sep = "&" if "?" in params["redirect_uri"] else "?"
        return f"{params['redirect_uri']}{sep}{urlencode(query)}"


def form_fields(raw: bytes | str) -> dict[str, str]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    return {k: v[0] for k, v in parse_qs(text, keep_blank_values=True).items()}
