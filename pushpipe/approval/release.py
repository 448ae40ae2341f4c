"""Releasing an approved audience to the send path: write it, once, under the audience
prefix, where its S3 notification starts the send like any dropped file. The object is
written once by ``pushpipe.audience.writer.AudienceWriter``: however often a release is
retried (a double click, Lambda's async retry, the sweeper), only the first write
creates the object, and the send path admits one object once. Recipients come from an
audience file (streamed with ijson, pinned to the ETag that was counted) or from a
segment query over the subscriptions (streamed pages).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson

from pushpipe.audience.format import (
    Malformed,
    check_structure,
    iter_recipients,
    read_header,
    scan_recipients,
)
from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy
from pushpipe.shared.errors import AudienceRejected
from pushpipe.subscriptions.store import SubscriptionStore


# --- recipients ---------------------------------------------------------------------------
def file_recipients(
    stream: IO[bytes], policy: EndpointPolicy = BROWSERS_ONLY
) -> Iterator[dict[str, Any]]:
    """The well-formed recipients of an audience file, as audience-file entries.
    (Malformed ones were counted when the request was made and are left out.)"""
    for item in iter_recipients(stream, policy=policy):
        if isinstance(item, Malformed):
            continue
        entry: dict[str, Any] = {
            "id": item.id,
            "subscription": {
                "endpoint": item.endpoint,
                "keys": {"p256dh": item.p256dh, "auth": item.auth},
            },
        }
        if item.language:
            entry["language"] = item.language
        if item.country:
            entry["country"] = item.country
        if item.muted:
            entry["muted"] = True
        yield entry


def segment_recipients(
    store: SubscriptionStore,
    tenant: str,
    topics: list[str],
    countries: list[str],
    languages: list[str],
) -> Iterator[dict[str, Any]]:
    for sub in store.segment(tenant, topics or None, countries or None, languages or None):
        yield sub.as_recipient()


def count_segment(
    store: SubscriptionStore,
    tenant: str,
    topics: list[str],
    countries: list[str],
    languages: list[str],
) -> int:
    """Subscribers of a segment, counted page by page (nothing is kept)."""
    return sum(
        1 for _ in store.segment(tenant, topics or None, countries or None, languages or None)
    )


@dataclass
class FileCount:
    total: int
    malformed: int


def count_file(open_stream, policy: EndpointPolicy = BROWSERS_ONLY) -> FileCount:
    """Validate an audience file and count its recipients in one streaming pass each
    for the header and the recipients (``AudienceRejected`` if it is not one)."""
    body = open_stream()
    try:
        read_header(body)
    finally:
        body.close()
    body = open_stream()
    try:
        stats = scan_recipients(body, policy)
    except ijson.JSONError as exc:  # pragma: no cover - iter_recipients maps these
        raise AudienceRejected(str(exc)) from exc
    finally:
        body.close()
    if stats.total == 0 or stats.ambiguous:
        body = open_stream()
        try:
            check_structure(body)
        finally:
            body.close()
    return FileCount(stats.total, stats.malformed)
