"""A fixed-window rate limit kept in DynamoDB (one conditional UpdateItem per call).

Each (scope, window) is one item ``RL#<scope>`` / ``<window start>`` in the counters
table, expiring by TTL. A call that would go over the limit writes nothing and raises
``RateLimited`` with the seconds until the window ends (the API's ``Retry-After``).
Every container and every concurrent invocation shares the count, which an in-memory
limiter could not.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import boto3
from botocore.exceptions import ClientError

from pushpipe.shared.errors import PushpipeError, StoreError


class RateLimited(PushpipeError):
    """Over the limit of this window (HTTP 429)."""

    def __init__(self, scope: str, limit: int, retry_after_s: int) -> None:
        super().__init__(f"more than {limit} requests this minute for {scope}; retry later")
        self.retry_after_s = retry_after_s


class WindowLimiter:
    def __init__(self, table: str, client=None, clock: Callable[[], float] = time.time) -> None:
        self.table = table
        self.client = client or boto3.client("dynamodb")
        self.clock = clock

    def take(self, scope: str, limit: int, window_s: int = 60) -> int:
        """Count one call in ``scope``'s current window; the count so far. Raises
        ``RateLimited`` when the window already holds ``limit`` calls."""
        now = self.clock()
        start = int(now // window_s * window_s)
        try:
            out = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": f"RL#{scope}"}, "sk": {"S": str(start)}},
                UpdateExpression="ADD n :one SET expires_at = if_not_exists(expires_at, :exp)",
                ConditionExpression="attribute_not_exists(n) OR n < :limit",
                ExpressionAttributeValues={
                    ":one": {"N": "1"},
                    ":limit": {"N": str(limit)},
                    ":exp": {"N": str(start + 2 * window_s + 3600)},
                },
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as exc:
            err = exc.response["Error"]
            if err["Code"] == "ConditionalCheckFailedException":
                raise RateLimited(scope, limit, max(1, int(start + window_s - now))) from exc
            raise StoreError("UpdateItem rate limit", err["Code"], err["Message"]) from exc
        return int(out["Attributes"]["n"]["N"])
