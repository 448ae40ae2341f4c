"""``pushpipe demo``: the whole pipeline on the embedded local cloud, in one command.

Local cloud up → subscribers with real P-256 keys → an audience file dropped into S3 →
send_batch streams it across parallel chains, recursing as its (shortened) timeout runs
low → the local push service verifies VAPID, decrypts every push → final counts, and a
check that every subscriber received the push exactly once. Later stages (pings, the
report, an audit query, the approval flow) come from the plugin modules, each of which
exports ``DEMO_STAGES``.
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from pushpipe import topology as t
from pushpipe.audience.keys import audience_key
from pushpipe.sending.run_store import RunStore
from pushpipe.sending.runs import RunView
from pushpipe_local.cli.plugins import plugin_modules
from pushpipe_local.cli.progress import follow, wait_for_run
from pushpipe_local.cli.session import Endpoints
from pushpipe_local.cloud.cloud import LocalCloud, LocalOptions, physical_name
from pushpipe_local.sim.audiences import demo_campaign, recipient, write_audience

console = Console()


@dataclass
class DemoContext:
    console: Console
    cloud: LocalCloud
    endpoints: Endpoints
    campaign: str
    recipients: int
    subscriptions: list[dict]
    results: dict[str, Any] = field(default_factory=dict)
    ok: bool = True


Stage = Callable[[DemoContext], None]


def stages() -> list[tuple[str, Stage]]:
    """Stages after the send, from the CLI's plugin modules (pings, report, audit query,
    approval): each exports ``DEMO_STAGES``, a list of (title, function of the context)."""
    return [stage for module in plugin_modules() for stage in getattr(module, "DEMO_STAGES", [])]


def demo_options(home: Path, timeout_s: float, chains: int) -> LocalOptions:
    # A short working window and a wide margin: each invocation sends for about a fifth of
    # its timeout, then hands off, and a batch slowed by a busy laptop still has most of
    # the timeout to finish in.
    min_remaining_ms = int(max(1000, timeout_s * 1000 * 0.8))
    return LocalOptions(
        home=home,
        timeouts={"send_batch": timeout_s},
        settings={
            "send_batch": {
                t.ENV_CHAINS: str(chains),
                t.ENV_MIN_REMAINING_MS: str(min_remaining_ms),
                t.ENV_SWEEP_GRACE_MS: str(int(timeout_s * 1000)),
            }
        },
        prewarm={"send_batch": chains + 1},
    )


@dataclass
class _Drop:
    """The demo's audience file in S3, and when it was dropped."""

    bucket: str
    key: str
    etag: str
    at: float


def _create_subscribers(ep: Endpoints, recipients: int, out: Console) -> list[dict]:
    t0 = time.time()
    subs = ep.push_admin("POST", "/_admin/subscriptions", {"count": recipients})
    subs = subs["subscriptions"] if isinstance(subs, dict) else subs
    out.print(
        f"Created {len(subs):,} browser subscriptions with real P-256 keys "
        f"in {time.time() - t0:.1f} s."
    )
    return subs


def _drop_audience(ctx: DemoContext) -> _Drop:
    key = audience_key(
        t.AUDIENCE_PREFIX, demo_campaign(ctx.campaign)["tenant"], f"{ctx.campaign}.json"
    )
    buf = io.BytesIO()
    size = write_audience(
        buf,
        demo_campaign(ctx.campaign),
        (
            recipient(s["id"], s, language="de" if i % 5 == 0 else "en")
            for i, s in enumerate(ctx.subscriptions)
        ),
    )
    bucket = physical_name("bucket", "audience")
    etag = (
        ctx.cloud.client("s3")
        .put_object(Bucket=bucket, Key=key, Body=buf.getvalue(), ContentType="application/json")[
            "ETag"
        ]
        .strip('"')
    )
    dropped = time.time()
    ctx.console.print(
        f"Dropped s3://{bucket}/{key} ({size / 1e6:.1f} MB, {ctx.recipients:,} recipients)."
    )
    return _Drop(bucket, key, etag, dropped)


def _send_table(campaign: str, view: RunView, stats: dict, status: dict, dropped: float) -> Table:
    """The send's outcome: run counts, send_batch's invocations, what the push service got."""
    c = view.counts
    table = Table(title=f"campaign {campaign}", show_header=False)
    table.add_row("run state", view.state)
    table.add_row("recipients", f"{view.total:,}")
    table.add_row("sent / pruned / failed", f"{c['sent']:,} / {c['pruned']:,} / {c['failed']:,}")
    table.add_row("chains", str(view.chains))
    handoffs = status["kinds"].get("chain", 0) - view.chains
    table.add_row(
        "send_batch invocations",
        f"{status['invocations']}: 1 admission, {view.chains} chain starts, "
        f"{handoffs} self-invocations when time ran low",
    )
    table.add_row("received and decrypted", f"{stats['receptions']:,}")
    table.add_row("distinct notifications", f"{stats['distinct_notifications']:,}")
    table.add_row("duplicates", f"{stats['duplicates']:,}")
    first = stats.get("first_received_at")
    if first:
        table.add_row("first push after the drop", f"{first - dropped:.2f} s")
    return table


def _send_and_check(ctx: DemoContext) -> None:
    """Drop the audience, follow the send, then check that everybody got it exactly once."""
    drop = _drop_audience(ctx)
    store = RunStore(physical_name("table", "runs"), client=ctx.cloud.client("dynamodb"))
    run_id = wait_for_run(store, drop.bucket, drop.key, drop.etag)
    view = follow(store, run_id, ctx.console)
    stats = ctx.endpoints.wait_push_quiet(quiet_s=1.0)
    status = ctx.endpoints.runtime_status()["functions"]["send_batch"]
    ctx.results.update(view=view, stats=stats, status=status, run_id=run_id)
    ctx.console.print(_send_table(ctx.campaign, view, stats, status, drop.at))
    exactly_once = (
        view.state == "done"
        and stats["distinct_notifications"] == ctx.recipients
        and stats["duplicates"] == 0
        and view.counts["sent"] == ctx.recipients
    )
    if exactly_once:
        ctx.console.print(
            f"[green]Every one of the {ctx.recipients:,} subscribers received the "
            f"push exactly once, verified and decrypted.[/green]"
        )
    else:
        ctx.console.print("[red]Not every subscriber received the push exactly once.[/red]")
        ctx.ok = False


def run_demo(
    recipients: int = 10_000,
    chains: int = 4,
    timeout_s: float = 15.0,
    home: Path = Path(".pushpipe"),
    console: Console | None = None,
) -> int:
    console = console or Console()
    started = time.time()
    console.rule("[bold]pushpipe demo")
    console.print(
        f"Starting the local cloud (moto server, local Lambda runtime, local push "
        f"service); send_batch timeout {timeout_s:g} s so that it recurses."
    )
    cloud = LocalCloud(demo_options(home, timeout_s, chains)).start()
    try:
        ep = Endpoints.from_cloud(cloud)
        console.print(
            f"  AWS APIs   {cloud.moto_url}\n  Lambda     {cloud.invoke_url}\n"
            f"  HTTP API   {cloud.api_url}\n  push       {cloud.push_url}"
        )
        subs = _create_subscribers(ep, recipients, console)
        campaign = f"demo-{int(time.time())}"
        ctx = DemoContext(console, cloud, ep, campaign, recipients, subs)
        _send_and_check(ctx)
        for title, stage in stages():
            console.rule(title)
            stage(ctx)
        console.rule(f"done in {time.time() - started:.0f} s")
        return 0 if ctx.ok else 1
    finally:
        cloud.stop()


def cmd_demo(args: argparse.Namespace) -> int:
    return run_demo(args.recipients, args.chains, args.timeout, Path(args.home), console)


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="the whole pipeline on the local cloud")
    demo.add_argument("--recipients", type=int, default=10_000)
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="send_batch timeout in seconds, short so that it recurses",
    )
    demo.set_defaults(func=cmd_demo)
