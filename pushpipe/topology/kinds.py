"""The kinds of resource the topology declares (``pushpipe/topology/__init__.py``): plain,
frozen data that the CDK stack and the local cloud both read."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ENV_OIDC_ISSUER = "OIDC_ISSUER"
ENV_OIDC_CLIENT_ID = "OIDC_CLIENT_ID"
ENV_OIDC_AUTHORIZE_URL = "OIDC_AUTHORIZE_URL"
ENV_OIDC_TOKEN_URL = "OIDC_TOKEN_URL"
ENV_OIDC_GROUPS_CLAIM = "OIDC_GROUPS_CLAIM"

BillingKey = Literal["PAY_PER_REQUEST"]


@dataclass(frozen=True)
class Index:
    """A global secondary index (all attributes projected unless ``keys_only``)."""

    name: str
    pk: str
    sk: str | None = None
    keys_only: bool = False


@dataclass(frozen=True)
class Table:
    name: str
    env: str
    pk: str = "pk"
    sk: str | None = "sk"
    ttl_attribute: str | None = None
    stream: bool = False
    indexes: tuple[Index, ...] = ()


@dataclass(frozen=True)
class Bucket:
    name: str
    env: str
    expire_days: int | None = None


@dataclass(frozen=True)
class Queue:
    name: str
    env: str | None = None
    visibility_timeout_s: int = 960
    max_receive_count: int = 3
    dlq: bool = True


@dataclass(frozen=True)
class DeliveryStream:
    """Kinesis Data Firehose into the archive bucket under ``prefix``yyyy/MM/dd/HH/."""

    name: str
    env: str
    bucket: str
    prefix: str
    source_stream: str | None = None  # read from a Kinesis stream instead of direct puts


@dataclass(frozen=True)
class Stream:
    """A Kinesis data stream (on-demand in AWS; read by a KinesisTrigger)."""

    name: str
    env: str
    shards: int = 2


@dataclass(frozen=True)
class Secret:
    name: str
    env: str
    kind: Literal["vapid", "hmac", "json"]


@dataclass(frozen=True)
class Mail:
    """An SES sending identity (deploy parameter pushpipe:sesIdentity). A function that
    ``uses`` it may send mail from it; it finds the sender address in ``env`` and the
    configuration set in ``configuration_set_env``."""

    name: str
    env: str
    configuration_set_env: str


@dataclass(frozen=True)
class S3ToQueue:
    """S3 ObjectCreated under ``prefix`` of ``bucket`` is notified to ``queue``."""

    bucket: str
    prefix: str
    queue: str


@dataclass(frozen=True)
class SqsTrigger:
    queue: str
    batch_size: int = 1


@dataclass(frozen=True)
class KinesisTrigger:
    stream: str
    batch_size: int = 500
    max_batching_window_s: int = 1


@dataclass(frozen=True)
class QueryCatalog:
    """The archive's tables for SQL: a Glue database and an Athena workgroup in the stack
    (``infra/stacks/audit.py``), DuckDB locally. A function that ``uses`` it may run
    queries over the archive; it learns the workgroup and database from the two envs."""

    name: str
    env: str  # the Athena workgroup
    database_env: str  # the Glue database


@dataclass(frozen=True)
class Route:
    """An HTTP API route served by ``function`` (API Gateway HTTP API, payload v2)."""

    method: str
    path: str  # API Gateway syntax: /v1/tenants/{tenant}/report
    function: str
    # How a caller proves who it is here (API Gateway has no authorizer on the route; the
    # function checks it): the reason of the route's cdk-nag APIG4 acknowledgement.
    auth: str = ""
    # Per-route API Gateway throttle (requests/s, burst); None: the stage's default.
    rate_limit: int | None = None
    burst_limit: int | None = None
    # Behind the JWT authorizer of ``PEOPLE``: API Gateway (the local HTTP API locally)
    # refuses a missing, forged, expired or foreign token before the function runs; the
    # function then checks the caller's role in the tenant (``auth`` says which).
    signed_in: bool = False


@dataclass(frozen=True)
class Issuer:
    """Where people sign in (OIDC): by default a Cognito user pool the stack creates, or
    any OIDC issuer named by the deploy parameters; the local cloud runs its own. Routes
    with ``signed_in`` are guarded by the JWT authorizer ``authorizer`` built from it; a
    function that ``uses`` it learns the issuer, client, endpoints and groups claim."""

    name: str
    env: str = ENV_OIDC_ISSUER
    authorizer: str = "people"
    identity_source: str = "$request.header.Authorization"
    groups_claim: str = "cognito:groups"
    callback_path: str = "/v1/signin/callback"  # the pages' redirect URI on the HTTP API
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    token_lifetime_s: int = 3600

    def env_values(
        self, issuer: str, client_id: str, authorize_url: str, token_url: str, groups_claim: str
    ) -> dict[str, str]:
        """The environment of a function that ``uses`` this issuer."""
        return {
            ENV_OIDC_ISSUER: issuer,
            ENV_OIDC_CLIENT_ID: client_id,
            ENV_OIDC_AUTHORIZE_URL: authorize_url,
            ENV_OIDC_TOKEN_URL: token_url,
            ENV_OIDC_GROUPS_CLAIM: groups_claim,
        }


@dataclass(frozen=True)
class ScheduleTrigger:
    """An EventBridge rule ``rate``; the function receives ``payload`` as its event."""

    name: str
    rate_minutes: int
    payload: dict = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Function:
    name: str
    handler: str  # dotted path, identical in Lambda and locally: package.module.function
    env: str | None  # env var that carries this function's own name (for self-invoke)
    timeout_s: int
    memory_mb: int
    uses: tuple[str, ...]  # logical names of resources the function is granted
    invokes_self: bool = False
    triggers: tuple[SqsTrigger | KinesisTrigger | ScheduleTrigger, ...] = ()
    settings: dict = field(default_factory=dict, hash=False)
    reserved_concurrency: int | None = None
    async_retries: int = 2
    async_max_event_age_s: int = 6 * 3600
    # Buckets in ``uses`` the function also writes objects to (``uses`` alone grants read;
    # tables, streams, delivery streams and queues in ``uses`` are writable anyway).
    writes: tuple[str, ...] = ()
    # bucket -> the key prefixes its objects are granted under (IAM); absent: the whole bucket
    prefixes: dict = field(default_factory=dict, hash=False)
    # env var -> path on the HTTP API; the function gets ``<API base URL><path>``.
    api_paths: dict = field(default_factory=dict, hash=False)
    # Deployed through an alias with a CodeDeploy canary, rolled back on alarm.
    canary: bool = False
