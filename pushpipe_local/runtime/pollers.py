"""The event sources of the local runtime, polled the way Lambda's pollers do it.

* ``SqsPoller``: an SQS event source mapping. Receives up to ten messages, invokes the
  function with them, deletes those that succeeded (all of them, unless the answer lists
  ``batchItemFailures``); a failed batch comes back after the visibility timeout.
* ``KinesisPoller``: a Kinesis event source mapping, one loop per shard from the start
  of the stream (``TRIM_HORIZON``). A failed batch is retried;
  ``batchItemFailures`` resumes from the first failed record.
* ``Schedule``: an EventBridge schedule, an asynchronous invocation every ``every_s``.
* ``FirehosePump``: a Firehose delivery stream whose source is a Kinesis stream (moto's
  Firehose cannot read one), forwarding every record, newline-terminated.

Each poller runs in a thread of the runtime until the runtime stops; while it hands a
batch to a function, the runtime counts it as busy.
"""

from __future__ import annotations

import base64
import functools
import logging
import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from pushpipe_local.runtime.pool import InvokeResult

log = logging.getLogger(__name__)


class PollerHost(Protocol):
    """What a poller needs of the runtime."""

    region: str

    @property
    def stopping(self) -> threading.Event: ...

    def invoke(self, name: str, event: Any) -> InvokeResult: ...

    def invoke_async(self, name: str, event: Any) -> str: ...

    def working(self) -> AbstractContextManager[None]: ...

    def start_thread(self, target: Callable[[], None], name: str) -> None: ...


def _failed_items(result: InvokeResult) -> list[dict]:
    """The ``batchItemFailures`` of a partial batch response."""
    if not isinstance(result.payload, dict):
        return []
    return (result.payload or {}).get("batchItemFailures", [])


def _error_message(result: InvokeResult) -> Any:
    return (result.error or {}).get("errorMessage")


class SqsPoller:
    """Lambda's SQS event source mapping: receive, invoke, delete what succeeded."""

    def __init__(
        self, host: PollerHost, sqs: Any, queue_url: str, function: str, batch_size: int
    ) -> None:
        self.host, self.sqs, self.queue_url = host, sqs, queue_url
        self.function, self.batch_size = function, batch_size

    def start(self) -> None:
        self.host.start_thread(self.run, f"sqs-{self.function}")

    def run(self) -> None:
        stop = self.host.stopping
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        while not stop.is_set():
            try:
                got = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(self.batch_size, 10),
                    WaitTimeSeconds=1,
                    AttributeNames=["All"],
                )
            except Exception as exc:  # the cloud is stopping, or moto hiccupped
                if stop.is_set():
                    return
                log.warning("SQS receive failed: %s", exc)
                stop.wait(0.5)
                continue
            messages = got.get("Messages", [])
            if messages:
                with self.host.working():
                    self.deliver(arn, messages)

    def deliver(self, arn: str, messages: list[dict]) -> None:
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m.get("Attributes", {}),
                    "messageAttributes": {},
                    "md5OfBody": m.get("MD5OfBody", ""),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": self.host.region,
                }
                for m in messages
            ]
        }
        result = self.host.invoke(self.function, event)
        if not result.ok:
            log.warning(
                "SQS batch to %s failed; messages return after the visibility timeout: %s",
                self.function,
                _error_message(result),
            )
            return
        failed = {f["itemIdentifier"] for f in _failed_items(result)}
        for m in messages:
            if m["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=m["ReceiptHandle"])


class KinesisPoller:
    """Lambda's Kinesis event source mapping, one loop per shard."""

    def __init__(
        self,
        host: PollerHost,
        kinesis: Any,
        stream: str,
        function: str,
        batch_size: int,
        window_s: float,
    ) -> None:
        self.host, self.kinesis, self.stream = host, kinesis, stream
        self.function, self.batch_size, self.window_s = function, batch_size, window_s

    def start(self) -> None:
        desc = self.kinesis.describe_stream(StreamName=self.stream)["StreamDescription"]
        for shard in desc["Shards"]:
            shard_id, arn = shard["ShardId"], desc["StreamARN"]
            self.host.start_thread(
                functools.partial(self.run, shard_id, arn), f"kinesis-{self.stream}-{shard_id}"
            )

    def run(self, shard_id: str, arn: str) -> None:
        stop = self.host.stopping
        it = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        buffered: list[dict] = []
        while not stop.is_set():
            try:
                got = self.kinesis.get_records(ShardIterator=it, Limit=self.batch_size)
            except Exception as exc:
                if stop.is_set():
                    return
                log.warning("Kinesis get_records failed: %s", exc)
                stop.wait(0.5)
                continue
            it = got["NextShardIterator"]
            buffered.extend(got.get("Records", []))
            if not buffered:
                stop.wait(min(self.window_s, 0.2))
                continue
            with self.host.working():
                buffered = self._drain(shard_id, arn, buffered)

    def _drain(self, shard_id: str, arn: str, buffered: list[dict]) -> list[dict]:
        """Deliver the buffered records in batches; returns what is left at a stop."""
        stop = self.host.stopping
        while buffered and not stop.is_set():
            batch, rest = buffered[: self.batch_size], buffered[self.batch_size :]
            retry_from = self.deliver(shard_id, arn, batch)
            if retry_from is None:
                buffered = rest
            else:
                buffered = batch[retry_from:] + rest
                stop.wait(0.5)
        return buffered

    def deliver(self, shard_id: str, arn: str, records: list[dict]) -> int | None:
        """Invoke the function with ``records``: None if all succeeded, else the index
        of the first record to retry from."""
        event = {
            "Records": [
                {
                    "kinesis": {
                        "kinesisSchemaVersion": "1.0",
                        "partitionKey": r["PartitionKey"],
                        "sequenceNumber": r["SequenceNumber"],
                        "data": base64.b64encode(r["Data"]).decode(),
                        "approximateArrivalTimestamp": r["ApproximateArrivalTimestamp"].timestamp(),
                    },
                    "eventSource": "aws:kinesis",
                    "eventVersion": "1.0",
                    "eventID": f"{shard_id}:{r['SequenceNumber']}",
                    "eventName": "aws:kinesis:record",
                    "invokeIdentityArn": "arn:aws:iam::123456789012:role/local",
                    "awsRegion": self.host.region,
                    "eventSourceARN": arn,
                }
                for r in records
            ]
        }
        result = self.host.invoke(self.function, event)
        if not result.ok:
            log.warning(
                "Kinesis batch to %s failed, retrying: %s", self.function, _error_message(result)
            )
            return 0
        failures = _failed_items(result)
        if not failures:
            return None
        seqs = [r["SequenceNumber"] for r in records]
        return min(seqs.index(f["itemIdentifier"]) for f in failures if f["itemIdentifier"] in seqs)


class Schedule:
    """An EventBridge schedule: ``payload`` to ``function`` (asynchronously) every ``every_s``."""

    def __init__(self, host: PollerHost, function: str, every_s: float, payload: dict) -> None:
        self.host, self.function, self.every_s, self.payload = host, function, every_s, payload

    def start(self) -> None:
        self.host.start_thread(self.run, f"schedule-{self.function}")

    def run(self) -> None:
        while not self.host.stopping.wait(self.every_s):
            self.host.invoke_async(self.function, self.payload)


class FirehosePump:
    """A Firehose delivery stream whose source is a Kinesis stream (moto cannot)."""

    def __init__(
        self, host: PollerHost, kinesis: Any, firehose: Any, stream: str, delivery: str
    ) -> None:
        self.host, self.kinesis, self.firehose = host, kinesis, firehose
        self.stream, self.delivery = stream, delivery

    def start(self) -> None:
        desc = self.kinesis.describe_stream(StreamName=self.stream)["StreamDescription"]
        for shard in desc["Shards"]:
            shard_id = shard["ShardId"]
            self.host.start_thread(functools.partial(self.run, shard_id), f"pump-{self.delivery}")

    def run(self, shard_id: str) -> None:
        stop = self.host.stopping
        it = self.kinesis.get_shard_iterator(
            StreamName=self.stream, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while not stop.is_set():
            try:
                got = self.kinesis.get_records(ShardIterator=it, Limit=500)
                it = got["NextShardIterator"]
                if not self._forward(got.get("Records", [])):
                    stop.wait(0.2)
            except Exception as exc:
                if stop.is_set():
                    return
                log.warning("Firehose pump %s failed: %s", self.delivery, exc)
                stop.wait(0.5)

    def _forward(self, records: list[dict]) -> int:
        if records:
            self.firehose.put_record_batch(
                DeliveryStreamName=self.delivery,
                Records=[
                    {"Data": r["Data"] if r["Data"].endswith(b"\n") else r["Data"] + b"\n"}
                    for r in records
                ],
            )
        return len(records)
