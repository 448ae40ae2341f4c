"""Builds the scheduler's ports once per container (warm starts reuse them).
Tests call ``reset()`` to rebuild them against fresh mocks."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.audience.writer import AudienceWriter
from pushpipe.pings.counters import CounterStore
from pushpipe.scheduled.definitions import SchedulerPorts
from pushpipe.shared.errors import StoreError
from pushpipe.shared.secrets import SecretReader
from pushpipe.shared.settings import scheduler_settings
from pushpipe.subscriptions.store import SubscriptionStore


class MarkerObjects:
    """The once-per-(day, tenant, definition) markers, as small objects in S3."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self.client = client or boto3.client("s3")

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            if code in ("404", "NoSuchKey", "NotFound"):
                return False
            raise StoreError("HeadObject marker", code, str(exc)) from exc

    def put(self, key: str, body: dict) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(body).encode())


@lru_cache(maxsize=1)
def scheduler_ports() -> SchedulerPorts:
    s = scheduler_settings()
    s3 = boto3.client("s3")
    secrets = SecretReader()
    markers = MarkerObjects(s.audience_bucket, s3)

    def tenants() -> list[str]:
        return sorted((secrets.json(s.tenant_secret).get("tenants") or {}).keys())

    return SchedulerPorts(
        subscriptions=SubscriptionStore(s.subscriptions_table),
        writer=AudienceWriter(s3),
        clicks=CounterStore(s.counters_table).clicks_between,
        tenants=tenants,
        marker_exists=markers.exists,
        put_marker=markers.put,
    )


def reset() -> None:
    scheduler_ports.cache_clear()
    scheduler_settings.cache_clear()
