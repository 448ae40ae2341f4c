"""One declaration of the system: functions, triggers, tables, buckets, queues, streams,
routes and settings.

Both the CDK stack (``infra/stacks``) and the embedded local cloud (``pushpipe_local``)
read this module, so what runs on a laptop is what deploys. Adding a function or a
route is one change here.

Every resource has a *logical* name (used as the CDK construct id and, prefixed, as the
local physical name) and the environment variable through which functions learn its
physical name at run time.
"""

from __future__ import annotations

from pushpipe.topology.kinds import (  # noqa: F401  (re-exported: the kinds are this module's API)
    ENV_OIDC_AUTHORIZE_URL,
    ENV_OIDC_CLIENT_ID,
    ENV_OIDC_GROUPS_CLAIM,
    ENV_OIDC_ISSUER,
    ENV_OIDC_TOKEN_URL,
    BillingKey,
    Bucket,
    DeliveryStream,
    Function,
    Index,
    Issuer,
    KinesisTrigger,
    Mail,
    QueryCatalog,
    Queue,
    Route,
    S3ToQueue,
    ScheduleTrigger,
    Secret,
    SqsTrigger,
    Stream,
    Table,
)

PROJECT = "pushpipe"

# ---------------------------------------------------------------------------------------
# Environment variable names, shared by settings, infra and the local cloud.
# ---------------------------------------------------------------------------------------
ENV_AUDIENCE_BUCKET = "AUDIENCE_BUCKET"
ENV_AUDIENCE_PREFIX = "AUDIENCE_PREFIX"
ENV_ARCHIVE_BUCKET = "ARCHIVE_BUCKET"
ENV_RUNS_TABLE = "RUNS_TABLE"
ENV_SENDS_FIREHOSE = "SENDS_FIREHOSE"
ENV_SEND_FUNCTION = "SEND_FUNCTION_NAME"
ENV_CHAINS = "SEND_CHAINS"
ENV_BATCH_SIZE = "SEND_BATCH_SIZE"
ENV_MIN_REMAINING_MS = "SEND_MIN_REMAINING_MS"
ENV_CONCURRENCY = "SEND_CONCURRENCY"
ENV_VAPID_SECRET = "VAPID_SECRET_NAME"
ENV_VAPID_SUBJECT = "VAPID_SUBJECT"
ENV_SIGNING_SECRET = "SIGNING_SECRET_NAME"
ENV_DRY_RUN = "SEND_DRY_RUN"
ENV_ALLOW_LIST = "SEND_ALLOW_LIST"
ENV_SWEEP_GRACE_MS = "SEND_SWEEP_GRACE_MS"
# Where pushes may go (pushpipe/push/endpoints.py): extra push-service domains (a deploy
# parameter), and exact origins allowed as they are (set only by the local cloud).
ENV_PUSH_HOSTS = "PUSH_HOSTS"  # comma-separated domains
ENV_PUSH_ORIGINS_ALLOWED = "PUSH_ORIGINS_ALLOWED"  # comma-separated origins
ENV_PING_URL = "PING_URL"  # where service workers post pings: <HTTP API base>/v1/pings
# SES: sender address and configuration set of the identity a function ``uses``, and
# the approvers (a function that needs them declares the key in ``settings`` with a local
# default; the deployed value comes from the deploy parameter pushpipe:approverEmails).
ENV_MAIL_FROM = "MAIL_FROM"
ENV_MAIL_CONFIGURATION_SET = "MAIL_CONFIGURATION_SET"
ENV_APPROVER_EMAILS = "APPROVER_EMAILS"  # comma-separated
# People sign in with OIDC (pushpipe/shared/identity.py): the issuer API Gateway's JWT
# authorizer trusts, the client the pages and the CLI sign in as, the issuer's
# browser sign-in and token endpoints, and the claim that carries "<tenant>:<role>" groups:
# ENV_OIDC_* (declared with the Issuer kind in kinds.py).

AUDIENCE_PREFIX = "audiences/"  # audiences/<tenant>/... (pushpipe/audience/keys.py)
DRAFTS_PREFIX = "drafts/"  # drafts/<tenant>/...: ad-hoc drafts, sent only once approved
STALE_REPORTS_PREFIX = "stale-subscriptions/"
SCHEDULED_MARKERS_PREFIX = "scheduled-runs/"
SENDS_ARCHIVE_PREFIX = "sends/"
PINGS_ARCHIVE_PREFIX = "pings/"


# ---------------------------------------------------------------------------------------
# Resources
# ---------------------------------------------------------------------------------------
AUDIENCE_BUCKET = Bucket("audience", ENV_AUDIENCE_BUCKET, expire_days=90)
ARCHIVE_BUCKET = Bucket("archive", ENV_ARCHIVE_BUCKET)

# Send runs and their chain cursors. The sparse ``active`` index lists the chains that
# are still running, so the sweeper finds a stalled chain without a scan.
RUNS_ACTIVE_INDEX = Index("active", pk="active")
RUNS_TABLE = Table("runs", ENV_RUNS_TABLE, ttl_attribute="expires_at", indexes=(RUNS_ACTIVE_INDEX,))

AUDIENCE_QUEUE = Queue("audience-events", visibility_timeout_s=960, max_receive_count=3)

SENDS_FIREHOSE = DeliveryStream("sends", ENV_SENDS_FIREHOSE, "archive", SENDS_ARCHIVE_PREFIX)

VAPID_SECRET = Secret("vapid", ENV_VAPID_SECRET, "vapid")
SIGNING_SECRET = Secret("signing", ENV_SIGNING_SECRET, "hmac")

# The people who request, approve, view and operate (pushpipe/shared/identity.py).
PEOPLE = Issuer("people")

NOTIFICATIONS = (S3ToQueue("audience", AUDIENCE_PREFIX, "audience-events"),)

SEND_BATCH = Function(
    name="send_batch",
    handler="functions.send_batch.handler.handler",
    env=ENV_SEND_FUNCTION,
    timeout_s=900,
    memory_mb=1024,
    # counters: send outcomes commit with the cursor; subscriptions: 404/410 are pruned
    uses=("audience", "runs", "sends", "vapid", "signing", "counters", "subscriptions"),
    invokes_self=True,
    prefixes={"audience": (AUDIENCE_PREFIX,)},
    triggers=(
        SqsTrigger("audience-events", batch_size=1),
        # Resumes chains whose invocation died (lease expired) — see docs/decisions.md.
        ScheduleTrigger("send-sweeper", rate_minutes=5, payload={"action": "sweep"}),
    ),
    settings={
        ENV_AUDIENCE_PREFIX: AUDIENCE_PREFIX,
        ENV_VAPID_SUBJECT: "mailto:push@example.com",
        ENV_PUSH_HOSTS: "",
    },
    reserved_concurrency=50,
    api_paths={ENV_PING_URL: "/v1/pings"},
)

MAIL = Mail("mail", ENV_MAIL_FROM, ENV_MAIL_CONFIGURATION_SET)

# --- pings, counters, revenue, audit (resources; functions/routes below) --------------
ENV_COUNTERS_TABLE = "COUNTERS_TABLE"
ENV_SUBSCRIPTIONS_TABLE = "SUBSCRIPTIONS_TABLE"
ENV_PINGS_STREAM = "PINGS_STREAM"
ENV_PINGS_FIREHOSE = "PINGS_FIREHOSE"
ENV_TENANT_SECRET = "TENANT_SECRET_NAME"
ENV_MAX_PING_BYTES = "MAX_PING_BYTES"
ENV_COUNTER_SHARD_PREFIX = "COUNTER_SHARD_PREFIX"

# Counters, ping dedup fragments, click fragments and order ids (pushpipe/pings/counters.py).
COUNTERS_TABLE = Table("counters", ENV_COUNTERS_TABLE, ttl_attribute="expires_at")
# Subscriptions and their per-topic copies (pushpipe/subscriptions/).
SUBSCRIPTIONS_TABLE = Table("subscriptions", ENV_SUBSCRIPTIONS_TABLE)
# Accepted pings: read by the aggregate and archived by Firehose (see pushpipe/pings/ingest.py).
PINGS_STREAM = Stream("pings", ENV_PINGS_STREAM, shards=2)
PINGS_FIREHOSE = DeliveryStream(
    "pings-archive", ENV_PINGS_FIREHOSE, "archive", PINGS_ARCHIVE_PREFIX, source_stream="pings"
)
# Per-tenant report keys, webhook secrets and attribution windows (pushpipe/shared/tenants.py).
TENANT_SECRET = Secret("tenants", ENV_TENANT_SECRET, "json")

PING_HANDLER = Function(
    name="ping_handler",
    handler="functions.ping_handler.handler.handler",
    env=None,
    timeout_s=10,
    memory_mb=512,
    uses=("pings", "signing", "counters", "subscriptions", "tenants", "people"),
    settings={ENV_PUSH_HOSTS: ""},  # subscription intake applies the endpoint policy
    # public (anyone can call its routes): a flood is bounded here, not by the account
    reserved_concurrency=100,
    canary=True,  # deployed through alias 'live', CodeDeploy canary, rolled back on alarm
)
AGGREGATE = Function(
    name="aggregate",
    handler="functions.aggregate.handler.handler",
    env=None,
    timeout_s=120,
    memory_mb=1024,
    uses=("counters",),
    # A 10 s window fills batches at the brief's burst rate (~175 pings/s): about 900
    # pings per batch per shard, ~5 writes each (bench/bench_pings.py). Reports lag <= 10 s.
    triggers=(KinesisTrigger("pings", batch_size=1000, max_batching_window_s=10),),
)
_PING_TOKEN = "each ping carries a signed, expiring token; forged ones are refused"
_PREFLIGHT = "a CORS preflight: answers headers only, reads and changes nothing"
_PUBLIC_DOC = "public documentation (the OpenAPI document), no data"
_SITE_KEY = (
    "browsers subscribe with the tenant's public site key, accepted only from its allowed "
    "web origins and rate-limited per key; key changes need the old auth secret"
)
PING_API_ROUTES = (
    Route("POST", "/v1/pings", "ping_handler", _PING_TOKEN),
    Route("OPTIONS", "/v1/pings", "ping_handler", _PREFLIGHT),
    Route(
        "POST",
        "/v1/orders",
        "ping_handler",
        "the shop's webhook: HMAC-SHA256 of the body with the tenant's secret",
        rate_limit=200,
        burst_limit=400,
    ),
    Route(
        "GET",
        "/v1/tenants/{tenant}/campaigns/{campaign}/report",
        "ping_handler",
        "the tenant's read-only report key (bearer), checked against that tenant only",
        rate_limit=50,
        burst_limit=100,
    ),
    Route(
        "GET",
        "/v1/reports/{tenant}/{campaign}",
        "ping_handler",
        "the same report for a signed-in person with a role (viewer or more) in the tenant",
        rate_limit=50,
        burst_limit=100,
        signed_in=True,
    ),
    Route("POST", "/v1/subscriptions", "ping_handler", _SITE_KEY, rate_limit=200, burst_limit=400),
    Route(
        "PUT",
        "/v1/tenants/{tenant}/subscriptions",
        "ping_handler",
        "an operator of the tenant: imports or corrects a subscription, keys included",
        rate_limit=50,
        burst_limit=100,
        signed_in=True,
    ),
    Route("OPTIONS", "/v1/subscriptions", "ping_handler", _PREFLIGHT),
    Route(
        "DELETE",
        "/v1/subscriptions/{id}",
        "ping_handler",
        "proven by the subscription's own auth secret (only its browser holds it)",
        rate_limit=100,
        burst_limit=200,
    ),
    Route("OPTIONS", "/v1/subscriptions/{id}", "ping_handler", _PREFLIGHT),
    Route("GET", "/openapi.json", "ping_handler", _PUBLIC_DOC, rate_limit=20, burst_limit=40),
    Route("GET", "/docs", "ping_handler", _PUBLIC_DOC, rate_limit=20, burst_limit=40),
)

# --- ad-hoc requests, approval, A/B, schedules ----------------------------------------
ENV_REQUESTS_TABLE = "REQUESTS_TABLE"
ENV_APPROVAL_FUNCTION = "APPROVAL_FUNCTION_NAME"
ENV_APPROVALS_REQUIRED = "APPROVALS_REQUIRED"  # N of the approvers must approve
ENV_REQUEST_TTL_HOURS = "REQUEST_TTL_HOURS"  # undecided requests (and their links) expire
ENV_PUBLIC_API_URL = "PUBLIC_API_URL"  # base of the links in approval e-mails

# Requests, every decision (who, when, why), used links, approvers' test devices
# (pushpipe/approval/store.py). The sparse ``open`` index lists the requests the
# sweeper must look at (to expire, or to finish releasing) without a scan.
REQUESTS_OPEN_INDEX = Index("open", pk="open", sk="open_until")
REQUESTS_TABLE = Table(
    "requests", ENV_REQUESTS_TABLE, ttl_attribute="purge_at", indexes=(REQUESTS_OPEN_INDEX,)
)

APPROVAL = Function(
    name="approval",
    handler="functions.approval.handler.handler",
    env=ENV_APPROVAL_FUNCTION,
    timeout_s=900,  # HTTP requests are short; counting and releasing run asynchronously
    memory_mb=1024,
    uses=(
        "requests",
        "audience",
        "subscriptions",
        "signing",
        "vapid",
        "tenants",
        "mail",
        "people",
    ),
    writes=("audience",),  # the approved audience, under the audience prefix, once
    prefixes={"audience": (AUDIENCE_PREFIX, DRAFTS_PREFIX)},
    reserved_concurrency=20,  # public routes (form, links): a flood cannot take the account
    invokes_self=True,
    triggers=(
        # Expires undecided requests, finishes releases that were interrupted.
        ScheduleTrigger("approval-sweeper", rate_minutes=15, payload={"action": "sweep"}),
    ),
    settings={
        ENV_AUDIENCE_PREFIX: AUDIENCE_PREFIX,
        ENV_APPROVER_EMAILS: "approver@example.com,second-approver@example.com",
        ENV_VAPID_SUBJECT: "mailto:push@example.com",
        ENV_PUSH_HOSTS: "",
    },
    api_paths={ENV_PING_URL: "/v1/pings", ENV_PUBLIC_API_URL: "/"},
)
# The archive as SQL tables (pushpipe/pings/audit.py): Athena in the stack, DuckDB locally.
ENV_AUDIT_WORKGROUP = "AUDIT_WORKGROUP"
ENV_AUDIT_DATABASE = "AUDIT_DATABASE"
AUDIT_CATALOG = QueryCatalog("audit", ENV_AUDIT_WORKGROUP, ENV_AUDIT_DATABASE)

# Stale subscriptions (pushpipe/subscriptions/engagement.py): which push services answer
# 2xx for revoked subscriptions (Safari), and how many unanswered sends make one stale.
ENV_STALE_SERVICES = "STALE_SERVICES"  # comma-separated push service names
ENV_STALE_SILENT_SENDS = "STALE_SILENT_SENDS"
ENV_STALE_LOOKBACK_DAYS = "STALE_LOOKBACK_DAYS"
ENV_STALE_GRACE_HOURS = "STALE_GRACE_HOURS"

# Scheduled campaigns (pushpipe/scheduled/definitions.py: definitions with their variants, as code)
# write their audience files under the audience prefix, once per campaign and day. Once a
# day the same function prunes stale subscriptions from an archive query.
SCHEDULER = Function(
    name="scheduler",
    handler="functions.scheduler.handler.handler",
    env=None,
    timeout_s=900,
    memory_mb=1024,
    # archive + audit: the stale-subscriptions query reads the archive through Athena
    uses=("audience", "subscriptions", "counters", "tenants", "archive", "audit"),
    writes=("audience",),  # scheduled audiences, markers, stale-subscription reports
    prefixes={"audience": (AUDIENCE_PREFIX, SCHEDULED_MARKERS_PREFIX, STALE_REPORTS_PREFIX)},
    triggers=(
        ScheduleTrigger("scheduled-campaigns", rate_minutes=60, payload={"action": "scheduled"}),
        ScheduleTrigger("stale-subscriptions", rate_minutes=1440, payload={"action": "stale"}),
    ),
    settings={
        ENV_AUDIENCE_PREFIX: AUDIENCE_PREFIX,
        ENV_STALE_SERVICES: "apple",
        ENV_STALE_SILENT_SENDS: 10,
        ENV_STALE_LOOKBACK_DAYS: 30,
        ENV_STALE_GRACE_HOURS: 48,
    },
)
_LINK = "a signed, expiring, single-use approval link token names the approver and request"
_REQUESTS = dict(rate_limit=20, burst_limit=40)
_SIGNED_LINK = " and the signed-in approver it names (an approver role in the request's tenant)"
_STATIC = "a static page or script, no data"
APPROVAL_ROUTES = (
    # before /{id}: the local router is ordered
    Route("GET", "/v1/requests/form", "approval", _STATIC + " (the form signs in)", **_REQUESTS),
    Route(
        "POST",
        "/v1/requests",
        "approval",
        "a requester of the request's tenant; the requester recorded is the signed-in identity",
        signed_in=True,
        **_REQUESTS,
    ),
    Route(
        "GET",
        "/v1/requests/{id}",
        "approval",
        "any role in the request's tenant; another tenant's request is not found",
        signed_in=True,
    ),
    Route("GET", "/v1/approval/{action}", "approval", _LINK + " (confirmation page only)"),
    Route(
        "POST",
        "/v1/approval/{action}",
        "approval",
        _LINK + _SIGNED_LINK,
        signed_in=True,
        **_REQUESTS,
    ),
    Route("GET", "/v1/approvers/device", "approval", _LINK + " (the page only)"),
    Route(
        "POST",
        "/v1/approvers/device",
        "approval",
        _LINK + _SIGNED_LINK,
        signed_in=True,
        **_REQUESTS,
    ),
    Route("GET", "/v1/approvers/sw.js", "approval", "the approvers' service worker script"),
    Route("GET", "/v1/signin.js", "approval", _STATIC + " (the pages' OIDC sign-in)"),
    Route("GET", PEOPLE.callback_path, "approval", _STATIC + " (the OIDC redirect target)"),
    Route(
        "GET", "/v1/me", "approval", "the signed-in caller's own identity and roles", signed_in=True
    ),
)

# --- the registry every consumer iterates -----------------------------------------------
TABLES: tuple[Table, ...] = (RUNS_TABLE, COUNTERS_TABLE, SUBSCRIPTIONS_TABLE, REQUESTS_TABLE)
BUCKETS: tuple[Bucket, ...] = (AUDIENCE_BUCKET, ARCHIVE_BUCKET)
QUEUES: tuple[Queue, ...] = (AUDIENCE_QUEUE,)
STREAMS: tuple[Stream, ...] = (PINGS_STREAM,)
DELIVERY_STREAMS: tuple[DeliveryStream, ...] = (SENDS_FIREHOSE, PINGS_FIREHOSE)
SECRETS: tuple[Secret, ...] = (VAPID_SECRET, SIGNING_SECRET, TENANT_SECRET)
MAILERS: tuple[Mail, ...] = (MAIL,)
CATALOGS: tuple[QueryCatalog, ...] = (AUDIT_CATALOG,)
ISSUERS: tuple[Issuer, ...] = (PEOPLE,)
FUNCTIONS: tuple[Function, ...] = (SEND_BATCH, PING_HANDLER, AGGREGATE, APPROVAL, SCHEDULER)
ROUTES: tuple[Route, ...] = (*PING_API_ROUTES, *APPROVAL_ROUTES)


def by_name(items, name: str):
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)


def resource_env(name: str) -> str | None:
    """The env var carrying the physical name of the resource with logical ``name``."""
    groups = (TABLES, BUCKETS, DELIVERY_STREAMS, SECRETS, QUEUES, STREAMS, MAILERS, CATALOGS)
    for group in (*groups, ISSUERS):
        for item in group:
            if item.name == name:
                return getattr(item, "env", None)
    raise KeyError(name)
