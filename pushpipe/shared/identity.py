"""Who a signed-in caller is and what they may do in which tenant.

People sign in through an OIDC issuer (the stack's Cognito user pool, any OIDC issuer
given at deploy time, or the local cloud's issuer). API Gateway's JWT authorizer checks
the token's signature, issuer, audience and expiry before a function runs and hands the
function the token's claims (``requestContext.authorizer.jwt.claims``); the local HTTP
API does the same checks and hands over the same claims. What is left here is the part
API Gateway cannot know: the caller's roles, one per tenant.

A role is a group named ``<tenant>:<role>`` in the groups claim (Cognito:
``cognito:groups``; another issuer's claim name is a deploy parameter)::

    {"sub": "5f0c...", "email": "ann@shop.example",
     "cognito:groups": ["acme:requester", "acme:viewer", "other-shop:approver"]}

API Gateway passes array claims as one string, ``"[acme:requester acme:viewer]"``;
both forms are read. Any role in a tenant lets its holder read that tenant (viewer).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pushpipe.shared.tenants import Forbidden, NotAuthenticated

DEFAULT_GROUPS_CLAIM = "cognito:groups"


class Role(StrEnum):
    VIEWER = "viewer"  # reports, the dashboard, requests of the tenant
    REQUESTER = "requester"  # ad-hoc campaign requests
    APPROVER = "approver"  # decisions and test pushes
    OPERATOR = "operator"  # cancel, pause, imports, subscription key changes


ROLES = tuple(Role)


@dataclass(frozen=True)
class Principal:
    """A signed-in person: the issuer's subject (stable, never reused), their e-mail and
    their roles per tenant."""

    subject: str
    email: str
    grants: frozenset[tuple[str, Role]]
    issuer: str = ""

    def roles_in(self, tenant: str) -> frozenset[Role]:
        roles = frozenset(r for t, r in self.grants if t == tenant)
        return roles | {Role.VIEWER} if roles else roles

    def has(self, tenant: str, role: Role) -> bool:
        return role in self.roles_in(tenant)

    def require(self, tenant: str, role: Role) -> None:
        """Refuse (403) unless the caller holds ``role`` in ``tenant``. The message is the
        same whether the tenant exists or not: nothing about other tenants is revealed."""
        if not self.has(tenant, role):
            raise Forbidden(f"{self.label} is not a {role.value} of tenant {tenant!r}")

    @property
    def tenants(self) -> tuple[str, ...]:
        return tuple(sorted({t for t, _ in self.grants}))

    @property
    def label(self) -> str:
        return self.email or self.subject

    def same_person(self, subject: str | None, email: str | None) -> bool:
        """Whether a recorded identity (subject, e-mail) is this caller: the subject
        decides when both have one; else the e-mail, compared case-insensitively."""
        if subject and self.subject:
            return subject == self.subject
        return bool(email) and email.strip().lower() == self.email.lower()

    def as_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "email": self.email,
            "tenants": {t: sorted(r.value for r in self.roles_in(t)) for t in self.tenants},
        }


def parse_groups(value: Any) -> tuple[str, ...]:
    """A groups claim as the token has it (a JSON array), as API Gateway passes it
    (``"[a b]"``), as a JSON-encoded array string, or comma/space separated."""
    if value is None:
        return ()
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = str(value).strip()
    if text.startswith("[") and text.endswith("]"):
        try:
            parsed = json.loads(text)
        except ValueError:
            text = text[1:-1]
        else:
            if isinstance(parsed, list):
                return parse_groups(parsed)
            text = text[1:-1]
    return tuple(p for p in text.replace(",", " ").split() if p)


def grants_of(groups: tuple[str, ...]) -> frozenset[tuple[str, Role]]:
    """``<tenant>:<role>`` groups; groups of any other shape are not pushpipe's, ignored."""
    out = set()
    for group in groups:
        tenant, sep, role = group.rpartition(":")
        if sep and tenant and role in Role._value2member_map_:
            out.add((tenant, Role(role)))
    return frozenset(out)


def principal_from_claims(
    claims: Mapping[str, Any], groups_claim: str = DEFAULT_GROUPS_CLAIM
) -> Principal:
    subject = str(claims.get("sub") or "").strip()
    if not subject:
        raise NotAuthenticated("the token names no subject")
    email = str(claims.get("email") or claims.get("username") or "").strip()
    return Principal(
        subject=subject,
        email=email,
        grants=grants_of(parse_groups(claims.get(groups_claim))),
        issuer=str(claims.get("iss") or ""),
    )


def claims_of(event: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The JWT claims API Gateway's authorizer put into an HTTP API (v2) event."""
    ctx = event.get("requestContext") or {}
    jwt = (ctx.get("authorizer") or {}).get("jwt") or {}
    claims = jwt.get("claims")
    return claims if isinstance(claims, Mapping) and claims else None


def principal_of(event: Mapping[str, Any], groups_claim: str = DEFAULT_GROUPS_CLAIM) -> Principal:
    """The signed-in caller of a route behind the JWT authorizer. A route reached without
    claims is refused (401): only a misrouted request can get here without them."""
    claims = claims_of(event)
    if claims is None:
        raise NotAuthenticated("sign in first: this route needs 'Authorization: Bearer <token>'")
    return principal_from_claims(claims, groups_claim)
