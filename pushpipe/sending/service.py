"""The send path's use cases, free of Lambda and of AWS specifics.

``admit``     — an audience object appeared: claim it once, validate the header and the
                whole document (streaming), write the chain cursors, start the chains.
``run_chain`` — send one chain's recipients in batches until the invocation's time runs
                low, then hand the cursor to a fresh asynchronous invocation.
``sweep``     — re-start chains whose invocation died (their lease lapsed).

Ports (stores, streams, the sender) come in as arguments: ``pushpipe.sending.ports``.
A batch is built and tallied in ``pushpipe.sending.batch``; the warm-start caches of
headers and open streams are in ``pushpipe.sending.streams``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

from pushpipe.audience import format as audience
from pushpipe.audience.format import CampaignHeader
from pushpipe.audience.keys import tenant_of
from pushpipe.audience.payloads import PayloadBuilder
from pushpipe.sending import streams
from pushpipe.sending.batch import Batch, default_topic, fill_batch, utc
from pushpipe.sending.ports import SendConfig, SendPorts, SharesThrottles
from pushpipe.sending.runs import FAILED, ChainState, Cursor, run_id_for
from pushpipe.sending.streams import OpenStream, forget_streams
from pushpipe.shared.errors import (
    AudienceChanged,
    AudienceRejected,
    Fenced,
    PayloadTooLarge,
    RunStopped,
    StoreError,
)
from pushpipe.shared.observability import logger

__all__ = [
    "AdmitResult",
    "ChainResult",
    "Cursor",
    "SendConfig",
    "SendPorts",
    "admit",
    "default_topic",
    "forget_streams",
    "run_chain",
    "sweep",
]

AUDIENCE_CHANGED = "audience file changed"


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
# Admission
# ---------------------------------------------------------------------------------------
def _check_owner(key: str, header: CampaignHeader, config: SendConfig) -> None:
    """A file is sent for the tenant whose prefix it lies under, and must say so."""
    owner = tenant_of(key, config.audience_prefix)
    if owner is None:
        raise AudienceRejected(
            f"{key} is not under a tenant's prefix: drop audience files under "
            f"{config.audience_prefix}<tenant>/ (the tenant the header names)"
        )
    if header.tenant != owner:
        raise AudienceRejected(
            f"the file lies under tenant {owner!r}'s prefix but its header names tenant "
            f"{header.tenant!r}: a tenant sends only from its own prefix"
        )


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
        with _content_errors(key):
            with _opened(ports, bucket, key, etag) as body:
                header = audience.read_header(body)
            _check_owner(key, header, config)
            PayloadBuilder(header, ports.signing_keys, ports.ping_url).check_size()
            with _opened(ports, bucket, key, etag) as body:
                stats = audience.scan_recipients(body, config.endpoint_policy)
            if stats.total == 0 or stats.ambiguous:
                with _opened(ports, bucket, key, etag) as body:
                    audience.check_structure(body)
        chains = max(1, min(config.chains, -(-stats.total // config.batch_size)))
        base = Cursor(run_id, header.id, bucket, key, etag, 0, chains)
        _start(ports, header, stats, base)
    except (AudienceRejected, PayloadTooLarge, AudienceChanged) as exc:
        reason = AUDIENCE_CHANGED if isinstance(exc, AudienceChanged) else str(exc)
        logger.warning("audience rejected", extra={"run_id": run_id, "key": key, "reason": reason})
        # the run belongs to the tenant whose prefix the file lies under, never to the
        # tenant a foreign file claims to be
        owner = tenant_of(key, config.audience_prefix)
        ports.runs.reject_run(run_id, reason, header.id if header else None, owner)
        return AdmitResult("rejected", run_id, reason=reason)
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


@contextmanager
def _content_errors(key: str) -> Iterator[None]:
    """Whatever is in the file ends as ``AudienceRejected`` with a reason: an error on
    content that no rule foresaw is one too (never a crash that leaves the run
    admitting). Storage errors propagate, so the delivery is retried."""
    try:
        yield
    except (AudienceRejected, PayloadTooLarge, AudienceChanged, StoreError, OSError):
        raise
    except Exception as exc:
        logger.exception("audience file could not be read", extra={"key": key})
        raise AudienceRejected(
            f"the audience file could not be read: {type(exc).__name__}: {str(exc)[:200]}"
        ) from exc


@contextmanager
def _opened(ports: SendPorts, bucket: str, key: str, etag: str) -> Iterator[IO[bytes]]:
    body = ports.objects.open(bucket, key, etag)
    try:
        yield body
    finally:
        body.close()


def _start(
    ports: SendPorts, header: CampaignHeader, stats: audience.AudienceStats, base: Cursor
) -> None:
    try:
        ports.runs.start_run(
            base.run_id,
            campaign=header.id,
            tenant=header.tenant,
            header_json=streams.header_json(header),
            chains=base.chains,
            total=stats.total,
            malformed=stats.malformed,
            cursor_base=base,
            rejections=dict(sorted(stats.reasons.items(), key=lambda kv: -kv[1])[:10]),
        )
    except StoreError as exc:
        if exc.code != "ValidationException":  # e.g. an item over 400 KB: the content's
            raise
        raise AudienceRejected(f"the run could not be recorded: {exc}") from exc


# ---------------------------------------------------------------------------------------
# One chain
# ---------------------------------------------------------------------------------------
def run_chain(
    cursor: Cursor,
    ports: SendPorts,
    config: SendConfig,
    remaining_ms: Callable[[], int],
    clock: Callable[[], float] = time.time,
    request_id: str = "",
    sleep: Callable[[float], None] = time.sleep,
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
        return _run_owned_chain(cursor, state, ports, config, remaining_ms, clock, sleep)
    except RunStopped as exc:  # another chain aborted the run; this batch is recorded
        streams.drop(cursor)
        logger.warning("the run stopped while this chain was sending", extra={"detail": str(exc)})
        return ChainResult("aborted", detail=str(exc))
    except Fenced as exc:
        streams.drop(cursor)
        logger.warning("fenced: another invocation owns the chain", extra={"detail": str(exc)})
        return ChainResult("fenced", detail=str(exc))


@dataclass
class _Leg:
    """One invocation's hold on a chain: what it sends, from where, until when."""

    cursor: Cursor
    state: ChainState
    header: CampaignHeader
    builder: PayloadBuilder
    stream: OpenStream
    ports: SendPorts
    config: SendConfig
    remaining_ms: Callable[[], int]
    clock: Callable[[], float]
    sleep: Callable[[float], None]

    @property
    def dry_run(self) -> bool:
        return self.config.dry_run or self.header.dry_run


def _run_owned_chain(
    cursor: Cursor,
    state: ChainState,
    ports: SendPorts,
    config: SendConfig,
    remaining_ms: Callable[[], int],
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> ChainResult:
    try:
        header = streams.run_header(ports, cursor.run_id)
    except AudienceRejected as exc:  # nothing to resume from: fail it, once and for all
        ports.runs.abort_run(cursor.run_id, str(exc), state=FAILED)
        logger.error("chain cannot resume", extra={"run_id": cursor.run_id, "reason": str(exc)})
        return ChainResult("aborted", detail=str(exc))
    try:
        stream = streams.recipients(ports, cursor, state.position, config.endpoint_policy)
    except AudienceChanged:
        ports.runs.abort_run(cursor.run_id, AUDIENCE_CHANGED)
        return ChainResult("aborted", detail=AUDIENCE_CHANGED)
    leg = _Leg(
        cursor,
        state,
        header,
        PayloadBuilder(header, ports.signing_keys, ports.ping_url),
        stream,
        ports,
        config,
        remaining_ms,
        clock,
        sleep,
    )
    result = ChainResult("handed-off", position=state.position)
    while True:
        if ports.objects.etag(cursor.bucket, cursor.key) != cursor.etag:
            return _abort_changed(leg, result)
        now = clock()
        try:
            batch, exhausted = fill_batch(
                stream, header, leg.builder, cursor, config.batch_size, now, state.carry
            )
        except AudienceRejected as exc:  # the object changed under an open stream
            ports.runs.fail_chain(cursor.run_id, state, str(exc))
            return ChainResult("aborted", detail=str(exc))
        _send(leg, batch)
        time_low = remaining_ms() < config.min_remaining_ms
        done = exhausted and not batch.carry
        _commit(leg, batch, now, done=done, release=time_low and not done, result=result)
        if done:
            return _finish(leg, result)
        if time_low:
            return _hand_off(leg, result)
        if exhausted:  # only carried recipients are left: give their services a moment
            pause_s = config.carry_pause_s * max(e["n"] for e in batch.carry)
            leg.sleep(min(pause_s, max(0.0, (remaining_ms() - config.min_remaining_ms) / 1000)))


def _abort_changed(leg: _Leg, result: ChainResult) -> ChainResult:
    streams.close(leg.stream.body)
    leg.ports.runs.abort_run(leg.cursor.run_id, AUDIENCE_CHANGED)
    logger.warning(AUDIENCE_CHANGED, extra={"run_id": leg.cursor.run_id, "key": leg.cursor.key})
    result.status, result.detail = "aborted", AUDIENCE_CHANGED
    result.position = leg.state.position
    return result


def _send(leg: _Leg, batch: Batch) -> None:
    """Send the batch's messages and tally the answers into the batch."""
    # A safety net, not a pacing tool: retries that would outlive the invocation are
    # not made (those messages fail with the reason) instead of the whole batch being
    # killed by the timeout and sent again.
    safety_ms = min(5_000, leg.config.min_remaining_ms // 10)
    budget_s = max(1.0, (leg.remaining_ms() - safety_ms) / 1000)
    sender, run_id = leg.ports.sender, leg.cursor.run_id
    # origins another chain of the run found throttling hold this chain back too
    shares = sender if batch.messages and isinstance(sender, SharesThrottles) else None
    known = leg.ports.runs.origin_throttles(run_id) if shares else {}
    if shares and known:
        shares.adopt_throttles(known)
    results = (
        sender.send(batch.messages, dry_run=leg.dry_run, budget_s=budget_s)
        if batch.messages
        else []
    )
    if shares:
        found = {o: u for o, u in shares.throttles().items() if u > known.get(o, 0.0) + 1.0}
        leg.ports.runs.note_throttles(run_id, found)
    batch.tally(results, leg.header, leg.cursor, utc(leg.clock()))
    if batch.records:
        leg.ports.archive.put(batch.records)


def _transaction_items(leg: _Leg, batch: Batch, now: float) -> list[dict]:
    """The DynamoDB entries (counters, exposures) that commit with the cursor."""
    ports, header, cursor = leg.ports, leg.header, leg.cursor
    items: list[dict] = []
    if ports.counter_items and batch.by_variant:
        items += ports.counter_items(header.tenant, header.id, batch.by_variant, now, cursor.chain)
    if ports.exposure_items and header.control_percent:
        groups = batch.reached()
        if groups:
            batch_key = f"{cursor.run_id}.{cursor.chain}.{leg.state.position}"
            items += ports.exposure_items(header.tenant, header.id, groups, now, batch_key)
    return items


def _commit(
    leg: _Leg, batch: Batch, now: float, *, done: bool, release: bool, result: ChainResult
) -> None:
    """Advance the cursor with the batch's counts (fenced), then prune what is gone."""
    cursor = leg.cursor
    new_position = batch.last_index + cursor.chains if batch.taken else leg.state.position
    extra = _transaction_items(leg, batch, now)
    leg.ports.runs.commit(
        cursor.run_id,
        leg.state,
        new_position,
        batch.counts,
        done=done,
        release=release,
        extra_items=extra,
        carry=batch.carry,
    )
    if batch.pruned and leg.ports.on_pruned:
        leg.ports.on_pruned(leg.header.tenant, batch.pruned)
    result.batches += 1
    result.sent_in_invocation += batch.counts.get("sent", 0)
    result.failed_in_invocation += batch.counts.get("failed", 0)
    result.position = new_position
    leg.stream.next_position = new_position


def _finish(leg: _Leg, result: ChainResult) -> ChainResult:
    streams.close(leg.stream.body)
    leg.ports.runs.finish_run_if_done(leg.cursor.run_id)
    result.status = "done"
    logger.info("chain done", extra={"run_id": leg.cursor.run_id, "chain": leg.cursor.chain})
    return result


def _hand_off(leg: _Leg, result: ChainResult) -> ChainResult:
    cursor = leg.cursor
    streams.keep(cursor, leg.stream)
    leg.ports.invoker.invoke(Cursor(**{**cursor.__dict__, "position": result.position}).to_event())
    logger.info(
        "handed off to a new invocation",
        extra={
            "run_id": cursor.run_id,
            "chain": cursor.chain,
            "position": result.position,
            "remaining_ms": leg.remaining_ms(),
        },
    )
    return result


# ---------------------------------------------------------------------------------------
# Sweeper
# ---------------------------------------------------------------------------------------
def sweep(ports: SendPorts, config: SendConfig) -> list[Cursor]:
    """Re-invoke every running chain whose owner died (lease lapsed, no hand-off), and
    fail every admission that can no longer finish (its event's retries are over).

    A chain whose hand-off is merely slow gets a second invocation; the lease lets only
    one of the two run it."""
    for run_id in ports.runs.stale_admissions(config.admission_stale_ms):
        reason = (
            "admission did not finish: the audience event was retried and given up (see "
            "the audience queue's dead-letter queue); drop the file again to send it"
        )
        ports.runs.abort_run(run_id, reason, state=FAILED)
        logger.error("stale admission failed", extra={"run_id": run_id})
    stalled = ports.runs.stalled_chains(config.sweep_grace_ms)
    for cursor in stalled:
        logger.warning("resuming a stalled chain", extra=cursor.__dict__)
        ports.invoker.invoke(cursor.to_event())
    return stalled
