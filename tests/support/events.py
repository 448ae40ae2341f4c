"""The events each trigger hands to a function, from the recorded shapes in ``tests/events/``.

Every builder starts from one JSON file there (the event as AWS delivers it: an S3
notification inside an SQS message with its URL-encoded key, S3's test event, an API
Gateway HTTP API v2.0 request, a Kinesis batch, the async chain hand-off, the schedules)
and changes only what a test is about, so a test event cannot drift from the real shape
without the file showing it. ``tests/integration/test_events.py`` sends every file,
unchanged or filled in, through the real handler in the local runtime.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
import time
import uuid
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, urlencode

EVENTS = Path(__file__).resolve().parents[1] / "events"


@cache
def _recorded(name: str) -> dict[str, Any]:
    path = EVENTS / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in EVENTS.glob("*.json"))
        raise FileNotFoundError(f"no event {name!r} in {EVENTS} (there are: {known})")
    return json.loads(path.read_text())


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/events/<name>.json``."""
    return copy.deepcopy(_recorded(name))


def event_names() -> list[str]:
    return sorted(p.stem for p in EVENTS.glob("*.json"))


def sqs_s3_event(bucket: str, key: str, etag: str, size: int = 0) -> dict[str, Any]:
    """The audience queue's message for an object created at ``key``: S3 URL-encodes the
    key in its notification (spaces as ``+``), as the recorded event shows."""
    event = load_event("sqs_s3_object_created")
    record = event["Records"][0]
    body = json.loads(record["body"])
    s3 = body["Records"][0]["s3"]
    s3["bucket"]["name"] = bucket
    s3["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    s3["object"].update(key=quote_plus(key, safe="/"), eTag=etag.strip('"'), size=size)
    record["body"] = json.dumps(body)
    record["messageId"] = str(uuid.uuid4())
    return event


def http_event(
    method: str,
    path: str,
    body: str | bytes | dict | list | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway HTTP API payload v2.0 request (from ``apigw_http_v2.json``)."""
    event = load_event("apigw_http_v2")
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    if isinstance(body, dict | list):
        body = json.dumps(body)
        hdrs.setdefault("content-type", "application/json")
    b64 = isinstance(body, bytes)
    ctx = event["requestContext"]
    ctx["http"].update(method=method, path=path, sourceIp="127.0.0.1", userAgent="pytest")
    ctx.update(requestId=uuid.uuid4().hex, timeEpoch=int(time.time() * 1000))
    event.update(
        rawPath=path,
        rawQueryString=urlencode(query or {}),
        headers=hdrs,
        queryStringParameters=query or None,
        body=base64.b64encode(body).decode() if isinstance(body, bytes) else body,
        isBase64Encoded=b64,
    )
    return event


def kinesis_event(
    records: Iterable[dict[str, Any]], stream_arn: str | None = None
) -> dict[str, Any]:
    """A Kinesis batch (from ``kinesis_batch.json``) carrying ``GetRecords`` output
    records (their ``ShardId`` added by ``read_stream``)."""
    template = load_event("kinesis_batch")["Records"][0]
    out = []
    for r in records:
        rec = copy.deepcopy(template)
        rec["kinesis"].update(
            partitionKey=r["PartitionKey"],
            sequenceNumber=r["SequenceNumber"],
            data=base64.b64encode(r["Data"]).decode(),
            approximateArrivalTimestamp=time.time(),
        )
        rec["eventID"] = f"{r.get('ShardId', 'shardId-000000000000')}:{r['SequenceNumber']}"
        if stream_arn:
            rec["eventSourceARN"] = stream_arn
        out.append(rec)
    return {"Records": out}


class FakeContext:
    """The Lambda context a handler reads: names, the request id, the time left."""

    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req"

    def __init__(self, timeout_ms: int = 60_000) -> None:
        self._deadline = time.time() * 1000 + timeout_ms
        self.aws_request_id = secrets.token_hex(8)

    def get_remaining_time_in_millis(self) -> int:
        return int(self._deadline - time.time() * 1000)
