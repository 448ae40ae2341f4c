"""``pushpipe local up``: the embedded local cloud in the foreground, until Ctrl-C or
SIGTERM. (``pushpipe local mail`` is added to the group by the approval commands.)"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from pushpipe import topology as t
from pushpipe_local.cloud.cloud import LocalCloud, LocalOptions

console = Console()


def cmd_local_up(args: argparse.Namespace) -> int:
    options = LocalOptions(home=Path(args.home))
    if args.send_timeout:
        options.timeouts["send_batch"] = args.send_timeout
        options.settings["send_batch"] = {t.ENV_MIN_REMAINING_MS: str(int(args.send_timeout * 600))}
    cloud = LocalCloud(options).start()
    console.print("[green]local cloud up[/green]")
    console.print(
        f"  AWS APIs (moto)   {cloud.moto_url}\n  Lambda invoke     "
        f"{cloud.invoke_url}\n  HTTP API          {cloud.api_url}\n"
        f"  push service      {cloud.push_url}\n  logs              "
        f"{cloud.home / 'logs'}\n  audience bucket   "
        f"s3://{cloud.bucket('audience')}/{t.AUDIENCE_PREFIX}<tenant>/"
    )
    console.print("Ctrl-C stops it.")
    stop: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        while not stop:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    cloud.stop()
    return 0


def register(subparsers: Any) -> None:
    local = subparsers.add_parser("local", help="the embedded local cloud")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up = local_sub.add_parser("up", help="start moto, the Lambda runtime and the push service")
    up.add_argument(
        "--send-timeout",
        type=float,
        default=0,
        help="send_batch timeout in seconds (short values force recursion)",
    )
    up.set_defaults(func=cmd_local_up)
