"""``pushpipe report CAMPAIGN`` and ``pushpipe query "SQL"`` against the local cloud.

``report`` calls the real report API (the HTTP API of the local cloud) with the tenant's
report key, read from the local tenant secret, and prints it as tables. ``query`` runs
Athena SQL with DuckDB over the Firehose archive in the local archive bucket; a named
query (``pushpipe query --named campaign-funnel --param acme --param spring``) runs the
text the CDK stack registers in Athena.

The demo stages (``DEMO_STAGES``): pings from simulated browsers, the campaign report
checked against them, and an audit query.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from pushpipe import topology as t
from pushpipe.pings.audit import NAMED_QUERIES, named_query
from pushpipe_local.cli.demo import DemoContext
from pushpipe_local.cli.progress import COMPACT
from pushpipe_local.cli.session import require_running
from pushpipe_local.cloud.cloud import physical_name
from pushpipe_local.cloud.seed import DEMO_TENANT
from pushpipe_local.sim.browsers import Rates, SimulatedBrowsers
from pushpipe_local.sim.tenant import counts_match, ensure_tenant, fetch_report, wait_for_counts

if TYPE_CHECKING:  # DuckDB is imported when a query runs
    from pushpipe_local.cloud.athena import LocalAthena, QueryResult

console = Console()


# --- report ------------------------------------------------------------------------------
def _money(revenue: dict[str, Any]) -> str:
    return ", ".join(f"{Decimal(str(v)):.2f} {cur}" for cur, v in sorted(revenue.items())) or "-"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def report_tables(report: dict) -> list[Table]:
    summary = Table(title=f"campaign {report['campaign']} ({report['tenant']})", **COMPACT)
    for col in ("variant", "sent", "delivered", "clicked", "CTR", "closed", "orders", "revenue"):
        summary.add_column(col, justify="left" if col == "variant" else "right")
    summary.add_column("pruned/failed", justify="right")
    rows = [*report["variants"], {**report["total"], "variant": "total"}]
    for v in rows:
        sent = v["sent"] if v["variant"] != "control" else f"({v['control']} held out)"
        summary.add_row(
            f"[bold]{v['variant']}[/bold]" if v["variant"] == "total" else v["variant"],
            str(sent),
            str(v["delivered"]),
            str(v["clicked"]),
            _pct(v["ctr"]),
            str(v["closed"]),
            str(v["orders"]),
            _money(v["revenue"]),
            f"{v['pruned']}/{v['failed']}",
        )
    hours = Table(title="by hour (UTC)")
    for col in ("hour", "variant", "sent", "delivered", "clicked", "orders"):
        hours.add_column(col, justify="left" if col in ("hour", "variant") else "right")
    for h in report["hours"]:
        hours.add_row(
            h["hour"],
            h["variant"],
            str(h["sent"]),
            str(h["delivered"]),
            str(h["clicked"]),
            str(h["orders"]),
        )
    return [summary, hours]


def cmd_report(args: argparse.Namespace) -> int:
    ep = require_running(args)
    report = fetch_report(ep, args.tenant, args.campaign)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    if not report["variants"]:
        console.print(f"no counts yet for campaign {args.campaign!r} of tenant {args.tenant!r}")
        return 1
    for table in report_tables(report):
        console.print(table)
    return 0


# --- query -------------------------------------------------------------------------------
def result_table(columns: list[str], rows: list[tuple], limit: int = 200) -> Table:
    table = Table(show_lines=False)
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows[:limit]:
        table.add_row(*("" if v is None else str(v) for v in row))
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more rows not shown"
    return table


def _archive(s3: Any, home: Path) -> LocalAthena:
    """Athena over the local archive bucket, its copies cached under ``home``."""
    from pushpipe_local.cloud.athena import LocalAthena

    return LocalAthena(s3, physical_name("bucket", t.ARCHIVE_BUCKET.name), home / "athena")


def cmd_query(args: argparse.Namespace) -> int:
    from pushpipe_local.cloud.athena import QueryError

    if args.list:
        for q in NAMED_QUERIES:
            params = " ".join(f"--param {p.upper()}" for p in q.params)
            console.print(f"[bold]{q.name}[/bold] {params}: {q.description}")
        return 0
    if bool(args.sql) == bool(args.named):
        console.print("[red]give either SQL or --named NAME[/red]")
        return 2
    try:
        named = named_query(args.named) if args.named else None
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/red]")
        return 2
    if named is not None and len(args.param or []) != len(named.params):
        wanted = " ".join(f"--param {p.upper()}" for p in named.params)
        console.print(f"[red]{named.name} takes {wanted} (scoped to one tenant)[/red]")
        return 2
    sql = named.sql if named is not None else args.sql
    ep = require_running(args)
    athena = _archive(ep.client("s3"), Path(args.home))
    try:
        result = athena.run_query(sql, args.param or None)
    except QueryError as exc:
        console.print(f"[red]query failed:[/red] {exc}")
        return 1
    console.print(result_table(result.columns, result.rows))
    console.print(f"{len(result.rows)} rows")
    return 0


def register(subparsers: Any) -> None:
    report = subparsers.add_parser(
        "report", help="impressions, clicks, CTR and revenue of a campaign (report API)"
    )
    report.add_argument("campaign")
    report.add_argument("--tenant", default=DEMO_TENANT)
    report.add_argument("--json", action="store_true", help="print the API's JSON")
    report.set_defaults(func=cmd_report)

    query = subparsers.add_parser(
        "query", help="Athena SQL over the archived sends and pings, run by DuckDB"
    )
    query.add_argument("sql", nargs="?", help="SQL over the tables sends and pings")
    query.add_argument("--named", help="run a named query of pushpipe/pings/audit.py (see --list)")
    query.add_argument("--param", action="append", help="a ? parameter, in order")
    query.add_argument("--list", action="store_true", help="list the named queries")
    query.set_defaults(func=cmd_query)


# --- demo stages: pings from simulated browsers, the report, one audit query ------------
def _stage_pings(ctx: DemoContext) -> None:
    browsers = SimulatedBrowsers(ctx.endpoints.push_url, Rates(seed=7), concurrency=16)
    stats = browsers.run_until_idle(idle_s=1.5, timeout_s=300)
    browsers.stop()
    counts = stats.counts(ctx.campaign)
    ctx.results["browsers"] = stats
    total = {
        k: sum(v.get(k, 0) for v in counts.values()) for k in ("delivered", "clicked", "closed")
    }
    ctx.console.print(
        f"Simulated browsers handled {stats.deliveries:,} pushes like sw.js: "
        f"{total['delivered']:,} delivery pings (30%), {total['clicked']:,} clicks (5% of "
        f"those), {total['closed']:,} closes; {stats.accepted:,} pings accepted by "
        f"POST /v1/pings, {sum(stats.refused.values())} refused, {stats.errors} errors."
    )


def _stage_report(ctx: DemoContext) -> None:
    tenant = ctx.results.get("tenant", "demo-shop")
    ensure_tenant(ctx.endpoints, tenant)
    stats = ctx.results.get("browsers")
    expected = stats.counts(ctx.campaign) if stats else {}
    report = wait_for_counts(ctx.endpoints, tenant, ctx.campaign, expected)
    for table in report_tables(report):
        ctx.console.print(table)
    if counts_match(report, expected):
        ctx.console.print(
            "[green]The report's impressions and clicks equal what the browsers pinged, "
            "each counted once.[/green]"
        )
    else:
        ctx.console.print("[red]The report does not match the browsers' pings.[/red]")
        ctx.ok = False


def _query_until_rows(
    athena: LocalAthena, sql: str, params: Sequence[Any], attempts: int = 20
) -> QueryResult:
    """Run the query until it returns rows (the archive pump trails the stream by a
    moment), one second apart; the last result if it never does."""
    result = athena.run_query(sql, params)
    for _ in range(attempts - 1):
        if result.rows:
            break
        time.sleep(1)
        result = athena.run_query(sql, params)
    return result


def _stage_audit(ctx: DemoContext) -> None:
    athena = _archive(ctx.endpoints.client("s3"), Path(ctx.endpoints.home))
    query = named_query("campaign-funnel")
    tenant = ctx.results.get("tenant", "demo-shop")
    ctx.console.print(
        f"[bold]pushpipe query --named {query.name} --param {tenant} "
        f"--param {ctx.campaign}[/bold]  (DuckDB over the Firehose archive)"
    )
    result = _query_until_rows(athena, query.sql, [tenant, ctx.campaign])
    ctx.console.print(result_table(result.columns, result.rows))


# Collected by pushpipe_local.cli.demo (run after the send): pings, report, audit query.
DEMO_STAGES = [
    ("pings from simulated browsers", _stage_pings),
    ("the campaign report", _stage_report),
    ("an audit query", _stage_audit),
]
