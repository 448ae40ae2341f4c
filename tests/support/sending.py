"""The send domain's test world: moto in-process, a recording sender behind the
``Sender`` port, a clock, and helpers to drop a file and drive its chains."""

from __future__ import annotations

from collections.abc import Sequence

import boto3

from pushpipe.push.models import Outcome, PushMessage, SendResult
from pushpipe.sending import service as sending
from pushpipe.sending.service import SendConfig, SendPorts, run_chain
from pushpipe.shared.aws import AudienceObjects
from pushpipe_local.sim.audiences import audience_bytes, demo_campaign

BUCKET, TABLE, STREAM = "aud", "runs", "sends"
P256DH, AUTH = "B" + "A" * 86, "A" * 22


class RecordingSender:
    """The ``Sender`` port, answering every message with ``outcome``; keeps them."""

    def __init__(self, outcome: Outcome = Outcome.SENT) -> None:
        self.messages: list[PushMessage] = []
        self.outcome = outcome

    @property
    def sent(self) -> list[str]:
        """The recipient ids of every message, in order."""
        return [m.recipient_id for m in self.messages]

    def send(self, messages: Sequence[PushMessage], *, dry_run=None, budget_s=None):
        self.messages.extend(messages)
        return [SendResult(m.recipient_id, self.outcome, 201) for m in messages]


class RecordingInvoker:
    """The ``Invoker`` port: keeps the events of the asynchronous invocations."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, event: dict) -> None:
        self.events.append(event)

    def take(self, action: str) -> list[dict]:
        """The events of ``action``, no longer kept."""
        got = [e for e in self.events if e.get("action") == action]
        self.events = [e for e in self.events if e.get("action") != action]
        return got


class CountingObjects(AudienceObjects):
    def __init__(self) -> None:
        super().__init__(boto3.client("s3", region_name="us-east-1"))
        self.opens = 0

    def open(self, bucket, key, etag):
        self.opens += 1
        return super().open(bucket, key, etag)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def drop(s3, key: str, n: int, campaign: str = "c1") -> str:
    recipients = [
        {
            "id": f"s{i}",
            "subscription": {
                "endpoint": f"https://fcm.googleapis.com/fcm/send/{i}",
                "keys": {"p256dh": P256DH, "auth": AUTH},
            },
        }
        for i in range(n)
    ]
    body = audience_bytes(demo_campaign(campaign), recipients)
    return s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')


def drive(
    ports: SendPorts,
    config: SendConfig,
    batches_per_invocation: int = 1,
    request_ids=None,
    cold: bool = False,
) -> int:
    """Run queued invocations until none are left; each gets time for N batches."""
    invocations = 0
    while ports.invoker.events:
        event = ports.invoker.events.pop(0)
        budget = {"batches": 0}

        def remaining(budget: dict = budget) -> int:
            # plenty of time until the N-th commit has checked it, then too little
            budget["batches"] += 1
            return 900_000 if budget["batches"] <= batches_per_invocation else 1_000

        if cold:
            sending.forget_streams()
        run_chain(
            sending.Cursor.from_event(event["cursor"]),
            ports,
            config,
            remaining,
            request_id=f"req-{invocations}",
            sleep=lambda s: None,
        )
        invocations += 1
    return invocations
