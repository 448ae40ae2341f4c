"""The send path's domain logic, free of Lambda and of AWS specifics.

``admit``   — an audience object appeared: claim it once, validate the header and the
              whole document (streaming), write the chain cursors, start the chains.
``run_chain`` — send one chain's recipients in batches until the invocation's time runs
              low, then hand the cursor to a fresh asynchronous invocation.
``sweep``   — re-start chains whose invocation died (their lease lapsed).

Ports (stores, streams, the sender) come in as arguments; see ``SendPorts``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Protocol

from pushpipe.audience import format as audience
from pushpipe.audience.format import CONTROL, CampaignHeader, Malformed, Recipient
from pushpipe.audience.payloads import PayloadBuilder
from pushpipe.audience.variants import assign
from pushpipe.push.models import Outcome, PushMessage, SendResult
from pushpipe.sending.runs import ChainState, Cursor, RunStore, run_id_for
from pushpipe.shared.aws import ArchiveStream, AudienceObjects, SelfInvoker
from pushpipe.shared.errors import AudienceChanged, AudienceRejected, Fenced, PayloadTooLarge
from pushpipe.shared.observability import logger
from pushpipe.shared.tokens import SigningKeys, notification_id

AUDIENCE_CHANGED = "audience file changed"


class Sender(Protocol):
    def send(
        self,
        messages: Sequence[PushMessage],
        *,
        dry_run: bool | None = None,
        budget_s: float | None = None,
    ) -> list[SendResult]:
        """Deliver (or, in a dry run, do every step but the final POST, except for
        allow-listed recipients) within ``budget_s`` seconds, classifying each outcome."""
        ...


# (tenant, campaign, {(variant, metric): n}, now, chain) -> TransactWriteItems entries
CounterItems = Callable[[str, str, Mapping[tuple[str, str], int], float, int], list[dict]]
# (tenant, campaign, {variant or "control": [subscriber ids]}, now, batch key) -> entries
ExposureItems = Callable[[str, str, Mapping[str, Sequence[str]], float, str], list[dict]]


@dataclass
class SendConfig:
    chains: int = 4
    batch_size: int = 500
    min_remaining_ms: int = 60_000
    dry_run: bool = False
    audience_prefix: str = "audiences/"
    sweep_grace_ms: int = 60_000


@dataclass
class SendPorts:
    runs: RunStore
    objects: AudienceObjects
    archive: ArchiveStream
    invoker: SelfInvoker
    sender: Sender
    signing_keys: SigningKeys
    ping_url: str
    # Entries that commit with the cursor, so campaign counters count each outcome
    # exactly once; each chain writes its own counter shard (no hot item).
    counter_items: CounterItems | None = None
    # (tenant, [subscriber ids]) for subscriptions the push service says are gone.
    on_pruned: Callable[[str, list[str]], object] | None = None
    # Who a campaign with a control group reached or held out (pushpipe/exposures.py),
    # committed with the cursor, so orders can be compared group by group.
    exposure_items: ExposureItems | None = None


@dataclass
class ChainResult:
    status: str  # done | handed-off | not-acquired | aborted | fenced
    sent_in_invocation: int = 0
    failed_in_invocation: int = 0
    batches: int = 0
    position: int = 0
    detail: str = ""


@dataclass
class AdmitResult:
    status: str  # started | duplicate | rejected | ignored | empty
    run_id: str = ""
    reason: str = ""
    total: int = 0
    chains: int = 0


# ---------------------------------------------------------------------------------------
# Warm-start caches. A Lambda container keeps module state between invocations; a chain's
# recursion usually lands on the container that just handed it off, which then continues
# the very same S3 stream and parser where they stopped: no download, no re-parse.
# ---------------------------------------------------------------------------------------
_HEADERS: OrderedDict[str, CampaignHeader] = OrderedDict()


@dataclass
class _OpenStream:
    body: IO[bytes]
    items: Iterator[Recipient | Malformed]
    next_position: int


_STREAMS: OrderedDict[tuple[str, int], _OpenStream] = OrderedDict()
_MAX_STREAMS = 16


def _remember(cache: OrderedDict, key, value, limit: int) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > limit:
        _, old = cache.popitem(last=False)
        if isinstance(old, _OpenStream):
            _close(old.body)


def _close(body: Any) -> None:
    # closing a dead stream must not hide the error that killed it
    with contextlib.suppress(Exception):
        body.close()


def forget_streams() -> None:
    """Drop every cached stream (tests use it to force a cold resume)."""
    while _STREAMS:
        _close(_STREAMS.popitem()[1].body)
    _HEADERS.clear()


def default_topic(campaign: str) -> str:
    """A campaign without its own ``topic`` still sends one (RFC 8030 §5.4, at most 32
    base64url characters): a push service then replaces a still-queued duplicate — such
    as one re-sent after a crash — instead of delivering it twice."""
    digest = hashlib.sha256(campaign.encode()).digest()[:24]
    return base64.urlsafe_b64encode(digest).decode()


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------
# Admission
# ---------------------------------------------------------------------------------------
def admit(
    bucket: str,
    key: str,
    etag: str,
    ports: SendPorts,
    config: SendConfig,
    lease_ms: int,
) -> AdmitResult:
    """Start a send for one audience object (idempotent per bucket, key and ETag)."""
    etag = etag.strip('"')
    if not key.startswith(config.audience_prefix):
        return AdmitResult("ignored", reason=f"{key} is not under {config.audience_prefix}")
    run_id = run_id_for(bucket, key, etag)
    if not ports.runs.claim_run(run_id, bucket, key, etag, lease_ms):
        logger.info("audience object already claimed", extra={"run_id": run_id, "key": key})
        return AdmitResult("duplicate", run_id)

    header: CampaignHeader | None = None
    try:
        body = ports.objects.open(bucket, key, etag)
        try:
            header = audience.read_header(body)
        finally:
            body.close()
        PayloadBuilder(header, ports.signing_keys, ports.ping_url).check_size()
        body = ports.objects.open(bucket, key, etag)
        try:
            stats = audience.scan_recipients(body)
        finally:
            body.close()
    except (AudienceRejected, PayloadTooLarge, AudienceChanged) as exc:
        reason = AUDIENCE_CHANGED if isinstance(exc, AudienceChanged) else str(exc)
        logger.warning("audience rejected", extra={"run_id": run_id, "key": key, "reason": reason})
        ports.runs.reject_run(
            run_id, reason, header.id if header else None, header.tenant if header else None
        )
        return AdmitResult("rejected", run_id, reason=reason)

    chains = max(1, min(config.chains, -(-stats.total // config.batch_size)))
    header_json = json.dumps(_header_dict(header), separators=(",", ":"))
    base = Cursor(run_id, header.id, bucket, key, etag, 0, chains)
    ports.runs.start_run(
        run_id,
        campaign=header.id,
        tenant=header.tenant,
        header_json=header_json,
        chains=chains,
        total=stats.total,
        malformed=stats.malformed,
        cursor_base=base,
    )
    if stats.malformed:
        logger.warning(
            "malformed recipients will be skipped",
            extra={
                "run_id": run_id,
                "malformed": stats.malformed,
                "reasons": stats.reasons,
                "examples": stats.examples,
            },
        )
    for chain in range(chains):
        ports.invoker.invoke(
            Cursor(**{**base.__dict__, "chain": chain, "position": chain}).to_event()
        )
    logger.info(
        "send started",
        extra={"run_id": run_id, "campaign": header.id, "total": stats.total, "chains": chains},
    )
    return AdmitResult("started", run_id, total=stats.total, chains=chains)


def _header_dict(h: CampaignHeader) -> dict:
    d = asdict(h)
    d["countries"] = sorted(h.countries)
    return d


def _header_from_json(text: str) -> CampaignHeader:
    d = json.loads(text)
    d["variants"] = tuple(audience.Variant(**v) for v in d.get("variants", ()))
    d["countries"] = frozenset(d.get("countries", ()))
    return CampaignHeader(**d)


# ---------------------------------------------------------------------------------------
# One chain
# ---------------------------------------------------------------------------------------
@dataclass
class _Batch:
    messages: list[PushMessage] = field(default_factory=list)
    variants: dict[str, str] = field(default_factory=dict)  # recipient id -> variant
    records: list[dict] = field(default_factory=list)  # archive records, no send needed
    counts: dict[str, int] = field(default_factory=dict)
    by_variant: dict[tuple[str, str], int] = field(default_factory=dict)
    taken: int = 0
    last_index: int = -1

    def count(self, metric: str, variant: str | None = None, n: int = 1) -> None:
        self.counts[metric] = self.counts.get(metric, 0) + n
        if variant is not None:
            self.by_variant[(variant, metric)] = self.by_variant.get((variant, metric), 0) + n


def _recipients(ports: SendPorts, cursor: Cursor, position: int) -> _OpenStream:
    key = (cursor.run_id, cursor.chain)
    cached = _STREAMS.pop(key, None)
    if cached is not None and cached.next_position == position:
        logger.debug("resuming the cached stream", extra={"position": position})
        return cached
    if cached is not None:
        _close(cached.body)
    started = time.perf_counter()
    body = ports.objects.open(cursor.bucket, cursor.key, cursor.etag)
    items = audience.iter_recipients(body, start=position, chain=cursor.chain, chains=cursor.chains)
    opened = _OpenStream(body, items, position)
    logger.info(
        "opened the audience stream (cold resume)",
        extra={"position": position, "open_ms": round((time.perf_counter() - started) * 1000, 1)},
    )
    return opened


def _fill_batch(
    stream: _OpenStream,
    header: CampaignHeader,
    builder: PayloadBuilder,
    cursor: Cursor,
    config: SendConfig,
    now: float,
) -> tuple[_Batch, bool]:
    """Take the chain's next ``batch_size`` recipients. Returns (batch, exhausted)."""
    batch = _Batch()
    run_ts = _utc(now)
    topic = header.topic or default_topic(header.id)
    for item in stream.items:
        batch.taken += 1
        batch.last_index = item.index
        if isinstance(item, Malformed):
            batch.count("rejected")
        elif item.muted or (header.countries and item.country not in header.countries):
            batch.count("skipped")
        else:
            variant = assign(header.id, item.id, header.variants, header.control_percent)
            if variant == CONTROL:
                batch.count("control", CONTROL)
                batch.records.append(_record(header, cursor, item.id, CONTROL, "control", run_ts))
            else:
                batch.variants[item.id] = variant
                batch.messages.append(
                    PushMessage(
                        recipient_id=item.id,
                        endpoint=item.endpoint,
                        p256dh=item.p256dh,
                        auth=item.auth,
                        payload=builder.build(item, variant, now),
                        ttl=header.ttl,
                        urgency=header.urgency,
                        topic=topic,
                    )
                )
        if batch.taken >= config.batch_size:
            return batch, False
    return batch, True


def _record(
    header: CampaignHeader,
    cursor: Cursor,
    subscriber: str,
    variant: str,
    outcome: str,
    ts: str,
    result: SendResult | None = None,
    payload: bytes | None = None,
) -> dict:
    return {
        "ts": ts,
        "tenant": header.tenant,
        "campaign": header.id,
        "variant": variant,
        "notification": notification_id(header.id, subscriber),
        "subscriber": subscriber,
        "run": cursor.run_id,
        "chain": cursor.chain,
        "outcome": outcome,
        "status": result.status if result else None,
        "reason": result.reason if result else None,
        "attempts": result.attempts if result else 0,
        "payload": payload.decode() if payload else None,
    }


def run_chain(
    cursor: Cursor,
    ports: SendPorts,
    config: SendConfig,
    remaining_ms: Callable[[], int],
    clock: Callable[[], float] = time.time,
    request_id: str = "",
) -> ChainResult:
    """Send this chain's recipients until done or until time runs low."""
    deadline = int(clock() * 1000) + remaining_ms()
    state = ports.runs.acquire(cursor.run_id, cursor.chain, deadline, request_id)
    if state is None:
        logger.info(
            "chain not acquired (owned by another invocation, or finished)",
            extra={"run_id": cursor.run_id, "chain": cursor.chain},
        )
        return ChainResult("not-acquired", position=cursor.position)
    try:
        return _run_owned_chain(cursor, state, ports, config, remaining_ms, clock)
    except Fenced as exc:
        _STREAMS.pop((cursor.run_id, cursor.chain), None)
        logger.warning("fenced: another invocation owns the chain", extra={"detail": str(exc)})
        return ChainResult("fenced", detail=str(exc))


def _run_owned_chain(
    cursor: Cursor,
    state: ChainState,
    ports: SendPorts,
    config: SendConfig,
    remaining_ms: Callable[[], int],
    clock: Callable[[], float],
) -> ChainResult:
    header = _HEADERS.get(cursor.run_id)
    if header is None:
        head = ports.runs.run_header(cursor.run_id)
        if head is None or not head.get("header"):
            raise AudienceRejected(f"run {cursor.run_id} has no admitted header")
        header = _header_from_json(head["header"])
        _remember(_HEADERS, cursor.run_id, header, 64)
    builder = PayloadBuilder(header, ports.signing_keys, ports.ping_url)
    dry_run = config.dry_run or header.dry_run
    result = ChainResult("handed-off", position=state.position)

    try:
        stream = _recipients(ports, cursor, state.position)
    except AudienceChanged:
        ports.runs.abort_run(cursor.run_id, AUDIENCE_CHANGED)
        return ChainResult("aborted", detail=AUDIENCE_CHANGED)

    while True:
        if ports.objects.etag(cursor.bucket, cursor.key) != cursor.etag:
            _close(stream.body)
            ports.runs.abort_run(cursor.run_id, AUDIENCE_CHANGED)
            logger.warning(AUDIENCE_CHANGED, extra={"run_id": cursor.run_id, "key": cursor.key})
            result.status, result.detail = "aborted", AUDIENCE_CHANGED
            result.position = state.position
            return result
        now = clock()
        try:
            batch, exhausted = _fill_batch(stream, header, builder, cursor, config, now)
        except AudienceRejected as exc:  # the object changed under an open stream
            ports.runs.fail_chain(cursor.run_id, state, str(exc))
            return ChainResult("aborted", detail=str(exc))

        # A safety net, not a pacing tool: retries that would outlive the invocation are
        # not made (those messages fail with the reason) instead of the whole batch being
        # killed by the timeout and sent again.
        safety_ms = min(5_000, config.min_remaining_ms // 10)
        budget_s = max(1.0, (remaining_ms() - safety_ms) / 1000)
        results = (
            ports.sender.send(batch.messages, dry_run=dry_run, budget_s=budget_s)
            if batch.messages
            else []
        )
        ts = _utc(clock())
        pruned: list[str] = []
        payloads = {m.recipient_id: m.payload for m in batch.messages}
        for r in results:
            variant = batch.variants[r.recipient_id]
            metric = {
                Outcome.SENT: "sent",
                Outcome.PRUNED: "pruned",
                Outcome.FAILED: "failed",
                Outcome.SKIPPED: "skipped",
            }[r.outcome]
            batch.count(metric, variant)
            if r.attempts > 1:
                batch.count("retried", None, r.attempts - 1)
            if r.outcome is Outcome.PRUNED:
                pruned.append(r.recipient_id)
            batch.records.append(
                _record(
                    header, cursor, r.recipient_id, variant, metric, ts, r, payloads[r.recipient_id]
                )
            )
        if batch.records:
            ports.archive.put(batch.records)

        new_position = batch.last_index + cursor.chains if batch.taken else state.position
        extra = []
        if ports.counter_items and batch.by_variant:
            extra = ports.counter_items(
                header.tenant, header.id, batch.by_variant, now, cursor.chain
            )
        if ports.exposure_items and header.control_percent:
            groups: dict[str, list[str]] = {}
            for rec in batch.records:
                if rec["outcome"] in ("sent", CONTROL):
                    groups.setdefault(rec["variant"], []).append(rec["subscriber"])
            if groups:
                batch_key = f"{cursor.run_id}.{cursor.chain}.{state.position}"
                extra = [
                    *extra,
                    *ports.exposure_items(header.tenant, header.id, groups, now, batch_key),
                ]
        time_low = remaining_ms() < config.min_remaining_ms
        ports.runs.commit(
            cursor.run_id,
            state,
            new_position,
            batch.counts,
            done=exhausted,
            release=time_low and not exhausted,
            extra_items=extra,
        )
        if pruned and ports.on_pruned:
            ports.on_pruned(header.tenant, pruned)
        result.batches += 1
        result.sent_in_invocation += batch.counts.get("sent", 0)
        result.failed_in_invocation += batch.counts.get("failed", 0)
        result.position = new_position
        stream.next_position = new_position

        if exhausted:
            _close(stream.body)
            ports.runs.finish_run_if_done(cursor.run_id)
            result.status = "done"
            logger.info("chain done", extra={"run_id": cursor.run_id, "chain": cursor.chain})
            return result
        if time_low:
            _remember(_STREAMS, (cursor.run_id, cursor.chain), stream, _MAX_STREAMS)
            ports.invoker.invoke(Cursor(**{**cursor.__dict__, "position": new_position}).to_event())
            logger.info(
                "handed off to a new invocation",
                extra={
                    "run_id": cursor.run_id,
                    "chain": cursor.chain,
                    "position": new_position,
                    "remaining_ms": remaining_ms(),
                },
            )
            return result


# ---------------------------------------------------------------------------------------
# Sweeper
# ---------------------------------------------------------------------------------------
def sweep(ports: SendPorts, config: SendConfig) -> list[Cursor]:
    """Re-invoke every running chain whose owner died (lease lapsed, no hand-off).

    A chain whose hand-off is merely slow gets a second invocation; the lease lets only
    one of the two run it."""
    stalled = ports.runs.stalled_chains(config.sweep_grace_ms)
    for cursor in stalled:
        logger.warning("resuming a stalled chain", extra=cursor.__dict__)
        ports.invoker.invoke(cursor.to_event())
    return stalled
