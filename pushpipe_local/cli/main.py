"""The ``pushpipe`` command: the local cloud, the demo, sends and their status."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from rich.console import Console

from pushpipe import topology as t
from pushpipe.sending.runs import RunStore
from pushpipe_local.cli.plugins import plugin_modules
from pushpipe_local.cli.progress import follow, run_table, wait_for_run
from pushpipe_local.cli.session import Endpoints
from pushpipe_local.cloud.cloud import LocalCloud, LocalOptions, physical_name

console = Console()


def _running(args: argparse.Namespace) -> Endpoints:
    ep = Endpoints.running(Path(args.home))
    if ep is None:
        console.print(
            f"[red]No local cloud is running for {args.home}.[/red] "
            "Start one with [bold]pushpipe local up[/bold] (or run [bold]pushpipe demo"
            "[/bold], which starts its own)."
        )
        raise SystemExit(2)
    return ep


def cmd_local_up(args: argparse.Namespace) -> int:
    options = LocalOptions(home=Path(args.home))
    if args.send_timeout:
        options.timeouts["send_batch"] = args.send_timeout
        options.settings["send_batch"] = {t.ENV_MIN_REMAINING_MS: str(int(args.send_timeout * 600))}
    cloud = LocalCloud(options).start()
    console.print("[green]local cloud up[/green]")
    console.print(
        f"  AWS APIs (moto)   {cloud.moto_url}\n  Lambda invoke     "
        f"{cloud.runtime.invoke_url}\n  HTTP API          {cloud.api_url}\n"
        f"  push service      {cloud.push_url}\n  logs              "
        f"{cloud.home / 'logs'}\n  audience bucket   "
        f"s3://{cloud.bucket('audience')}/{t.AUDIENCE_PREFIX}"
    )
    console.print("Ctrl-C stops it.")
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    cloud.stop()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pushpipe_local.cli.demo import run_demo

    return run_demo(args.recipients, args.chains, args.timeout, Path(args.home), console)


def cmd_send(args: argparse.Namespace) -> int:
    ep = _running(args)
    path = Path(args.file)
    if not path.is_file():
        console.print(f"[red]{path} is not a file[/red]")
        return 2
    bucket = physical_name("bucket", "audience")
    key = f"{t.AUDIENCE_PREFIX}{args.key or path.name}"
    with path.open("rb") as f:
        etag = ep.client("s3").put_object(Bucket=bucket, Key=key, Body=f)["ETag"].strip('"')
    console.print(f"uploaded s3://{bucket}/{key}")
    store = RunStore(physical_name("table", "runs"), client=ep.client("dynamodb"))
    view = follow(store, wait_for_run(store, bucket, key, etag), console)
    console.print(run_table([view]))
    if view.state == "rejected":
        console.print(f"[red]rejected: {view.reason}[/red]")
        return 1
    return 0 if view.state == "done" else 1


def cmd_status(args: argparse.Namespace) -> int:
    ep = _running(args)
    store = RunStore(physical_name("table", "runs"), client=ep.client("dynamodb"))
    views = store.runs_of_campaign(args.campaign)
    if not views:
        console.print(f"no runs for campaign {args.campaign!r}")
        return 1
    console.print(run_table(views))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushpipe", description=__doc__)
    parser.add_argument("--home", default=".pushpipe", help="local cloud state folder")
    sub = parser.add_subparsers(dest="command", required=True)

    local = sub.add_parser("local", help="the embedded local cloud")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up = local_sub.add_parser("up", help="start moto, the Lambda runtime and the push service")
    up.add_argument(
        "--send-timeout",
        type=float,
        default=0,
        help="send_batch timeout in seconds (short values force recursion)",
    )
    up.set_defaults(func=cmd_local_up)

    demo = sub.add_parser("demo", help="the whole pipeline on the local cloud")
    demo.add_argument("--recipients", type=int, default=10_000)
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="send_batch timeout in seconds, short so that it recurses",
    )
    demo.set_defaults(func=cmd_demo)

    send = sub.add_parser("send", help="drop an audience file and follow the send")
    send.add_argument("file")
    send.add_argument("--key", help="object name under the audience prefix")
    send.set_defaults(func=cmd_send)

    status = sub.add_parser("status", help="runs and counts of a campaign")
    status.add_argument("campaign")
    status.set_defaults(func=cmd_status)

    for module in plugin_modules():
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
