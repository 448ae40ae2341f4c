"""Writing audience files (the demo, tests and benchmarks make them).

Files are written as a stream of bytes so that a million-recipient file never exists
as one Python object.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any

from pushpipe.audience.format import FORMAT


def audience_chunks(
    campaign: Mapping[str, Any], recipients: Iterable[Mapping[str, Any]]
) -> Iterator[bytes]:
    """The audience document as a sequence of byte chunks (header first)."""
    head = json.dumps({"format": FORMAT, "campaign": campaign}, separators=(",", ":"))
    yield (head[:-1] + ',"recipients":[').encode()
    first = True
    buf: list[str] = []
    for r in recipients:
        buf.append(("" if first else ",") + json.dumps(r, separators=(",", ":")))
        first = False
        if len(buf) >= 1000:
            yield "".join(buf).encode()
            buf.clear()
    if buf:
        yield "".join(buf).encode()
    yield b"]}"


def write_audience(
    out: IO[bytes], campaign: Mapping[str, Any], recipients: Iterable[Mapping[str, Any]]
) -> int:
    n = 0
    for chunk in audience_chunks(campaign, recipients):
        out.write(chunk)
        n += len(chunk)
    return n


def audience_bytes(campaign: Mapping[str, Any], recipients: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(audience_chunks(campaign, recipients))


def recipient(sub_id: str, subscription: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": sub_id,
        "subscription": {"endpoint": subscription["endpoint"], "keys": dict(subscription["keys"])},
        **extra,
    }


def demo_campaign(campaign_id: str, tenant: str = "demo-shop", **extra: Any) -> dict[str, Any]:
    return {
        "id": campaign_id,
        "tenant": tenant,
        "message": {
            "title": "Spring sale: 20% off",
            "body": "Only this weekend, on everything in the shop.",
            "url": "https://shop.example/spring",
            "icon": "https://shop.example/icon.png",
            "localized": {"de": {"title": "Frühlingsangebot: 20% Rabatt"}},
        },
        "ttl": 86400,
        "urgency": "normal",
        "topic": "spring-sale",
        **extra,
    }
