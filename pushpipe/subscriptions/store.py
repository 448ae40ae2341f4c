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

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.shared.errors import StoreError
from pushpipe.subscriptions.models import (
    ALL,
    TOPIC_SHARDS,
    KeysChangeRefused,
    Subscription,
    SubscriptionKeys,
    topic_shard,
)


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

    def put(
        self, sub: Subscription, proof: str | None = None, operator: bool = False
    ) -> Subscription:
        """Create or replace; topic copies follow in the same transaction.

        A known endpoint's keys change only with ``proof`` (the auth secret of the stored
        subscription, which only its browser holds) or by an ``operator``: otherwise
        anyone who learned an endpoint could take over its pushes and lock the owner out
        of their own unsubscribe (``KeysChangeRefused``).
        """
        old_item = self._primary(sub.tenant, sub.id)
        old = _from_item(old_item) if old_item else None
        if old is not None and old.keys != sub.keys and not operator and not old.proven_by(proof):
            raise KeysChangeRefused(
                "this endpoint is subscribed with other keys: changing them needs the "
                "current subscription's auth secret in X-Pushpipe-Auth"
            )
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
