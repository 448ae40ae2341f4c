"""What the send path needs from the outside world, typed as Protocols.

The domain code (``pushpipe.sending.service``) receives a ``SendPorts`` and never builds
a client itself; ``pushpipe.sending.wiring`` fills it with the AWS adapters
(``RunStore``, ``pushpipe.shared.aws``) and the Web Push sender, and the unit tests with
the same adapters against moto.

One storage shape does cross the boundary, on purpose: ``CounterItems`` and
``ExposureItems`` return DynamoDB ``TransactWriteItems`` entries. The chain passes them,
unopened, to ``RunLedger.commit``, which writes them in the same transaction as the
cursor, so a batch's counters and exposures count exactly once however often the batch
is retried. Only a ledger that is itself a DynamoDB transaction can honour that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Protocol, runtime_checkable

from pushpipe import topology as t
from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy, deployed_policy
from pushpipe.push.models import PushMessage, SendResult
from pushpipe.sending.runs import ChainState, Cursor
from pushpipe.shared.ports import AudienceSource, Invoker, RecordArchive
from pushpipe.shared.settings import SendSettings, default_of
from pushpipe.shared.tokens import SigningKeys


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


@runtime_checkable
class SharesThrottles(Protocol):
    """A sender that holds back throttled push-service origins and can be told about
    the throttles other chains of the run met (``WebPushSender``)."""

    def throttles(self) -> dict[str, float]: ...

    def adopt_throttles(self, throttles: dict[str, float]) -> None: ...


class RunLedger(Protocol):
    """Runs and chain cursors, fenced by epoch and lease (``RunStore`` in DynamoDB)."""

    def claim_run(self, run_id: str, bucket: str, key: str, etag: str, lease_ms: int) -> bool: ...

    def reject_run(
        self, run_id: str, reason: str, campaign: str | None = None, tenant: str | None = None
    ) -> None: ...

    def start_run(
        self,
        run_id: str,
        *,
        campaign: str,
        tenant: str,
        header_json: str,
        chains: int,
        total: int,
        malformed: int,
        cursor_base: Cursor,
        rejections: dict[str, int] | None = None,
    ) -> None: ...

    def run_header(self, run_id: str) -> dict | None: ...

    def acquire(
        self, run_id: str, chain: int, deadline_ms: int, owner: str = ""
    ) -> ChainState | None: ...

    def commit(
        self,
        run_id: str,
        state: ChainState,
        new_position: int,
        counts: Mapping[str, int],
        *,
        done: bool = False,
        release: bool = False,
        extra_items: Iterable[dict] = (),
        carry: list[dict] | None = None,
    ) -> None:
        """Advance the cursor, store the ``carry`` (recipients not delivered yet), add
        ``counts`` and write ``extra_items`` (DynamoDB
        TransactWriteItems entries) in one transaction; raises ``Fenced`` if a newer
        invocation owns the chain."""
        ...

    def fail_chain(self, run_id: str, state: ChainState, reason: str) -> None: ...

    def abort_run(self, run_id: str, reason: str, state: str = ...) -> None: ...

    def finish_run_if_done(self, run_id: str) -> str | None: ...

    def stale_admissions(self, older_than_ms: int) -> list[str]: ...

    def origin_throttles(self, run_id: str) -> dict[str, float]: ...

    def note_throttles(self, run_id: str, throttles: dict[str, float]) -> None: ...

    def stalled_chains(self, grace_ms: int, index: str = ...) -> list[Cursor]: ...


# (tenant, campaign, {(variant, metric): n}, now, chain) -> TransactWriteItems entries
CounterItems = Callable[[str, str, Mapping[tuple[str, str], int], float, int], list[dict]]
# (tenant, campaign, {variant or "control": [subscriber ids]}, now, batch key) -> entries
ExposureItems = Callable[[str, str, Mapping[str, Sequence[str]], float, str], list[dict]]

_default = partial(default_of, SendSettings)


@dataclass
class SendConfig:
    """The send path's tunables; defaults are the settings' (``SendSettings``)."""

    chains: int = _default("chains")
    batch_size: int = _default("batch_size")
    min_remaining_ms: int = _default("min_remaining_ms")
    dry_run: bool = _default("dry_run")
    audience_prefix: str = _default("audience_prefix")
    sweep_grace_ms: int = _default("sweep_grace_ms")
    endpoint_policy: EndpointPolicy = BROWSERS_ONLY  # where pushes may go
    # an admission still unfinished this long after its lease lapsed has no retry left
    # (the audience queue redelivers for visibility x receives): the sweeper fails it
    admission_stale_ms: int = (
        t.AUDIENCE_QUEUE.visibility_timeout_s * t.AUDIENCE_QUEUE.max_receive_count * 1000
    )
    # a chain with only carried recipients left waits this long times their carries
    carry_pause_s: float = 1.0

    @classmethod
    def from_settings(cls, s: SendSettings) -> SendConfig:
        return cls(
            endpoint_policy=deployed_policy(),
            chains=s.chains,
            batch_size=s.batch_size,
            min_remaining_ms=s.min_remaining_ms,
            dry_run=s.dry_run,
            audience_prefix=s.audience_prefix,
            sweep_grace_ms=s.sweep_grace_ms,
        )


@dataclass
class SendPorts:
    runs: RunLedger
    objects: AudienceSource
    archive: RecordArchive
    invoker: Invoker
    sender: Sender
    signing_keys: SigningKeys
    ping_url: str
    # DynamoDB entries that commit with the cursor, so campaign counters count each
    # outcome exactly once; each chain writes its own counter shard (no hot item).
    counter_items: CounterItems | None = None
    # (tenant, [subscriber ids]) for subscriptions the push service says are gone.
    on_pruned: Callable[[str, list[str]], object] | None = None
    # Who a campaign with a control group reached or held out (pushpipe.pings.exposures),
    # as DynamoDB entries committed with the cursor, so orders compare group by group.
    exposure_items: ExposureItems | None = None
