"""Warm-start caches of the send path.

A Lambda container keeps module state between invocations; a chain's recursion usually
lands on the container that just handed it off, which then continues the very same S3
stream and parser where they stopped: no download, no re-parse. A cold container (or a
position that does not match) reopens the object and skips to the cursor.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import IO, Any

from pushpipe.audience import format as audience
from pushpipe.audience.format import CampaignHeader, Malformed, Recipient
from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy
from pushpipe.sending.ports import SendPorts
from pushpipe.sending.runs import Cursor
from pushpipe.shared.errors import AudienceRejected
from pushpipe.shared.observability import logger

_HEADERS: OrderedDict[str, CampaignHeader] = OrderedDict()
_MAX_HEADERS = 64


@dataclass
class OpenStream:
    body: IO[bytes]
    items: Iterator[Recipient | Malformed]
    next_position: int


_STREAMS: OrderedDict[tuple[str, int], OpenStream] = OrderedDict()
_MAX_STREAMS = 16


def _remember(cache: OrderedDict, key: Any, value: Any, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        _, old = cache.popitem(last=False)
        if isinstance(old, OpenStream):
            close(old.body)


def close(body: Any) -> None:
    # closing a dead stream must not hide the error that killed it
    with contextlib.suppress(Exception):
        body.close()


def forget_streams() -> None:
    """Drop every cached stream and header (tests use it to force a cold resume)."""
    while _STREAMS:
        close(_STREAMS.popitem()[1].body)
    _HEADERS.clear()


def header_json(h: CampaignHeader) -> str:
    d = asdict(h)
    d["countries"] = sorted(h.countries)
    return json.dumps(d, separators=(",", ":"))


def _header_from_json(text: str) -> CampaignHeader:
    d = json.loads(text)
    d["variants"] = tuple(audience.Variant(**v) for v in d.get("variants", ()))
    d["countries"] = frozenset(d.get("countries", ()))
    return CampaignHeader(**d)


def run_header(ports: SendPorts, run_id: str) -> CampaignHeader:
    """The header admission stored for the run (cached per container)."""
    header = _HEADERS.get(run_id)
    if header is None:
        head = ports.runs.run_header(run_id)
        if head is None or not head.get("header"):
            raise AudienceRejected(f"run {run_id} has no admitted header")
        header = _header_from_json(head["header"])
        _remember(_HEADERS, run_id, header, _MAX_HEADERS)
    return header


def recipients(
    ports: SendPorts, cursor: Cursor, position: int, policy: EndpointPolicy = BROWSERS_ONLY
) -> OpenStream:
    """The chain's recipients from ``position`` on: the cached stream if it stopped
    exactly there, otherwise the object reopened (pinned to the run's ETag)."""
    key = (cursor.run_id, cursor.chain)
    cached = _STREAMS.pop(key, None)
    if cached is not None and cached.next_position == position:
        logger.debug("resuming the cached stream", extra={"position": position})
        return cached
    if cached is not None:
        close(cached.body)
    started = time.perf_counter()
    body = ports.objects.open(cursor.bucket, cursor.key, cursor.etag)
    items = audience.iter_recipients(
        body, start=position, chain=cursor.chain, chains=cursor.chains, policy=policy
    )
    logger.info(
        "opened the audience stream (cold resume)",
        extra={"position": position, "open_ms": round((time.perf_counter() - started) * 1000, 1)},
    )
    return OpenStream(body, items, position)


def keep(cursor: Cursor, stream: OpenStream) -> None:
    """Keep the open stream for the hand-off's invocation (likely this container)."""
    _remember(_STREAMS, (cursor.run_id, cursor.chain), stream, _MAX_STREAMS)


def drop(cursor: Cursor) -> None:
    """Forget the chain's stream (a fenced invocation must not resume from it)."""
    _STREAMS.pop((cursor.run_id, cursor.chain), None)
