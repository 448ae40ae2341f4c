"""Subscriptions, stored around the queries that read them.

Items in the subscriptions table::

    S#<tenant>#<id>                 S       the subscription (source of truth)
    T#<tenant>#<topic>#<shard>      <id>    one copy per topic, plus topic "*" (everyone)

Reading every subscriber of a topic is a sequential Query of one partition family
(``TOPIC_SHARDS`` partitions, so a huge topic is not one hot partition and chains can
read shards in parallel). Each copy carries the subscription's topic list, so a segment
over several topics drops duplicates without remembering ids: a subscriber found under
topic *i* is skipped if it also follows a topic queried before *i*. Muted subscriptions
are skipped; country and language narrow the selection.

The primary item and its topic copies change in one transaction, so an unsubscribe (or a
pruned endpoint) disappears from every topic at once.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import boto3
from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pushpipe.shared.errors import InvalidSubscription, StoreError

TOPIC_SHARDS = 4
ALL = "*"
MAX_TOPICS = 20
_TOPIC = re.compile(r"^[a-z0-9_.:-]{1,64}$")
_TENANT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


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
    endpoint: Annotated[str, Field(pattern=r"^https://\S+$", max_length=2048)]
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


def _primary_key(tenant: str, sub_id: str) -> dict:
    return {"pk": {"S": f"S#{tenant}#{sub_id}"}, "sk": {"S": "S"}}


def _topic_key(tenant: str, topic: str, sub_id: str) -> dict:
    return {"pk": {"S": f"T#{tenant}#{topic}#{topic_shard(sub_id)}"}, "sk": {"S": sub_id}}


def _to_item(sub: Subscription) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": {"S": sub.id},
        "tenant": {"S": sub.tenant},
        "endpoint": {"S": sub.endpoint},
        "p256dh": {"S": sub.keys.p256dh},
        "auth": {"S": sub.keys.auth},
        "language": {"S": sub.language},
        "muted": {"BOOL": sub.muted},
        "created_at": {"S": sub.created_at.isoformat()},
    }
    if sub.topics:
        item["topics"] = {"L": [{"S": t} for t in sub.topics]}
    if sub.country:
        item["country"] = {"S": sub.country}
    return item


def _from_item(item: dict[str, Any]) -> Subscription:
    return Subscription(
        id=item["id"]["S"],
        tenant=item["tenant"]["S"],
        endpoint=item["endpoint"]["S"],
        keys=SubscriptionKeys(p256dh=item["p256dh"]["S"], auth=item["auth"]["S"]),
        topics=[t["S"] for t in item.get("topics", {}).get("L", [])],
        language=item["language"]["S"],
        country=item.get("country", {}).get("S"),
        muted=item["muted"]["BOOL"],
        created_at=datetime.fromisoformat(item["created_at"]["S"]),
    )


class SubscriptionStore:
    def __init__(self, table_name: str, client=None) -> None:
        self.table = table_name
        self.client = client or boto3.client("dynamodb")

    def _call(self, operation: str, fn, **kwargs):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            err = exc.response["Error"]
            reasons = [r.get("Code") for r in exc.response.get("CancellationReasons", []) or []]
            msg = f"{err['Message']} (reasons: {reasons})" if reasons else err["Message"]
            raise StoreError(f"{operation} subscriptions", err["Code"], msg) from exc

    def _primary(self, tenant: str, sub_id: str) -> dict | None:
        out = self._call(
            "GetItem",
            self.client.get_item,
            TableName=self.table,
            Key=_primary_key(tenant, sub_id),
            ConsistentRead=True,
        )
        return out.get("Item")

    def get(self, tenant: str, sub_id: str) -> Subscription | None:
        item = self._primary(tenant, sub_id)
        return _from_item(item) if item else None

    def put(self, sub: Subscription) -> Subscription:
        """Create or replace; topic copies follow in the same transaction."""
        old_item = self._primary(sub.tenant, sub.id)
        old = _from_item(old_item) if old_item else None
        if old is not None:
            sub = sub.model_copy(update={"created_at": old.created_at})
        version = int(old_item["version"]["N"]) if old_item and "version" in old_item else 0
        item = {**_to_item(sub), "version": {"N": str(version + 1)}}
        ops: list[dict] = [
            {"Put": {"TableName": self.table, "Item": {**_primary_key(sub.tenant, sub.id), **item}}}
        ]
        if old is None:
            ops[0]["Put"]["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            # Fails if someone changed it since we read it (optimistic lock): retry the call.
            ops[0]["Put"]["ConditionExpression"] = "version = :v"
            ops[0]["Put"]["ExpressionAttributeValues"] = {":v": {"N": str(version)}}
        new_topics = [ALL, *sub.topics]
        for topic in new_topics:
            ops.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**_topic_key(sub.tenant, topic, sub.id), **item},
                    }
                }
            )
        for topic in old.topics if old else []:
            if topic not in new_topics:
                ops.append(
                    {
                        "Delete": {
                            "TableName": self.table,
                            "Key": _topic_key(sub.tenant, topic, sub.id),
                        }
                    }
                )
        self._call("TransactWriteItems", self.client.transact_write_items, TransactItems=ops)
        return sub

    def delete(self, tenant: str, sub_id: str) -> bool:
        """Remove the subscription and every topic copy. False if it did not exist."""
        old = self.get(tenant, sub_id)
        if old is None:
            return False
        ops = [{"Delete": {"TableName": self.table, "Key": _primary_key(tenant, sub_id)}}]
        for topic in [ALL, *old.topics]:
            ops.append(
                {"Delete": {"TableName": self.table, "Key": _topic_key(tenant, topic, sub_id)}}
            )
        self._call("TransactWriteItems", self.client.transact_write_items, TransactItems=ops)
        return True

    def delete_many(self, tenant: str, sub_ids: Iterable[str]) -> int:
        """Prune (the send path's 404/410 feedback). Returns how many existed."""
        return sum(1 for sub_id in sub_ids if self.delete(tenant, sub_id))

    def segment(
        self,
        tenant: str,
        topics: Iterable[str] | None = None,
        countries: Iterable[str] | None = None,
        languages: Iterable[str] | None = None,
        shard: int | None = None,
    ) -> Iterator[Subscription]:
        """Every unmuted subscriber of ``topics`` (all of the tenant's if None), each once,
        narrowed to ``countries``/``languages``. ``shard`` reads one of the
        ``TOPIC_SHARDS`` partitions only (for parallel readers)."""
        wanted = list(dict.fromkeys(topics)) if topics else [ALL]
        country_set = set(countries) if countries else None
        language_set = set(languages) if languages else None
        shards = range(TOPIC_SHARDS) if shard is None else [shard]
        for i, topic in enumerate(wanted):
            earlier = set(wanted[:i])
            for s in shards:
                for item in self._query_partition(f"T#{tenant}#{topic}#{s}"):
                    if item["muted"]["BOOL"]:
                        continue
                    item_topics = {t["S"] for t in item.get("topics", {}).get("L", [])}
                    if earlier & item_topics:
                        continue  # already yielded under an earlier topic
                    if (
                        country_set is not None
                        and item.get("country", {}).get("S") not in country_set
                    ):
                        continue
                    if language_set is not None and not _language_matches(
                        item["language"]["S"], language_set
                    ):
                        continue
                    yield _from_item(item)

    def _query_partition(self, pk: str) -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": pk}},
        }
        while True:
            page = self._call("Query", self.client.query, **kwargs)
            yield from page.get("Items", ())
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _language_matches(language: str, wanted: set[str]) -> bool:
    """``de-AT`` matches a request for ``de`` or ``de-AT``."""
    return language in wanted or language.split("-", 1)[0] in wanted


class SubscribeIn(BaseModel):
    """What subscribe.js posts: the browser's PushSubscription plus targeting."""

    model_config = ConfigDict(extra="forbid")

    tenant: Annotated[str, Field(pattern=_TENANT.pattern)]
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


SubscribeIn.model_rebuild()


def subscription_from_request(body: SubscribeIn, now: datetime | None = None) -> Subscription:
    """Validate a subscribe request into a Subscription (InvalidSubscription if not)."""
    from pydantic import ValidationError

    try:
        return Subscription(
            id=subscription_id(body.tenant, body.subscription.endpoint),
            tenant=body.tenant,
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
