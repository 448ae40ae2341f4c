"""Protocols for the AWS adapters every feature shares (``pushpipe.shared.aws``).

Domain code types its ports with these, so a fake or another store can stand in without
subclassing the boto3 adapter; the adapters satisfy them structurally.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import IO, Protocol


class AudienceSource(Protocol):
    """Audience objects, pinned to the ETag a run (or a count) started on."""

    def etag(self, bucket: str, key: str) -> str | None: ...

    def open(self, bucket: str, key: str, etag: str) -> IO[bytes]:
        """A stream of the object; raises ``AudienceChanged`` if the ETag moved."""
        ...


class RecordArchive(Protocol):
    """The audit archive of every outcome (Firehose in AWS)."""

    def put(self, records: Iterable[dict]) -> int: ...


class Invoker(Protocol):
    """Starts an asynchronous invocation of the function itself (recursion, hand-offs)."""

    def invoke(self, event: dict) -> None: ...
