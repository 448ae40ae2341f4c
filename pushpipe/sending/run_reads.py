"""The runs table, read side: keys, the item codec, a run's view, stalled chains.

``RunStore`` (``run_store``) adds the writes: claim, start, commit, abort.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pushpipe.sending.runs import (
    ADMITTING,
    COUNT_FIELDS,
    RUNNING,
    ChainState,
    Cursor,
    RunView,
)
from pushpipe.shared.errors import StoreError

_ser = TypeSerializer()
_des = TypeDeserializer()


def item_of(d: Mapping[str, Any]) -> dict:
    return {k: _ser.serialize(v) for k, v in d.items() if v is not None}


def plain_of(item: Mapping[str, Any]) -> dict:
    out = {k: _des.deserialize(v) for k, v in item.items()}
    return {k: int(v) if isinstance(v, Decimal) and v == int(v) else v for k, v in out.items()}


def assignments(fields: Mapping[str, Any], tag: str = "f") -> tuple[str, dict, dict]:
    """``#f0 = :f0, ...`` with every attribute name aliased (DynamoDB reserves hundreds of
    words, ``total``, ``position`` and ``key`` among them)."""
    parts, names, values = [], {}, {}
    for i, (name, value) in enumerate(fields.items()):
        names[f"#{tag}{i}"] = name
        values[f":{tag}{i}"] = value
        parts.append(f"#{tag}{i} = :{tag}{i}")
    return ", ".join(parts), names, values


def _rejections(text: str | None) -> dict[str, int]:
    try:
        return {str(k): int(v) for k, v in json.loads(text or "{}").items()}
    except (ValueError, TypeError, AttributeError):
        return {}


class RunTable:
    """DynamoDB access to runs and chain cursors (table keys ``pk``/``sk``)."""

    def __init__(self, table: str, client: Any = None, clock=time.time) -> None:
        self.table = table
        self.client = client or boto3.client("dynamodb")
        self.clock = clock

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _run_key(run_id: str, sk: str = "HEADER") -> dict:
        return {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": sk}}

    @staticmethod
    def _chain_sk(chain: int) -> str:
        return f"CHAIN#{chain:04d}"

    def _call(self, op: str, **kwargs):
        try:
            return getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(op, err.get("Code", "?"), err.get("Message", str(exc))) from exc

    def _conditional(self, op: str, **kwargs) -> dict | None:
        """A conditional write: its response, or None when the condition did not hold."""
        try:
            return self._call(op, **kwargs)
        except StoreError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return None
            raise

    # -- runs ------------------------------------------------------------------------
    def run_header(self, run_id: str) -> dict | None:
        got = self._call(
            "get_item", TableName=self.table, Key=self._run_key(run_id), ConsistentRead=True
        )
        return plain_of(got["Item"]) if "Item" in got else None

    def origin_throttles(self, run_id: str) -> dict[str, float]:
        """Push-service origins a chain of the run found throttling, and until when."""
        got = self._call(
            "get_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            ProjectionExpression="throttles",
        )
        raw = plain_of(got["Item"]).get("throttles") if "Item" in got else None
        return {str(k): float(v) for k, v in (raw or {}).items()}

    @staticmethod
    def _chain_state(item: Mapping[str, Any]) -> ChainState:
        return ChainState(
            chain=int(item["chain"]),
            position=int(item["position"]),
            epoch=int(item["epoch"]),
            state=item["state"],
            assigned=int(item.get("assigned", 0)),
            counts={k: int(item.get(k, 0)) for k in COUNT_FIELDS},
            lease_until=int(item.get("lease_until", 0)),
            carry=json.loads(item["carry"]) if item.get("carry") else [],
        )

    def stale_admissions(self, older_than_ms: int, index: str = "active") -> list[str]:
        """Runs still admitting ``older_than_ms`` after their admission lease lapsed: the
        admitting invocation died and its event was retried and given up."""
        before = int(self.clock() * 1000) - older_than_ms
        out: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "active = :a",
            "FilterExpression": "sk = :h AND #s = :adm AND lease_until < :before",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": item_of(
                {":a": "1", ":h": "HEADER", ":adm": ADMITTING, ":before": before}
            ),
        }
        while True:
            page = self._call("query", **kwargs)
            out += [plain_of(i)["run_id"] for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def stalled_chains(self, grace_ms: int, index: str = "active") -> list[Cursor]:
        """Running chains whose lease lapsed more than ``grace_ms`` ago: their invocation
        died, or the hand-off to the next one was lost."""
        now = int(self.clock() * 1000) - grace_ms
        out: list[Cursor] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "active = :a",
            "ExpressionAttributeValues": {":a": {"S": "1"}},
        }
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = plain_of(raw)
                full = self._call(
                    "get_item",
                    TableName=self.table,
                    Key={"pk": raw["pk"], "sk": raw["sk"]},
                    ConsistentRead=True,
                )
                if "Item" not in full:
                    continue
                item = plain_of(full["Item"])
                if item["sk"] == "HEADER":
                    continue  # an admission: ``stale_admissions``
                if item.get("state") == RUNNING and int(item.get("lease_until", 0)) < now:
                    out.append(
                        Cursor(
                            item["run_id"],
                            item.get("campaign", ""),
                            item["bucket"],
                            item["key"],
                            item["etag"],
                            int(item["chain"]),
                            int(item["chains"]),
                            int(item["position"]),
                        )
                    )
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- views -----------------------------------------------------------------------
    def view(self, run_id: str) -> RunView | None:
        items: list[dict] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}},
            "ConsistentRead": True,
        }
        while True:
            page = self._call("query", **kwargs)
            items.extend(plain_of(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        head = next((i for i in items if i["sk"] == "HEADER"), None)
        if head is None:
            return None
        return RunView(
            run_id=run_id,
            campaign=head.get("campaign", ""),
            tenant=head.get("tenant", ""),
            bucket=head["bucket"],
            key=head["key"],
            etag=head["etag"],
            state=head["state"],
            reason=head.get("reason"),
            chains=int(head.get("chains", 0)),
            total=int(head.get("total", 0)),
            malformed=int(head.get("malformed", 0)),
            created_at=int(head.get("created_at", 0)),
            header=head.get("header"),
            rejections=_rejections(head.get("rejections")),
            chain_states=[self._chain_state(i) for i in items if i["sk"].startswith("CHAIN#")],
        )

    def runs_of_campaign(self, campaign: str) -> list[RunView]:
        page = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CAMPAIGN#{campaign}"}},
        )
        ids = [plain_of(i)["run_id"] for i in page.get("Items", [])]
        views = [v for v in (self.view(i) for i in ids) if v is not None]
        return sorted(views, key=lambda v: v.created_at)
