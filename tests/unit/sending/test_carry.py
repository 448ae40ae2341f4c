"""Recipients a push service did not take yet (throttled, failing, or the batch ran out of
time) are carried with the cursor into the next batch and invocation: delivered once,
never recorded as failed, and failed with the reason only after MAX_CARRIES tries."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from pushpipe.push.models import Outcome, PushMessage, SendResult
from pushpipe.sending import service as sending
from pushpipe.sending.batch import MAX_CARRIES
from pushpipe.sending.service import SendConfig, admit
from tests.support.sending import BUCKET, drive, drop


class FlakySender:
    """Defers every recipient in ``flaky`` for its first ``times`` sends (429 answers
    that outlast the batch), then delivers; records every delivery."""

    def __init__(self, flaky: set[str], times: int) -> None:
        self.flaky, self.times = flaky, times
        self.tries: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()

    def send(self, messages: Sequence[PushMessage], *, dry_run=None, budget_s=None):
        out = []
        for m in messages:
            self.tries[m.recipient_id] += 1
            if m.recipient_id in self.flaky and self.tries[m.recipient_id] <= self.times:
                out.append(
                    SendResult(m.recipient_id, Outcome.DEFERRED, 429, "429 Too Many Requests", 3)
                )
            else:
                self.delivered[m.recipient_id] += 1
                out.append(SendResult(m.recipient_id, Outcome.SENT, 201))
        return out


def _run(world, n: int, flaky: set[str], times: int, batches_per_invocation: int = 1):
    ports, _, s3 = world
    ports.sender = FlakySender(flaky, times)
    etag = drop(s3, "audiences/demo-shop/carry.json", n)
    config = SendConfig(batch_size=10, chains=2)
    result = admit(BUCKET, "audiences/demo-shop/carry.json", etag, ports, config, 60_000)
    invocations = drive(ports, config, batches_per_invocation, cold=True)
    return ports, ports.runs.view(result.run_id), invocations


def test_throttled_recipients_are_carried_and_delivered_once(world):
    flaky = {f"s{i}" for i in range(0, 60, 7)}
    ports, view, _ = _run(world, 60, flaky, times=2)
    sender = ports.sender
    assert set(sender.delivered) == {f"s{i}" for i in range(60)}
    assert set(sender.delivered.values()) == {1}  # nobody twice
    assert all(sender.tries[r] == 3 for r in flaky)  # two deferrals, then delivered
    assert view.state == "done" and view.carried == 0
    assert view.counts["sent"] == 60 and view.counts["failed"] == 0
    assert view.processed == 60


def test_a_carry_survives_the_hand_off_to_a_cold_invocation(world):
    # one batch per invocation and a cold container each time: the carry lives only in
    # the cursor item
    flaky = {"s0", "s1", "s18"}
    ports, view, invocations = _run(world, 20, flaky, times=1, batches_per_invocation=1)
    assert invocations > 2
    assert set(ports.sender.delivered) == {f"s{i}" for i in range(20)}
    assert set(ports.sender.delivered.values()) == {1}
    assert view.state == "done" and view.counts["sent"] == 20


def test_a_recipient_never_taken_fails_after_max_carries_with_the_reason(world):
    ports, view, _ = _run(world, 12, {"s3"}, times=10**6)
    assert ports.sender.tries["s3"] == MAX_CARRIES
    assert "s3" not in ports.sender.delivered
    assert view.state == "done"
    assert view.counts["sent"] == 11 and view.counts["failed"] == 1


def test_the_carry_is_in_the_run_view_while_the_send_goes_on(world):
    ports, _, s3 = world
    ports.sender = FlakySender({"s1"}, times=1)
    etag = drop(s3, "audiences/demo-shop/view.json", 4)
    config = SendConfig(batch_size=10, chains=1)
    result = admit(BUCKET, "audiences/demo-shop/view.json", etag, ports, config, 60_000)
    event = ports.invoker.events.pop(0)
    calls = iter([900_000, 1_000])  # time for one batch, then too little: hand off
    sending.run_chain(
        sending.Cursor.from_event(event["cursor"]),
        ports,
        config,
        lambda: next(calls, 1_000),
        sleep=lambda s: None,
    )
    view = ports.runs.view(result.run_id)
    assert view.state == "running" and view.carried == 1 and view.processed == 3
    drive(ports, config)
    view = ports.runs.view(result.run_id)
    assert view.state == "done" and view.counts["sent"] == 4 and view.carried == 0


class ThrottledSender(FlakySender):
    """Delivers everything; reports FCM throttled (as the real sender's origin gates do)
    and records what it was told by the run."""

    def __init__(self, until: float = 0.0) -> None:
        super().__init__(set(), 0)
        self.until = until
        self.adopted: list[dict] = []

    def throttles(self) -> dict[str, float]:
        return {"https://fcm.googleapis.com": self.until} if self.until else {}

    def adopt_throttles(self, throttles: dict[str, float]) -> None:
        self.adopted.append(dict(throttles))


def test_a_throttle_one_chain_meets_holds_back_the_other_chains_of_the_run(world):
    import time

    ports, _, s3 = world
    etag = drop(s3, "audiences/demo-shop/share.json", 40)
    config = SendConfig(batch_size=10, chains=2)
    result = admit(BUCKET, "audiences/demo-shop/share.json", etag, ports, config, 60_000)
    until = time.time() + 120
    first, second = ThrottledSender(until), ThrottledSender()
    chain0, chain1 = sorted(ports.invoker.events, key=lambda e: e["cursor"]["chain"])
    ports.invoker.events.clear()
    for sender, event in ((first, chain0), (second, chain1)):
        ports.sender = sender
        calls = iter([900_000, 900_000, 1_000])  # one batch, then hand off
        sending.run_chain(
            sending.Cursor.from_event(event["cursor"]),
            ports,
            config,
            lambda calls=calls: next(calls, 1_000),
            sleep=lambda s: None,
        )
    assert ports.runs.origin_throttles(result.run_id) == {
        "https://fcm.googleapis.com": pytest.approx(until, abs=0.01)
    }
    assert second.adopted and second.adopted[0]["https://fcm.googleapis.com"] == pytest.approx(
        until, abs=0.01
    )
