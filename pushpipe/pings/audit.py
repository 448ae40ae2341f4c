"""The audit catalogue: Athena tables over the Firehose archive, and the named queries.

Read by the CDK stack (Glue tables, Athena named queries) and by the local cloud
(DuckDB over the same objects). Each table is newline-delimited JSON, GZIP-compressed,
under ``s3://<archive bucket>/<prefix>yyyy/MM/dd/HH/``; the hour path is the partition
column ``dt`` (``'2026/11/22/09'``), projected, so no crawler or MSCK is needed.

Columns mirror the records the code writes: ``pushpipe.sending.service._record`` (sends) and
``pushpipe.pings.ingest.PingRecord.to_line`` (pings).
"""

from __future__ import annotations

from dataclasses import dataclass

from pushpipe import topology as t

PARTITION = "dt"  # string 'yyyy/MM/dd/HH' (UTC hour the record reached Firehose)
PARTITION_FORMAT = "yyyy/MM/dd/HH"


@dataclass(frozen=True)
class AuditTable:
    name: str
    prefix: str  # in the archive bucket, with a trailing slash
    columns: tuple[tuple[str, str], ...]  # (name, Athena/Hive type)
    description: str = ""


@dataclass(frozen=True)
class NamedQuery:
    """A query every tenant may run over its own rows: the first parameter (``?``) is
    always the tenant, so no named query shows one tenant another tenant's data."""

    name: str
    description: str
    sql: str
    params: tuple[str, ...] = ("tenant",)

    def __post_init__(self) -> None:
        if self.params[:1] != ("tenant",) or self.sql.count("?") != len(self.params):
            raise ValueError(f"named query {self.name!r}: parameters must start with tenant")


SENDS = AuditTable(
    name="sends",
    prefix=t.SENDS_ARCHIVE_PREFIX,
    description="One row per recipient per send attempt outcome, with the exact payload",
    columns=(
        ("ts", "string"),
        ("tenant", "string"),
        ("campaign", "string"),
        ("variant", "string"),
        ("notification", "string"),
        ("subscriber", "string"),
        ("run", "string"),
        ("chain", "int"),
        ("outcome", "string"),
        ("status", "int"),
        ("reason", "string"),
        ("attempts", "int"),
        ("payload", "string"),
        ("service", "string"),  # push service: apple, fcm, mozilla, wns, other
        ("ep", "string"),  # endpoint fingerprint (blake2b-64 hex)
    ),
)

PINGS = AuditTable(
    name="pings",
    prefix=t.PINGS_ARCHIVE_PREFIX,
    description="One row per verified delivery or click ping",
    columns=(
        ("v", "int"),
        ("ts", "string"),
        ("seen_at", "string"),
        ("type", "string"),
        ("tenant", "string"),
        ("campaign", "string"),
        ("variant", "string"),
        ("notification", "string"),
        ("subscriber", "string"),
        ("exp", "bigint"),
    ),
)

TABLES: tuple[AuditTable, ...] = (SENDS, PINGS)

NAMED_QUERIES: tuple[NamedQuery, ...] = (
    NamedQuery(
        "sends-by-outcome",
        "Sends per campaign, variant and outcome (sent, pruned, failed, skipped)",
        "SELECT tenant, campaign, variant, outcome, count(*) AS n\n"
        "FROM sends\n"
        "WHERE tenant = ?\n"
        "GROUP BY tenant, campaign, variant, outcome\n"
        "ORDER BY tenant, campaign, variant, outcome",
    ),
    NamedQuery(
        "failed-sends",
        "Failed sends with the push service status and reason, newest first",
        "SELECT ts, tenant, campaign, subscriber, status, reason, attempts\n"
        "FROM sends\n"
        "WHERE tenant = ? AND outcome = 'failed'\n"
        "ORDER BY ts DESC\n"
        "LIMIT 500",
    ),
    NamedQuery(
        "pings-by-type",
        "Delivery and click pings per campaign and variant (unique notifications)",
        "SELECT tenant, campaign, variant, type, count(DISTINCT notification) AS notifications\n"
        "FROM pings\n"
        "WHERE tenant = ?\n"
        "GROUP BY tenant, campaign, variant, type\n"
        "ORDER BY tenant, campaign, variant, type",
    ),
    NamedQuery(
        "funnel",
        "Sent -> delivered -> clicked per campaign and variant",
        "WITH s AS (SELECT DISTINCT tenant, campaign, variant, notification FROM sends "
        "WHERE tenant = ? AND outcome = 'sent'),\n"
        "p AS (SELECT notification,\n"
        "        max(CASE WHEN type = 'delivered' THEN 1 ELSE 0 END) AS delivered,\n"
        "        max(CASE WHEN type = 'clicked' THEN 1 ELSE 0 END) AS clicked\n"
        "      FROM pings GROUP BY notification)\n"
        "SELECT s.tenant, s.campaign, s.variant, count(*) AS sent,\n"
        "       sum(coalesce(p.delivered, 0)) AS delivered,\n"
        "       sum(coalesce(p.clicked, 0)) AS clicked\n"
        "FROM s LEFT JOIN p ON p.notification = s.notification\n"
        "GROUP BY s.tenant, s.campaign, s.variant\n"
        "ORDER BY s.tenant, s.campaign, s.variant",
    ),
    # Parameters (``?``, the tenant first): Athena EXECUTE ... USING / ExecutionParameters,
    # ``pushpipe query --named NAME --param TENANT [--param ...]`` locally.
    NamedQuery(
        "campaign-funnel",
        "One campaign's funnel per variant: recipients, outcomes, impressions, clicks, closes "
        "(parameters: tenant, campaign)",
        "WITH s AS (SELECT variant, notification, outcome FROM sends\n"
        "           WHERE tenant = ? AND campaign = ?),\n"
        "p AS (SELECT notification,\n"
        "        max(CASE WHEN type = 'delivered' THEN 1 ELSE 0 END) AS delivered,\n"
        "        max(CASE WHEN type = 'clicked' THEN 1 ELSE 0 END) AS clicked,\n"
        "        max(CASE WHEN type = 'closed' THEN 1 ELSE 0 END) AS closed\n"
        "      FROM pings GROUP BY notification)\n"
        "SELECT s.variant, count(DISTINCT s.notification) AS recipients,\n"
        "       count(DISTINCT CASE WHEN s.outcome = 'sent' THEN s.notification END) AS sent,\n"
        "       count(DISTINCT CASE WHEN s.outcome = 'pruned' THEN s.notification END) AS pruned,\n"
        "       count(DISTINCT CASE WHEN s.outcome = 'failed' THEN s.notification END) AS failed,\n"
        "       count(DISTINCT CASE WHEN p.delivered = 1 THEN s.notification END) AS delivered,\n"
        "       count(DISTINCT CASE WHEN p.clicked = 1 THEN s.notification END) AS clicked,\n"
        "       count(DISTINCT CASE WHEN p.closed = 1 THEN s.notification END) AS closed\n"
        "FROM s LEFT JOIN p ON p.notification = s.notification\n"
        "GROUP BY s.variant\n"
        "ORDER BY s.variant",
        ("tenant", "campaign"),
    ),
    NamedQuery(
        "subscriber-history",
        "Everything sent to one subscriber, with the exact payload and what the browser "
        "reported back (parameters: tenant, subscriber)",
        "SELECT s.ts, s.campaign, s.variant, s.notification, s.outcome, s.status, s.reason,\n"
        "       s.payload,\n"
        "       (SELECT min(p.ts) FROM pings p WHERE p.notification = s.notification\n"
        "          AND p.type = 'delivered') AS delivered_at,\n"
        "       (SELECT min(p.ts) FROM pings p WHERE p.notification = s.notification\n"
        "          AND p.type = 'clicked') AS clicked_at\n"
        "FROM sends s\n"
        "WHERE s.tenant = ? AND s.subscriber = ?\n"
        "ORDER BY s.ts",
        ("tenant", "subscriber"),
    ),
    NamedQuery(
        "orphan-pings",
        "Pings whose notification was never sent: forged-but-signed, replayed from another "
        "system, or a send record lost before the archive",
        "SELECT p.ts, p.type, p.tenant, p.campaign, p.variant, p.notification, p.subscriber\n"
        "FROM pings p\n"
        "LEFT JOIN (SELECT DISTINCT notification FROM sends) s\n"
        "  ON s.notification = p.notification\n"
        "WHERE p.tenant = ? AND s.notification IS NULL\n"
        "ORDER BY p.ts",
    ),
)


def named_query(name: str) -> NamedQuery:
    for query in NAMED_QUERIES:
        if query.name == name:
            return query
    raise KeyError(f"no named query {name!r}; known: {[q.name for q in NAMED_QUERIES]}")
