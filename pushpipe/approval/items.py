"""DynamoDB item plumbing shared by the requests table's stores: the codec, keys, times and
what a cancelled transaction says."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_ser = TypeSerializer()
_de = TypeDeserializer()


def to_item(d: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in d.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    out = {k: _de.deserialize(v) for k, v in item.items()}
    return {k: (int(v) if isinstance(v, Decimal) else v) for k, v in out.items()}


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def request_pk(request_id: str) -> str:
    return f"REQ#{request_id}"


def item_key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def cancellation_reasons(exc: ClientError) -> list[str]:
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", []) or []]


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


class Cancelled(Exception):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons

    def failed(self, index: int) -> bool:
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"
