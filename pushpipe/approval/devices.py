"""Approvers' test devices: the push subscriptions an approver registered for test pushes,
kept in the requests table under ``APPROVER#<email>`` / ``DEVICE#<id>``."""

from __future__ import annotations

import hashlib
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.approval.items import error_code, from_item, iso_time, item_key, to_item
from pushpipe.shared.errors import StoreError


def device_id(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode()).hexdigest()[:20]


class DeviceStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self.client = client or boto3.client("dynamodb")

    def add(self, approver: str, subscription: dict[str, Any], at: float) -> str:
        dev = device_id(subscription["endpoint"])
        try:
            self.client.put_item(
                TableName=self.table,
                Item=to_item(
                    {
                        "pk": f"APPROVER#{approver}",
                        "sk": f"DEVICE#{dev}",
                        "endpoint": subscription["endpoint"],
                        "p256dh": subscription["keys"]["p256dh"],
                        "auth": subscription["keys"]["auth"],
                        "registered_at": iso_time(at),
                    }
                ),
            )
        except ClientError as exc:
            raise StoreError("PutItem device", error_code(exc), str(exc)) from exc
        return dev

    def of(self, approver: str) -> list[dict[str, Any]]:
        try:
            page = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :d)",
                ExpressionAttributeValues={
                    ":pk": {"S": f"APPROVER#{approver}"},
                    ":d": {"S": "DEVICE#"},
                },
            )
        except ClientError as exc:
            raise StoreError("Query devices", error_code(exc), str(exc)) from exc
        return [from_item(i) for i in page.get("Items", ())]

    def remove(self, approver: str, dev: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.table, Key=item_key(f"APPROVER#{approver}", f"DEVICE#{dev}")
            )
        except ClientError as exc:
            raise StoreError("DeleteItem device", error_code(exc), str(exc)) from exc
