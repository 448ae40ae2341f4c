"""``pushpipe send FILE`` (drop an audience file into the local cloud and follow its send)
and ``pushpipe status CAMPAIGN`` (the runs of a campaign and their counts)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from pushpipe import topology as t
from pushpipe.audience.format import read_header
from pushpipe.audience.keys import audience_key
from pushpipe.sending.run_store import RunStore
from pushpipe.shared.errors import AudienceRejected
from pushpipe_local.cli.progress import RunStalled, follow, run_table, wait_for_run, why_lines
from pushpipe_local.cli.session import require_running
from pushpipe_local.cloud.cloud import physical_name

console = Console()


def cmd_send(args: argparse.Namespace) -> int:
    ep = require_running(args)
    path = Path(args.file)
    if not path.is_file():
        console.print(f"[red]{path} is not a file[/red]")
        return 2
    bucket = physical_name("bucket", "audience")
    try:
        with path.open("rb") as f:
            tenant = read_header(f).tenant
    except (AudienceRejected, ValueError) as exc:
        console.print(f"[red]{path} is not an audience file pushpipe can send: {exc}[/red]")
        return 2
    # a tenant's drops lie under its own prefix; the header must name that tenant
    key = audience_key(t.AUDIENCE_PREFIX, tenant, args.key or path.name)
    with path.open("rb") as f:
        etag = ep.client("s3").put_object(Bucket=bucket, Key=key, Body=f)["ETag"].strip('"')
    console.print(f"uploaded s3://{bucket}/{key}")
    store = RunStore(physical_name("table", "runs"), client=ep.client("dynamodb"))
    try:
        view = follow(store, wait_for_run(store, bucket, key, etag), console)
    except RunStalled as stalled:
        console.print(f"[red]{stalled}[/red]")
        view = stalled.view
    console.print(run_table([view]))
    for line in why_lines(view):
        console.print(line, style="red" if view.state != "done" else None)
    if view.state == "done" and view.counts["sent"] == 0 and view.total:
        console.print("[red]nothing was sent[/red]")
        return 1
    return 0 if view.state == "done" else 1


def cmd_status(args: argparse.Namespace) -> int:
    ep = require_running(args)
    store = RunStore(physical_name("table", "runs"), client=ep.client("dynamodb"))
    views = store.runs_of_campaign(args.campaign)
    if not views:
        console.print(f"no runs for campaign {args.campaign!r}")
        return 1
    console.print(run_table(views))
    for view in views:
        lines = why_lines(view)
        if lines:
            console.print(f"[bold]{view.run_id[:8]}[/bold]")
            for line in lines:
                console.print(line)
    return 0


def register(subparsers: Any) -> None:
    send = subparsers.add_parser("send", help="drop an audience file and follow the send")
    send.add_argument("file")
    send.add_argument("--key", help="object name under the audience prefix")
    send.set_defaults(func=cmd_send)

    status = subparsers.add_parser("status", help="runs and counts of a campaign")
    status.add_argument("campaign")
    status.set_defaults(func=cmd_status)
