"""Settings read once from the environment at cold start and validated.

The env var names come from ``pushpipe.topology`` so infra, the local cloud and the
functions agree on them. Every setting's default is declared once, on its model's field:
an unset (or empty) variable takes it; ``default_of`` lets other code name it.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError

from pushpipe import topology as t
from pushpipe.shared.errors import ConfigurationError

_M = TypeVar("_M", bound=BaseModel)


class SendSettings(BaseModel):
    audience_bucket: str = Field(min_length=1)
    audience_prefix: str = t.AUDIENCE_PREFIX
    runs_table: str = Field(min_length=1)
    sends_firehose: str = Field(min_length=1)
    send_function: str = Field(min_length=1)
    chains: int = Field(default=4, ge=1, le=256)
    batch_size: int = Field(default=500, ge=1, le=5000)
    min_remaining_ms: int = Field(default=60_000, ge=0)
    concurrency: int = Field(default=200, ge=1, le=2000)
    vapid_secret: str = Field(min_length=1)
    vapid_subject: str = Field(pattern=r"^(mailto:|https://)")
    signing_secret: str = Field(min_length=1)
    dry_run: bool = False
    allow_list: frozenset[str] = frozenset()
    ping_url: str = Field(pattern=r"^https?://")
    sweep_grace_ms: int = Field(default=60_000, ge=0)
    counters_table: str | None = None
    subscriptions_table: str | None = None


def default_of(model: type[BaseModel], name: str) -> Any:
    """The declared default of one setting (for config objects and CLIs that mirror it)."""
    return model.model_fields[name].get_default(call_default_factory=True)


def _load(model: type[_M], raw: dict[str, Any], function: str) -> _M:
    """Validate a function's settings once, with a message that names the function."""
    try:
        return model.model_validate({k: v for k, v in raw.items() if v is not None})
    except ValidationError as exc:
        raise ConfigurationError(f"{function} settings are invalid: {exc}") from exc


def _env(name: str) -> str | None:
    """The variable's value; unset or empty is None, so the model's default applies."""
    return os.environ.get(name) or None


@lru_cache(maxsize=1)
def send_settings() -> SendSettings:
    raw = {
        "audience_bucket": _env(t.ENV_AUDIENCE_BUCKET),
        "audience_prefix": _env(t.ENV_AUDIENCE_PREFIX),
        "runs_table": _env(t.ENV_RUNS_TABLE),
        "sends_firehose": _env(t.ENV_SENDS_FIREHOSE),
        "send_function": _env(t.ENV_SEND_FUNCTION),
        "chains": _env(t.ENV_CHAINS),
        "batch_size": _env(t.ENV_BATCH_SIZE),
        "min_remaining_ms": _env(t.ENV_MIN_REMAINING_MS),
        "concurrency": _env(t.ENV_CONCURRENCY),
        "vapid_secret": _env(t.ENV_VAPID_SECRET),
        "vapid_subject": _env(t.ENV_VAPID_SUBJECT),
        "signing_secret": _env(t.ENV_SIGNING_SECRET),
        "dry_run": (_env(t.ENV_DRY_RUN) or "").lower() in ("1", "true", "yes"),
        "ping_url": _env(t.ENV_PING_URL),
        "sweep_grace_ms": _env(t.ENV_SWEEP_GRACE_MS),
        "counters_table": _env(t.ENV_COUNTERS_TABLE),
        "subscriptions_table": _env(t.ENV_SUBSCRIPTIONS_TABLE),
        "allow_list": frozenset(
            x.strip() for x in (_env(t.ENV_ALLOW_LIST) or "").split(",") if x.strip()
        ),
    }
    return _load(SendSettings, raw, "send_batch")


# --- where pushes may go (send_batch, ping_handler, approval) ---------------------------
class PushEndpointSettings(BaseModel):
    push_hosts: tuple[str, ...] = ()  # push-service domains beyond the browsers' own
    push_origins_allowed: tuple[str, ...] = ()  # exact origins, as they are (local cloud)


def _list(name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in (_env(name) or "").split(",") if x.strip())


@lru_cache(maxsize=1)
def push_endpoint_settings() -> PushEndpointSettings:
    raw = {
        "push_hosts": _list(t.ENV_PUSH_HOSTS),
        "push_origins_allowed": _list(t.ENV_PUSH_ORIGINS_ALLOWED),
    }
    return _load(PushEndpointSettings, raw, "push endpoint")


# --- ping_handler (pings, orders, reports, subscriptions) and aggregate ----------------
class PingApiSettings(BaseModel):
    pings_stream: str = Field(min_length=1)
    signing_secret: str = Field(min_length=1)
    counters_table: str = Field(min_length=1)
    subscriptions_table: str = Field(min_length=1)
    tenant_secret: str = Field(min_length=1)
    max_ping_bytes: int = Field(default=16384, ge=1024, le=262144)


@lru_cache(maxsize=1)
def ping_api_settings() -> PingApiSettings:
    raw = {
        "pings_stream": _env(t.ENV_PINGS_STREAM),
        "signing_secret": _env(t.ENV_SIGNING_SECRET),
        "counters_table": _env(t.ENV_COUNTERS_TABLE),
        "subscriptions_table": _env(t.ENV_SUBSCRIPTIONS_TABLE),
        "tenant_secret": _env(t.ENV_TENANT_SECRET),
        "max_ping_bytes": _env(t.ENV_MAX_PING_BYTES),
    }
    return _load(PingApiSettings, raw, "ping_handler")


class AggregateSettings(BaseModel):
    counters_table: str = Field(min_length=1)
    shard_prefix: str = Field(default="k", pattern=r"^[a-z]{1,4}$")


@lru_cache(maxsize=1)
def aggregate_settings() -> AggregateSettings:
    raw = {
        "counters_table": _env(t.ENV_COUNTERS_TABLE),
        "shard_prefix": _env(t.ENV_COUNTER_SHARD_PREFIX),
    }
    return _load(AggregateSettings, raw, "aggregate")


# --- approval (ad-hoc requests) and scheduler ------------------------------------------
class ApprovalSettings(BaseModel):
    requests_table: str = Field(min_length=1)
    audience_bucket: str = Field(min_length=1)
    audience_prefix: str = t.AUDIENCE_PREFIX
    subscriptions_table: str = Field(min_length=1)
    signing_secret: str = Field(min_length=1)
    vapid_secret: str = Field(min_length=1)
    vapid_subject: str = Field(pattern=r"^(mailto:|https://)")
    tenant_secret: str = Field(min_length=1)
    mail_from: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    mail_configuration_set: str | None = None
    approver_emails: tuple[str, ...] = Field(min_length=1)
    approvals_required: int = Field(default=1, ge=1, le=10)
    request_ttl_hours: int = Field(default=72, ge=1, le=30 * 24)
    public_api_url: str = Field(pattern=r"^https?://")
    ping_url: str = Field(pattern=r"^https?://")
    function_name: str = Field(min_length=1)


@lru_cache(maxsize=1)
def approval_settings() -> ApprovalSettings:
    approvers = tuple(
        dict.fromkeys(
            x.strip().lower() for x in (_env(t.ENV_APPROVER_EMAILS) or "").split(",") if x.strip()
        )
    )
    raw = {
        "requests_table": _env(t.ENV_REQUESTS_TABLE),
        "audience_bucket": _env(t.ENV_AUDIENCE_BUCKET),
        "audience_prefix": _env(t.ENV_AUDIENCE_PREFIX),
        "subscriptions_table": _env(t.ENV_SUBSCRIPTIONS_TABLE),
        "signing_secret": _env(t.ENV_SIGNING_SECRET),
        "vapid_secret": _env(t.ENV_VAPID_SECRET),
        "vapid_subject": _env(t.ENV_VAPID_SUBJECT),
        "tenant_secret": _env(t.ENV_TENANT_SECRET),
        "mail_from": _env(t.ENV_MAIL_FROM),
        "mail_configuration_set": _env(t.ENV_MAIL_CONFIGURATION_SET),
        "approver_emails": approvers,
        "approvals_required": _env(t.ENV_APPROVALS_REQUIRED),
        "request_ttl_hours": _env(t.ENV_REQUEST_TTL_HOURS),
        "public_api_url": _env(t.ENV_PUBLIC_API_URL),
        "ping_url": _env(t.ENV_PING_URL),
        "function_name": _env(t.ENV_APPROVAL_FUNCTION),
    }
    return _load(ApprovalSettings, raw, "approval")


class SchedulerSettings(BaseModel):
    audience_bucket: str = Field(min_length=1)
    audience_prefix: str = t.AUDIENCE_PREFIX
    subscriptions_table: str = Field(min_length=1)
    counters_table: str = Field(min_length=1)
    tenant_secret: str = Field(min_length=1)
    # stale subscriptions (pushpipe/subscriptions/engagement.py)
    audit_workgroup: str | None = None
    audit_database: str | None = None
    stale_services: tuple[str, ...] = ("apple",)
    stale_silent_sends: int = Field(default=10, ge=1)
    stale_lookback_days: int = Field(default=30, ge=1, le=366)
    stale_grace_hours: int = Field(default=48, ge=0)


@lru_cache(maxsize=1)
def scheduler_settings() -> SchedulerSettings:
    raw = {
        "audience_bucket": _env(t.ENV_AUDIENCE_BUCKET),
        "audience_prefix": _env(t.ENV_AUDIENCE_PREFIX),
        "subscriptions_table": _env(t.ENV_SUBSCRIPTIONS_TABLE),
        "counters_table": _env(t.ENV_COUNTERS_TABLE),
        "tenant_secret": _env(t.ENV_TENANT_SECRET),
        "audit_workgroup": _env(t.ENV_AUDIT_WORKGROUP),
        "audit_database": _env(t.ENV_AUDIT_DATABASE),
        "stale_services": _list(t.ENV_STALE_SERVICES) or None,
        "stale_silent_sends": _env(t.ENV_STALE_SILENT_SENDS),
        "stale_lookback_days": _env(t.ENV_STALE_LOOKBACK_DAYS),
        "stale_grace_hours": _env(t.ENV_STALE_GRACE_HOURS),
    }
    return _load(SchedulerSettings, raw, "scheduler")
