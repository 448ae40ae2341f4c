"""Writing audience documents: the format as a stream of byte chunks, and the S3 writer
that creates an audience object once.

``AudienceWriter.write_once`` streams the object (multipart upload in parts of
``PART_BYTES``; one ``PutObject`` when it is small) with ``If-None-Match: *``: however
often a write is retried, only the first creates the object, and the send path admits one
object once (run id = bucket, key, ETag). Used by approval releases and scheduled
campaigns alike.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
from botocore.exceptions import ClientError

from pushpipe.audience.format import FORMAT
from pushpipe.shared.errors import StoreError

PART_BYTES = 8 * 1024 * 1024  # S3 needs at least 5 MiB per part but the last


def audience_chunks(
    campaign: Mapping[str, Any], recipients: Iterable[Mapping[str, Any]]
) -> Iterator[bytes]:
    """An audience document (header first, as the format requires) as byte chunks."""
    head = json.dumps({"format": FORMAT, "campaign": campaign}, separators=(",", ":"))
    yield (head[:-1] + ',"recipients":[').encode()
    sep = ""
    buf: list[str] = []
    for r in recipients:
        buf.append(sep + json.dumps(r, separators=(",", ":"), ensure_ascii=False))
        sep = ","
        if len(buf) >= 1000:
            yield "".join(buf).encode()
            buf.clear()
    if buf:
        yield "".join(buf).encode()
    yield b"]}"


class Counter:
    """Counts what passes through it."""

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = items
        self.n = 0

    def __iter__(self) -> Iterator[Any]:
        for item in self._items:
            self.n += 1
            yield item


@dataclass
class Written:
    key: str
    etag: str
    created: bool  # False: the object was already there (an earlier release wrote it)
    size: int = 0


class AudienceSink(Protocol):
    """Where audience documents are written once (``AudienceWriter`` in S3)."""

    def write_once(self, bucket: str, key: str, chunks: Iterable[bytes]) -> Written: ...


class AudienceWriter:
    """Writes an object once (``If-None-Match: *``), streaming it in parts."""

    def __init__(self, client: Any = None, part_bytes: int = PART_BYTES) -> None:
        self.client = client or boto3.client("s3")
        self.part_bytes = part_bytes

    def existing(self, bucket: str, key: str) -> str | None:
        try:
            return self.client.head_object(Bucket=bucket, Key=key)["ETag"].strip('"')
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreError("HeadObject", _code(exc), str(exc)) from exc

    def write_once(self, bucket: str, key: str, chunks: Iterable[bytes]) -> Written:
        etag = self.existing(bucket, key)
        if etag is not None:
            return Written(key, etag, created=False)
        buf = bytearray()
        upload_id: str | None = None
        parts: list[dict] = []
        size = 0
        try:
            for chunk in chunks:
                buf += chunk
                size += len(chunk)
                if len(buf) >= self.part_bytes:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=bucket, Key=key, ContentType="application/json"
                        )["UploadId"]
                    parts.append(self._part(bucket, key, upload_id, len(parts) + 1, bytes(buf)))
                    buf.clear()
            if upload_id is None:
                got = self.client.put_object(
                    Bucket=bucket,
                    Key=key,
                    Body=bytes(buf),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
                return Written(key, got["ETag"].strip('"'), created=True, size=size)
            if buf:
                parts.append(self._part(bucket, key, upload_id, len(parts) + 1, bytes(buf)))
            got = self.client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
            return Written(key, got["ETag"].strip('"'), created=True, size=size)
        except ClientError as exc:
            self._abort(bucket, key, upload_id)
            if _code(exc) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                etag = self.existing(bucket, key)
                if etag is not None:
                    return Written(key, etag, created=False)
            raise StoreError("write audience", _code(exc), str(exc)) from exc
        except BaseException:
            self._abort(bucket, key, upload_id)
            raise

    def _part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> dict:
        got = self.client.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        return {"ETag": got["ETag"], "PartNumber": number}

    def _abort(self, bucket: str, key: str, upload_id: str | None) -> None:
        if upload_id is None:
            return
        # on failure, the bucket's lifecycle rule removes the incomplete upload anyway
        with contextlib.suppress(ClientError):
            self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "?"))
