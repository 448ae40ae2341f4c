"""The embedded local cloud: moto server + the local Lambda runtime + the local push
service, wired from ``pushpipe.topology`` exactly as the CDK stack wires AWS.

    cloud = LocalCloud(LocalOptions(home=Path(".pushpipe")))
    cloud.start()          # moto, resources, secrets, push service, functions, pollers
    cloud.s3.put_object(Bucket=cloud.bucket("audience"), Key="audiences/x.json", Body=...)
    cloud.stop()

Keys are generated at start-up (``seed``: VAPID, ping-token signing, the demo tenant);
nothing secret is in the repo. Resources come from ``provision``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from pushpipe import topology as t
from pushpipe_local.cloud.athena import LocalAthena
from pushpipe_local.cloud.athena_api import LocalAthenaApi, athena_api_handler
from pushpipe_local.cloud.provision import (
    LOCAL_CONFIGURATION_SET,
    LOCAL_MAIL_FROM,
    create_resources,
    physical_name,
    resource_env,
)
from pushpipe_local.cloud.seed import fresh_secret
from pushpipe_local.pushservice import PushServiceProcess, start_pushservice_process
from pushpipe_local.runtime.http_base import serve
from pushpipe_local.runtime.runtime import FunctionConfig, Runtime

# physical_name is part of this module's surface (the CLI, tests and benchmarks name
# resources through it); it is defined with the other naming rules in provision.
__all__ = [
    "CREDENTIALS",
    "REGION",
    "LocalCloud",
    "LocalOptions",
    "free_port",
    "json_call",
    "physical_name",
]

REGION = "us-east-1"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def json_call(base_url: str, method: str, path: str, body: Any = None, timeout: float = 300) -> Any:
    """A JSON request to one of the local services' admin APIs."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"{base_url}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


@dataclass
class LocalOptions:
    home: Path = Path(".pushpipe")
    # Per-function timeout overrides in seconds (the demo shortens send_batch's so that
    # it really recurses), and setting overrides (e.g. SEND_MIN_REMAINING_MS).
    timeouts: dict[str, float] = field(default_factory=dict)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)
    max_concurrency: int = 8
    schedule_every_s: float | None = 10.0  # None: no schedules (tests drive them)
    async_retry_delays_s: tuple[float, ...] = (1.0, 2.0)
    push_latency_ms: float = 0.0
    queue_visibility_s: int = 30
    # Containers started ahead of traffic, per function (provisioned concurrency).
    prewarm: dict[str, int] = field(default_factory=dict)


class LocalCloud:
    """The local cloud's processes and endpoints, started by ``start()``."""

    def __init__(self, options: LocalOptions | None = None) -> None:
        self.options = options or LocalOptions()
        self.home = Path(self.options.home).resolve()
        self.moto_process: subprocess.Popen | None = None
        self.moto_url = ""
        self.push: PushServiceProcess | None = None
        self.runtime: Runtime | None = None
        self._clients: dict[str, Any] = {}
        self.vapid_public_key = ""
        self.queue_urls: dict[str, str] = {}
        self.athena_url = ""
        self._athena_server: Any = None

    # -- clients ------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            endpoint = self.moto_url
            if service == "lambda" and self.runtime:
                endpoint = self.runtime.invoke_url
            elif service == "athena" and self.athena_url:
                endpoint = self.athena_url
            self._clients[service] = boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(
                    retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=50
                ),
            )
        return self._clients[service]

    @property
    def s3(self) -> Any:
        return self.client("s3")

    def bucket(self, name: str) -> str:
        return physical_name("bucket", name)

    @property
    def push_url(self) -> str:
        return self.push.url if self.push else ""

    @property
    def api_url(self) -> str:
        return self.runtime.api_url if self.runtime else ""

    @property
    def invoke_url(self) -> str:
        return self.runtime.invoke_url if self.runtime else ""

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> LocalCloud:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(self.home / "logs" / "runtime.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        runtime_log = logging.getLogger("pushpipe_local.runtime")
        runtime_log.handlers = [handler]
        runtime_log.setLevel(logging.INFO)
        runtime_log.propagate = False
        self._start_moto()
        self.queue_urls.update(
            create_resources(self.client, visibility_s=self.options.queue_visibility_s)
        )
        self._create_secrets()
        self._start_athena_api()
        self.push = start_pushservice_process(
            port=free_port(),
            state_file=self.home / "subscribers.json",
            latency_ms=self.options.push_latency_ms,
        )
        self._start_runtime()
        self._write_state()
        return self

    def stop(self) -> None:
        if self.runtime:
            self.runtime.stop()
        if self._athena_server is not None:
            self._athena_server.shutdown()
            self._athena_server.server_close()
            self._athena_server = None
        if self.push:
            self.push.stop()
        if self.moto_process and self.moto_process.poll() is None:
            self.moto_process.terminate()
            try:
                self.moto_process.wait(10)
            except subprocess.TimeoutExpired:
                self.moto_process.kill()
        state = self.home / "local.json"
        if state.exists():
            state.unlink()

    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_moto(self) -> None:
        port = free_port()
        log = open(self.home / "logs" / "moto.log", "ab")  # noqa: SIM115 - child's stdout
        self.moto_process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pushpipe_local.cloud.moto_server",
                "-H",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **CREDENTIALS},
        )
        self.moto_url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.moto_process.poll() is not None:
                raise RuntimeError("moto server exited; see .pushpipe/logs/moto.log")
            try:
                urllib.request.urlopen(f"{self.moto_url}/moto-api/", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start within 60 s")

    def _start_athena_api(self) -> None:
        """Athena's query API over DuckDB, for functions that ``use`` the audit catalogue."""
        athena = LocalAthena(
            self.client("s3"),
            physical_name("bucket", t.ARCHIVE_BUCKET.name),
            self.home / "athena-api",
        )
        self._athena_server = serve(athena_api_handler(LocalAthenaApi(athena)), "127.0.0.1", 0)
        self.athena_url = f"http://127.0.0.1:{self._athena_server.server_address[1]}"

    # -- secrets ----------------------------------------------------------------------------
    def _create_secrets(self) -> None:
        sm = self.client("secretsmanager")
        for sec in t.SECRETS:
            value = fresh_secret(sec)
            if sec.kind == "vapid":
                self.vapid_public_key = value["public_key"]
            sm.create_secret(Name=physical_name("secret", sec.name), SecretString=json.dumps(value))

    # -- functions ----------------------------------------------------------------------
    def function_env(self, fn: t.Function) -> dict[str, str]:
        env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.invoke_url,
            "POWERTOOLS_SERVICE_NAME": "pushpipe",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Pushpipe",
            **{k: str(v) for k, v in fn.settings.items()},
            **resource_env(fn),
        }
        for catalog in t.CATALOGS:
            if catalog.name in fn.uses:
                env[catalog.env] = physical_name("workgroup", catalog.name)
                env[catalog.database_env] = physical_name("database", catalog.name)
                env["AWS_ENDPOINT_URL_ATHENA"] = self.athena_url
        for mailer in t.MAILERS:
            if mailer.name in fn.uses:
                env[mailer.env] = LOCAL_MAIL_FROM
                env[mailer.configuration_set_env] = LOCAL_CONFIGURATION_SET
        if self.push_url:  # the one place that allows the local push service
            env[t.ENV_PUSH_ORIGINS_ALLOWED] = self.push_url
        if fn.env:
            env[fn.env] = fn.name
        if self.api_url:
            for name, path in fn.api_paths.items():
                env[name] = f"{self.api_url}{path}"
        env.update(self.options.settings.get(fn.name, {}))
        return env

    def _start_runtime(self) -> None:
        self.runtime = runtime = Runtime({}, self.home / "logs", REGION)
        runtime.start_invoke_api()
        runtime.start_http_api(t.ROUTES)
        for fn in t.FUNCTIONS:
            runtime.add_function(self._function_config(fn))
        self._prewarm(runtime)
        for fn in t.FUNCTIONS:
            for trig in fn.triggers:
                self._start_trigger(runtime, fn, trig)
        kinesis, firehose = self.client("kinesis"), self.client("firehose")
        for d in t.DELIVERY_STREAMS:
            if d.source_stream:
                runtime.pump_firehose(
                    kinesis,
                    firehose,
                    physical_name("stream", d.source_stream),
                    physical_name("firehose", d.name),
                )

    def _function_config(self, fn: t.Function) -> FunctionConfig:
        return FunctionConfig(
            spec=fn,
            env=self.function_env(fn),
            timeout_s=self.options.timeouts.get(fn.name, fn.timeout_s),
            max_concurrency=min(
                fn.reserved_concurrency or self.options.max_concurrency,
                self.options.max_concurrency,
            ),
            retry_delays_s=self.options.async_retry_delays_s,
        )

    def _prewarm(self, runtime: Runtime) -> None:
        """Start the containers of ``options.prewarm``, all functions at once."""
        warm = [
            threading.Thread(target=runtime.pools[name].prewarm, args=(n,), daemon=True)
            for name, n in self.options.prewarm.items()
            if n
        ]
        for th in warm:
            th.start()
        for th in warm:
            th.join()

    def _start_trigger(
        self,
        runtime: Runtime,
        fn: t.Function,
        trig: t.SqsTrigger | t.KinesisTrigger | t.ScheduleTrigger,
    ) -> None:
        """The event source of one of ``fn``'s triggers (schedules only if enabled)."""
        if isinstance(trig, t.SqsTrigger):
            runtime.poll_sqs(
                self.client("sqs"), self.queue_urls[trig.queue], fn.name, trig.batch_size
            )
        elif isinstance(trig, t.KinesisTrigger):
            runtime.poll_kinesis(
                self.client("kinesis"),
                physical_name("stream", trig.stream),
                fn.name,
                trig.batch_size,
                trig.max_batching_window_s,
            )
        elif isinstance(trig, t.ScheduleTrigger) and self.options.schedule_every_s:
            runtime.schedule(fn.name, self.options.schedule_every_s, trig.payload)

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "moto_url": self.moto_url,
            "push_url": self.push_url,
            "invoke_url": self.invoke_url,
            "api_url": self.api_url,
            "vapid_public_key": self.vapid_public_key,
            "home": str(self.home),
        }
        (self.home / "local.json").write_text(json.dumps(state, indent=2))

    # -- conveniences for the CLI, demo and tests ---------------------------------------
    def push_admin(self, method: str, path: str, body: Any = None) -> Any:
        return json_call(self.push_url, method, path, body)
