"""Subscriptions: what one is (endpoint, keys, tenant, topics, language, country), how
its id is derived, and the validation of a subscribe request.

The storage around the queries is ``pushpipe.subscriptions.store``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pushpipe.push.endpoints import deployed_policy
from pushpipe.shared.errors import InvalidSubscription, PushpipeError

TOPIC_SHARDS = 4
ALL = "*"
MAX_TOPICS = 20
_TOPIC = re.compile(r"^[a-z0-9_.:-]{1,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class KeysChangeRefused(PushpipeError):
    """A known endpoint re-subscribed with other keys, without proof (HTTP 403)."""


def _unb64(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


class SubscriptionKeys(BaseModel):
    p256dh: Annotated[str, Field(min_length=80, max_length=100)]
    auth: Annotated[str, Field(min_length=16, max_length=32)]

    @field_validator("p256dh")
    @classmethod
    def _point(cls, v: str) -> str:
        try:
            raw = _unb64(v)
        except ValueError as exc:
            raise ValueError("p256dh is not base64url") from exc
        if len(raw) != 65 or raw[0] != 4:
            raise ValueError("p256dh must be an uncompressed P-256 point (65 bytes, 0x04...)")
        return v

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str) -> str:
        try:
            raw = _unb64(v)
        except ValueError as exc:
            raise ValueError("auth is not base64url") from exc
        if len(raw) != 16:
            raise ValueError("auth must be 16 bytes")
        return v


class Subscription(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    tenant: Annotated[str, Field(pattern=_TENANT.pattern)]
    # checked against the endpoint policy at intake (PushSubscriptionIn)
    endpoint: Annotated[str, Field(pattern=r"^https?://\S+$", max_length=2048)]
    keys: SubscriptionKeys
    topics: list[str] = Field(default_factory=list, max_length=MAX_TOPICS)
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")] = "en"
    country: Annotated[str | None, Field(pattern=r"^[A-Z]{2}$")] = None
    muted: bool = False
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("topics")
    @classmethod
    def _topics(cls, v: list[str]) -> list[str]:
        out = []
        for topic in v:
            if not _TOPIC.match(topic):
                raise ValueError(f"topic {topic!r} must match {_TOPIC.pattern}")
            if topic not in out:
                out.append(topic)
        return out

    def proven_by(self, secret: str | None) -> bool:
        """Whether ``secret`` is this subscription's auth secret (only its browser holds
        it): the proof an unsubscribe or a change of keys needs."""
        return bool(secret) and hmac.compare_digest(secret.encode(), self.keys.auth.encode())

    def as_recipient(self) -> dict[str, Any]:
        """This subscription as a recipient of an audience file (the documented format)."""
        entry: dict[str, Any] = {
            "id": self.id,
            "subscription": {
                "endpoint": self.endpoint,
                "keys": {"p256dh": self.keys.p256dh, "auth": self.keys.auth},
            },
            "language": self.language,
        }
        if self.country:
            entry["country"] = self.country
        return entry


def subscription_id(tenant: str, endpoint: str) -> str:
    """Stable per tenant and endpoint: subscribing again updates, never duplicates."""
    return hashlib.sha256(f"{tenant}\x1f{endpoint}".encode()).hexdigest()[:24]


def topic_shard(sub_id: str) -> int:
    return int(hashlib.sha256(sub_id.encode()).hexdigest()[:8], 16) % TOPIC_SHARDS


class SubscribeIn(BaseModel):
    """What subscribe.js posts: the browser's PushSubscription plus targeting."""

    model_config = ConfigDict(extra="forbid")

    # the tenant is the site key's; a tenant named here must be that one
    tenant: Annotated[str | None, Field(pattern=_TENANT.pattern)] = None
    subscription: PushSubscriptionIn
    topics: list[str] = Field(default_factory=list, max_length=MAX_TOPICS)
    language: str = "en"
    country: str | None = None


class PushSubscriptionIn(BaseModel):
    """``PushSubscription.toJSON()``."""

    model_config = ConfigDict(extra="ignore")

    endpoint: Annotated[str, Field(max_length=2048)]
    keys: SubscriptionKeys
    expirationTime: int | None = None  # the browser's name

    @field_validator("endpoint")
    @classmethod
    def _where_pushes_may_go(cls, value: str) -> str:
        refused = deployed_policy().refusal(value)
        if refused is not None:
            raise ValueError(refused)
        return value


SubscribeIn.model_rebuild()


def subscription_from_request(
    body: SubscribeIn, tenant: str, now: datetime | None = None
) -> Subscription:
    """Validate a subscribe request for ``tenant`` into a Subscription
    (InvalidSubscription if not)."""
    try:
        return Subscription(
            id=subscription_id(tenant, body.subscription.endpoint),
            tenant=tenant,
            endpoint=body.subscription.endpoint,
            keys=body.subscription.keys,
            topics=body.topics,
            language=body.language,
            country=body.country,
            created_at=now or datetime.now(UTC),
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidSubscription(f"{where}: {first['msg']}") from exc
