"""scheduler: scheduled campaigns (``pushpipe/scheduled.py``), run by an hourly schedule.

Event ``{"action": "scheduled"}`` (optionally ``"now": ISO-8601`` to replay a day) →
writes each due (day, tenant, definition) audience under the audience prefix, once.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError

from pushpipe.audience.writer import AudienceWriter
from pushpipe.pings.counters import CounterStore
from pushpipe.scheduled.definitions import SchedulerPorts, check_definitions, run_scheduled
from pushpipe.shared.errors import StoreError
from pushpipe.shared.observability import logger, metrics, tracer
from pushpipe.shared.settings import scheduler_settings
from pushpipe.subscriptions.store import SubscriptionStore

SECRET_MAX_AGE_S = 300

check_definitions()  # a definition that breaks the audience format fails the cold start


@lru_cache(maxsize=1)
def ports() -> SchedulerPorts:
    s = scheduler_settings()
    s3 = boto3.client("s3")
    secrets = SecretsProvider()
    counters = CounterStore(s.counters_table)

    def tenants() -> list[str]:
        raw = secrets.get(s.tenant_secret, transform="json", max_age=SECRET_MAX_AGE_S) or {}
        return sorted((raw.get("tenants") or {}).keys())

    def marker_exists(key: str) -> bool:
        try:
            s3.head_object(Bucket=s.audience_bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            raise StoreError("HeadObject marker", code, str(exc)) from exc

    def put_marker(key: str, body: dict) -> None:
        s3.put_object(Bucket=s.audience_bucket, Key=key, Body=json.dumps(body).encode())

    return SchedulerPorts(
        subscriptions=SubscriptionStore(s.subscriptions_table),
        writer=AudienceWriter(s3),
        clicks=counters.clicks_between,
        tenants=tenants,
        marker_exists=marker_exists,
        put_marker=put_marker,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if event.get("action") != "scheduled":
        raise ValueError(f"scheduler got an event it does not know: keys {sorted(event)}")
    now = datetime.fromisoformat(event["now"]) if event.get("now") else datetime.now(UTC)
    s = scheduler_settings()
    result = run_scheduled(now, ports(), s.audience_bucket, s.audience_prefix)
    metrics.add_metric(name="ScheduledAudiencesWritten", unit="Count", value=len(result.written))
    return result.__dict__
