"""Creating resources exactly as the topology declares them (local cloud and tests)."""

from __future__ import annotations

from typing import Any

from pushpipe import topology as t


def create_table(client: Any, table: t.Table, name: str) -> None:
    """A DynamoDB table with the topology's key schema, indexes, TTL and stream."""
    attrs = {table.pk: "S"}
    keys = [{"AttributeName": table.pk, "KeyType": "HASH"}]
    if table.sk:
        attrs[table.sk] = "S"
        keys.append({"AttributeName": table.sk, "KeyType": "RANGE"})
    gsis = []
    for ix in table.indexes:
        attrs.setdefault(ix.pk, "S")
        schema = [{"AttributeName": ix.pk, "KeyType": "HASH"}]
        if ix.sk:
            attrs.setdefault(ix.sk, "S")
            schema.append({"AttributeName": ix.sk, "KeyType": "RANGE"})
        gsis.append(
            {
                "IndexName": ix.name,
                "KeySchema": schema,
                "Projection": {"ProjectionType": "KEYS_ONLY" if ix.keys_only else "ALL"},
            }
        )
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": v} for k, v in attrs.items()
        ],
    }
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    if table.stream:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    client.create_table(**kwargs)
    if table.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )
