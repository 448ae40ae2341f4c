"""Building blocks shared by the ping-path tests and benchmark: resources created from the
topology declaration (so mocks cannot drift from what deploys), signed tokens, reading
the pings stream and a tiny gateway in front of a handler (events: ``tests.support.events``).

Never shipped to Lambda.
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3

from pushpipe import topology as t
from pushpipe.shared.tokens import PingClaims, SigningKeys, notification_id, sign
from pushpipe_local.cloud.provision import create_table
from tests.support.events import FakeContext, http_event

REGION = "us-east-1"
# subscribe.js's headers for the acme tenant's shop (its public site key, its origin)
ACME_SITE = {
    "X-Pushpipe-Site-Key": "acme-site-key-0123456789",
    "Origin": "https://shop.acme.example",
}
SIGNING_KEY = base64.urlsafe_b64encode(b"k" * 32).rstrip(b"=").decode()
SIGNING_SECRET_VALUE = {"active": "k1", "keys": {"k1": SIGNING_KEY}}
TENANTS = {
    "acme": {
        "report_keys": ["acme-report-key-0123456789"],
        "webhook_secret": "acme-webhook-secret-0123456789",
        "attribution_window_h": 24,
        "site": {
            "key": "acme-site-key-0123456789",
            "origins": ["https://shop.acme.example"],
            "subscribe_per_minute": 5,
        },
    },
    "globex": {
        "report_keys": ["globex-report-key-0123456789"],
        "webhook_secret": "globex-webhook-secret-0123456789",
        "attribution_window_h": 2,
        "site": {"key": "globex-site-key-0123456789", "origins": ["https://globex.example"]},
    },
}


@dataclass
class Provisioned:
    counters_table: str
    subscriptions_table: str
    pings_stream: str
    archive_bucket: str
    signing_secret: str
    tenant_secret: str

    def env(self) -> dict[str, str]:
        return {
            t.ENV_COUNTERS_TABLE: self.counters_table,
            t.ENV_SUBSCRIPTIONS_TABLE: self.subscriptions_table,
            t.ENV_PINGS_STREAM: self.pings_stream,
            t.ENV_ARCHIVE_BUCKET: self.archive_bucket,
            t.ENV_SIGNING_SECRET: self.signing_secret,
            t.ENV_TENANT_SECRET: self.tenant_secret,
        }


def provision(prefix: str = "test", shards: int | None = None) -> Provisioned:
    """Create the ping path's resources (stream, tables, secrets) in whatever AWS the
    default clients reach (moto)."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    p = Provisioned(
        counters_table=f"{prefix}-{t.COUNTERS_TABLE.name}",
        subscriptions_table=f"{prefix}-{t.SUBSCRIPTIONS_TABLE.name}",
        pings_stream=f"{prefix}-{t.PINGS_STREAM.name}",
        archive_bucket=f"{prefix}-{t.ARCHIVE_BUCKET.name}",
        signing_secret=f"{prefix}-{t.SIGNING_SECRET.name}",
        tenant_secret=f"{prefix}-{t.TENANT_SECRET.name}",
    )
    create_table(ddb, t.COUNTERS_TABLE, p.counters_table)
    create_table(ddb, t.SUBSCRIPTIONS_TABLE, p.subscriptions_table)
    kinesis = boto3.client("kinesis", region_name=REGION)
    kinesis.create_stream(StreamName=p.pings_stream, ShardCount=shards or t.PINGS_STREAM.shards)
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=p.archive_bucket)
    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name=p.signing_secret, SecretString=json.dumps(SIGNING_SECRET_VALUE))
    sm.create_secret(Name=p.tenant_secret, SecretString=json.dumps({"tenants": TENANTS}))
    return p


def set_env(p: Provisioned) -> None:
    os.environ.update(p.env())
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "PushpipeTest")


def signing_keys() -> SigningKeys:
    return SigningKeys.from_secret(SIGNING_SECRET_VALUE)


def token(
    tenant: str = "acme",
    campaign: str = "spring",
    variant: str = "a",
    subscriber: str | None = None,
    exp: int | None = None,
    keys: SigningKeys | None = None,
) -> tuple[str, str]:
    """(signed token, notification id) as the send path makes them."""
    subscriber = subscriber or f"sub-{uuid.uuid4().hex[:12]}"
    nid = notification_id(campaign, subscriber)
    claims = PingClaims(tenant, campaign, variant, nid, subscriber, exp or int(time.time()) + 3600)
    return sign(claims, keys or signing_keys()), nid


def read_stream(stream: str, client=None) -> Iterator[dict[str, Any]]:
    """Every record on every shard, from TRIM_HORIZON, tagged with its ``ShardId``."""
    client = client or boto3.client("kinesis", region_name=REGION)
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while it:
            out = client.get_records(ShardIterator=it, Limit=10000)
            for r in out["Records"]:
                yield {**r, "ShardId": shard["ShardId"]}
            if not out["Records"]:
                break
            it = out.get("NextShardIterator")


def serve_lambda(lambda_handler, seen: list | None = None):
    """A tiny HTTP API gateway on 127.0.0.1 in a thread: each request becomes a payload
    v2 event for ``lambda_handler``. Returns (server, base URL, seen requests); stop it
    with ``server.shutdown()``."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = [] if seen is None else seen
    # One invocation at a time, as in one Lambda container: Powertools' resolver keeps
    # the current event on the app object and is not safe across threads.
    container = threading.Lock()

    class Gateway(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else None
            path, _, query = self.path.partition("?")
            from urllib.parse import parse_qsl

            event = http_event(
                self.command, path, body, headers=dict(self.headers), query=dict(parse_qsl(query))
            )
            with container:
                resp = lambda_handler(event, FakeContext())
            seen.append((self.command, path, dict(self.headers), body, int(resp["statusCode"])))
            out = (resp.get("body") or "").encode()
            self.send_response(int(resp["statusCode"]))
            for k, v in (resp.get("headers") or {}).items():
                if k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_POST = do_OPTIONS = do_GET = do_DELETE = _handle

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", seen
