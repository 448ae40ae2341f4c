"""AWS adapters used by the send path. Each takes an optional client and falls back to a
real boto3 client; ``ClientError`` becomes a domain error that says what failed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import IO, Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.shared.errors import AudienceChanged, StoreError


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))


class AudienceObjects:
    """Reads audience objects from S3, pinned to an ETag (``IfMatch``)."""

    def __init__(self, client: Any = None) -> None:
        self.client = client or boto3.client("s3")

    def etag(self, bucket: str, key: str) -> str | None:
        try:
            return self.client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError("HeadObject", _code(exc), str(exc)) from exc

    def open(self, bucket: str, key: str, etag: str) -> IO[bytes]:
        """A streaming body of exactly the pinned content, or ``AudienceChanged``."""
        try:
            got = self.client.get_object(Bucket=bucket, Key=key, IfMatch=f'"{etag}"')
        except ClientError as exc:
            if _code(exc) in ("PreconditionFailed", "412", "NoSuchKey", "404"):
                raise AudienceChanged(key, etag, self.etag(bucket, key)) from exc
            raise StoreError("GetObject", _code(exc), str(exc)) from exc
        return got["Body"]


class ArchiveStream:
    """Kinesis Data Firehose ``PutRecordBatch``, newline-delimited JSON records.

    Respects the API limits (500 records, 4 MiB per call) and retries the records a
    partial failure reports, so no record is silently dropped.
    """

    MAX_RECORDS = 500
    MAX_BYTES = 4 * 1024 * 1024 - 64 * 1024
    ATTEMPTS = 4

    def __init__(self, stream: str, client: Any = None) -> None:
        self.stream = stream
        self.client = client or boto3.client("firehose")

    def put(self, records: Iterable[dict]) -> int:
        chunk: list[bytes] = []
        size = 0
        sent = 0
        for record in records:
            data = (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode()
            if chunk and (len(chunk) == self.MAX_RECORDS or size + len(data) > self.MAX_BYTES):
                sent += self._put_chunk(chunk)
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        if chunk:
            sent += self._put_chunk(chunk)
        return sent

    def _put_chunk(self, chunk: Sequence[bytes]) -> int:
        pending = list(chunk)
        for _ in range(self.ATTEMPTS):
            try:
                got = self.client.put_record_batch(
                    DeliveryStreamName=self.stream, Records=[{"Data": d} for d in pending]
                )
            except ClientError as exc:
                raise StoreError("PutRecordBatch", _code(exc), str(exc)) from exc
            if not got.get("FailedPutCount"):
                return len(chunk)
            pending = [
                d
                for d, r in zip(pending, got["RequestResponses"], strict=True)
                if r.get("ErrorCode")
            ]
        raise StoreError("PutRecordBatch", "PartialFailure", f"{len(pending)} records not accepted")


class SelfInvoker:
    """Asynchronous (``InvocationType=Event``) invocation of a function."""

    def __init__(self, function_name: str, client: Any = None) -> None:
        self.function_name = function_name
        self.client = client or boto3.client("lambda")

    def invoke(self, event: dict) -> None:
        try:
            got = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="Event",
                Payload=json.dumps(event).encode(),
            )
        except ClientError as exc:
            raise StoreError("Invoke", _code(exc), str(exc)) from exc
        if got.get("StatusCode") != 202:
            raise StoreError("Invoke", str(got.get("StatusCode")), "async invoke not accepted")
