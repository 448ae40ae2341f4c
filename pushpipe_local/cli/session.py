"""Connecting the CLI to a local cloud: a running one (``pushpipe local up`` wrote
``.pushpipe/local.json``) or one started in this process for the command's duration."""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from rich.console import Console

from pushpipe_local.cloud.cloud import REGION, LocalCloud, json_call, physical_name

console = Console()


@dataclass
class Endpoints:
    moto_url: str
    push_url: str
    invoke_url: str
    api_url: str
    vapid_public_key: str
    home: str

    @classmethod
    def from_cloud(cls, cloud: LocalCloud) -> Endpoints:
        return cls(
            cloud.moto_url,
            cloud.push_url,
            cloud.invoke_url,
            cloud.api_url,
            cloud.vapid_public_key,
            str(cloud.home),
        )

    @classmethod
    def running(cls, home: Path) -> Endpoints | None:
        """The local cloud of ``pushpipe local up``, if one is alive."""
        state = Path(home) / "local.json"
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        try:
            os.kill(int(data["pid"]), 0)
            urllib.request.urlopen(f"{data['moto_url']}/moto-api/", timeout=2).read()
        except (OSError, ValueError, KeyError):
            return None
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.invoke_url if service == "lambda" else self.moto_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def name(self, kind: str, logical: str) -> str:
        return physical_name(kind, logical)

    def push_admin(self, method: str, path: str, body: Any = None) -> Any:
        return json_call(self.push_url, method, path, body)

    def runtime_status(self) -> dict:
        with urllib.request.urlopen(f"{self.invoke_url}/_local/status", timeout=10) as resp:
            return json.loads(resp.read())

    def wait_push_quiet(self, quiet_s: float = 1.0, timeout_s: float = 60) -> dict:
        """Wait until the push service has received nothing new for ``quiet_s``."""
        end = time.time() + timeout_s
        last = None
        since = time.time()
        while time.time() < end:
            stats = self.push_admin("GET", "/_admin/stats")
            key = json.dumps([stats.get("requests"), stats.get("last_seq")])
            if key != last:
                last, since = key, time.time()
            elif time.time() - since >= quiet_s:
                return stats
            time.sleep(0.2)
        return self.push_admin("GET", "/_admin/stats")


def require_running(args: argparse.Namespace) -> Endpoints:
    """The local cloud of ``pushpipe local up`` for ``--home``; exits (2) with a hint if
    none is running."""
    ep = Endpoints.running(Path(args.home))
    if ep is None:
        console.print(
            f"[red]No local cloud is running for {args.home}.[/red] "
            "Start one with [bold]pushpipe local up[/bold] (or run [bold]pushpipe demo"
            "[/bold], which starts its own)."
        )
        raise SystemExit(2)
    return ep
