"""The embedded local cloud: moto server + the local Lambda runtime + the local push
service, wired from ``pushpipe.topology`` exactly as the CDK stack wires AWS.

    cloud = LocalCloud(LocalOptions(home=Path(".pushpipe")))
    cloud.start()          # moto, resources, secrets, push service, functions, pollers
    cloud.s3.put_object(Bucket=cloud.bucket("audience"), Key="audiences/x.json", Body=...)
    cloud.stop()

Keys are generated at start-up (VAPID, ping-token signing); nothing secret is in the repo.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets as pysecrets
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from pushpipe import topology as t
from pushpipe_local.cloud.provision import create_table
from pushpipe_local.pushservice import PushServiceProcess, start_pushservice_process
from pushpipe_local.runtime.runtime import FunctionConfig, Runtime

REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "pushpipe-local"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


# The SES identity of the local cloud (moto refuses mail from unverified senders).
LOCAL_MAIL_FROM = "pushpipe@pushpipe.local"
LOCAL_CONFIGURATION_SET = f"{PREFIX}-mail"


def physical_name(kind: str, name: str) -> str:
    if kind == "secret":
        return f"{PREFIX}/{name}"
    return f"{PREFIX}-{name}"


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


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


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

    # -- clients ------------------------------------------------------------------------
    def client(self, service: str) -> Any:
        if service not in self._clients:
            endpoint = (
                self.runtime.invoke_url if service == "lambda" and self.runtime else (self.moto_url)
            )
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

    def table(self, name: str) -> str:
        return physical_name("table", name)

    @property
    def push_url(self) -> str:
        return self.push.url if self.push else ""

    @property
    def api_url(self) -> str:
        return self.runtime.api_url if self.runtime else ""

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> LocalCloud:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "logs").mkdir(exist_ok=True)
        handler = logging.FileHandler(self.home / "logs" / "runtime.log")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        runtime_log = logging.getLogger("pushpipe_local.runtime.runtime")
        runtime_log.handlers = [handler]
        runtime_log.setLevel(logging.INFO)
        runtime_log.propagate = False
        self._start_moto()
        self._create_resources()
        self._create_secrets()
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

    # -- resources from the topology ------------------------------------------------------
    def _create_resources(self) -> None:
        s3, sqs, ddb = self.client("s3"), self.client("sqs"), self.client("dynamodb")
        for b in t.BUCKETS:
            s3.create_bucket(Bucket=self.bucket(b.name))
        for q in t.QUEUES:
            name = physical_name("queue", q.name)
            attrs = {"VisibilityTimeout": str(self.options.queue_visibility_s)}
            if q.dlq:
                dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
                self.queue_urls[f"{q.name}-dlq"] = dlq
                dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"]
                attrs["RedrivePolicy"] = json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(q.max_receive_count)}
                )
            self.queue_urls[q.name] = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
        for n in t.NOTIFICATIONS:
            url = self.queue_urls[n.queue]
            arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            s3.put_bucket_notification_configuration(
                Bucket=self.bucket(n.bucket),
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {
                            "QueueArn": arn,
                            "Events": ["s3:ObjectCreated:*"],
                            "Filter": {
                                "Key": {"FilterRules": [{"Name": "prefix", "Value": n.prefix}]}
                            },
                        }
                    ]
                },
            )
            self._drain_test_event(url)
        for tb in t.TABLES:
            create_table(ddb, tb, self.table(tb.name))
        kinesis = self.client("kinesis")
        for st in t.STREAMS:
            kinesis.create_stream(StreamName=physical_name("stream", st.name), ShardCount=st.shards)
        if t.MAILERS:
            sesv2 = self.client("sesv2")
            sesv2.create_configuration_set(ConfigurationSetName=LOCAL_CONFIGURATION_SET)
            sesv2.create_email_identity(EmailIdentity=LOCAL_MAIL_FROM)
        firehose = self.client("firehose")
        for d in t.DELIVERY_STREAMS:
            firehose.create_delivery_stream(
                DeliveryStreamName=physical_name("firehose", d.name),
                DeliveryStreamType="DirectPut",
                ExtendedS3DestinationConfiguration={
                    "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
                    "BucketARN": f"arn:aws:s3:::{self.bucket(d.bucket)}",
                    "Prefix": d.prefix,
                    "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
                },
            )

    def _drain_test_event(self, queue_url: str) -> None:
        """S3 sends an ``s3:TestEvent`` when notifications are configured; the handler
        ignores it too, but draining it keeps the first invocation for real work."""
        sqs = self.client("sqs")
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        for m in got.get("Messages", []):
            if "s3:TestEvent" in m["Body"]:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])

    def _create_secrets(self) -> None:
        sm = self.client("secretsmanager")
        for sec in t.SECRETS:
            if sec.kind == "vapid":
                key = ec.generate_private_key(ec.SECP256R1())
                pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ).decode()
                public = _b64url(
                    key.public_key().public_bytes(
                        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
                    )
                )
                self.vapid_public_key = public
                value = {"private_key": pem, "public_key": public}
            elif sec.kind == "hmac":
                value = {"active": "k1", "keys": {"k1": _b64url(pysecrets.token_bytes(32))}}
            else:
                value = self.secret_defaults().get(sec.name, {})
            sm.create_secret(Name=physical_name("secret", sec.name), SecretString=json.dumps(value))

    def secret_defaults(self) -> dict[str, dict]:
        """Values of ``json`` secrets for the local run: the demo tenant with fresh keys."""
        from pushpipe_local.cloud.seed import default_tenants_secret

        return {t.TENANT_SECRET.name: default_tenants_secret()}

    # -- functions ----------------------------------------------------------------------
    def function_env(self, fn: t.Function) -> dict[str, str]:
        env = {
            **CREDENTIALS,
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_LAMBDA": self.runtime.invoke_url if self.runtime else "",
            "POWERTOOLS_SERVICE_NAME": "pushpipe",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "Pushpipe",
            "PUSHPIPE_LOCAL": "1",
            **{k: str(v) for k, v in fn.settings.items()},
        }
        kinds = {
            "table": t.TABLES,
            "bucket": t.BUCKETS,
            "firehose": t.DELIVERY_STREAMS,
            "secret": t.SECRETS,
            "queue": t.QUEUES,
            "stream": t.STREAMS,
        }
        for used in fn.uses:
            for kind, group in kinds.items():
                for item in group:
                    if item.name == used and getattr(item, "env", None):
                        env[item.env] = physical_name(kind, item.name)
        for mailer in t.MAILERS:
            if mailer.name in fn.uses:
                env[mailer.env] = LOCAL_MAIL_FROM
                env[mailer.configuration_set_env] = LOCAL_CONFIGURATION_SET
        if fn.env:
            env[fn.env] = fn.name
        if self.runtime and self.runtime.api_url:
            for name, path in fn.api_paths.items():
                env[name] = f"{self.runtime.api_url}{path}"
        env.update(self.options.settings.get(fn.name, {}))
        return env

    def _start_runtime(self) -> None:
        self.runtime = Runtime({}, self.home / "logs", REGION)
        self.runtime.start_invoke_api()
        self.runtime.start_http_api(t.ROUTES)
        for fn in t.FUNCTIONS:
            self.runtime.add_function(
                FunctionConfig(
                    spec=fn,
                    env=self.function_env(fn),
                    timeout_s=self.options.timeouts.get(fn.name, fn.timeout_s),
                    max_concurrency=min(
                        fn.reserved_concurrency or self.options.max_concurrency,
                        self.options.max_concurrency,
                    ),
                    retry_delays_s=self.options.async_retry_delays_s,
                )
            )
        warm = [
            threading.Thread(target=self.runtime.pools[name].prewarm, args=(n,), daemon=True)
            for name, n in self.options.prewarm.items()
            if n
        ]
        for th in warm:
            th.start()
        for th in warm:
            th.join()
        kinesis, firehose = self.client("kinesis"), self.client("firehose")
        for fn in t.FUNCTIONS:
            for trig in fn.triggers:
                if isinstance(trig, t.SqsTrigger):
                    self.runtime.poll_sqs(
                        self.client("sqs"), self.queue_urls[trig.queue], fn.name, trig.batch_size
                    )
                elif isinstance(trig, t.KinesisTrigger):
                    self.runtime.poll_kinesis(
                        kinesis,
                        physical_name("stream", trig.stream),
                        fn.name,
                        trig.batch_size,
                        trig.max_batching_window_s,
                    )
                elif isinstance(trig, t.ScheduleTrigger) and self.options.schedule_every_s:
                    self.runtime.schedule(fn.name, self.options.schedule_every_s, trig.payload)
        for d in t.DELIVERY_STREAMS:
            if d.source_stream:
                self.runtime.pump_firehose(
                    kinesis,
                    firehose,
                    physical_name("stream", d.source_stream),
                    physical_name("firehose", d.name),
                )

    def _write_state(self) -> None:
        state = {
            "pid": os.getpid(),
            "moto_url": self.moto_url,
            "push_url": self.push_url,
            "invoke_url": self.runtime.invoke_url if self.runtime else "",
            "api_url": self.api_url,
            "vapid_public_key": self.vapid_public_key,
            "home": str(self.home),
        }
        (self.home / "local.json").write_text(json.dumps(state, indent=2))

    # -- conveniences for the CLI, demo and tests ---------------------------------------
    def push_admin(self, method: str, path: str, body: Any = None) -> Any:
        return json_call(self.push_url, method, path, body)
