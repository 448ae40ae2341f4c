"""Builds the scheduler's ports once per container (warm starts reuse them).
Tests call ``reset()`` to rebuild them against fresh mocks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe import topology as t
from pushpipe.audience.writer import AudienceWriter
from pushpipe.pings.counters import CounterStore
from pushpipe.scheduled.definitions import SchedulerPorts
from pushpipe.shared.athena import AthenaQueries
from pushpipe.shared.errors import ConfigurationError, StoreError
from pushpipe.shared.secrets import SecretReader
from pushpipe.shared.settings import scheduler_settings
from pushpipe.subscriptions.engagement import ArchiveQueries, StalePolicy
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


class ReportObjects:
    """Report objects (stale subscriptions), written whole to one bucket."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        self.bucket = bucket
        self.client = client or boto3.client("s3")

    def put(self, key: str, body: bytes) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType="application/x-ndjson"
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            raise StoreError("PutObject report", code, str(exc)) from exc


@dataclass(frozen=True)
class StaleJob:
    policy: StalePolicy
    queries: ArchiveQueries
    subscriptions: SubscriptionStore
    reports: ReportObjects


@lru_cache(maxsize=1)
def stale_job() -> StaleJob:
    s = scheduler_settings()
    if not (s.audit_workgroup and s.audit_database):
        raise ConfigurationError(
            "scheduler settings are invalid: the stale-subscriptions job needs "
            f"{t.ENV_AUDIT_WORKGROUP} and {t.ENV_AUDIT_DATABASE} (the function uses 'audit')"
        )
    return StaleJob(
        policy=StalePolicy(
            services=s.stale_services,
            silent_sends=s.stale_silent_sends,
            lookback_days=s.stale_lookback_days,
            grace_hours=s.stale_grace_hours,
        ),
        queries=AthenaQueries(s.audit_workgroup, s.audit_database),
        subscriptions=SubscriptionStore(s.subscriptions_table),
        reports=ReportObjects(s.audience_bucket),
    )


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
    stale_job.cache_clear()
    scheduler_settings.cache_clear()
