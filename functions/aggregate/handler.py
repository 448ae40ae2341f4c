"""aggregate: folds batches of pings from the Kinesis stream into campaign counters.

Powertools BatchProcessor parses each record (a record that is not a ping is reported as
a partial batch failure); the parsed batch is then deduplicated and committed with one
transaction per campaign. A campaign whose commit fails reports its records as failures
so Lambda retries from there; the retry's dedup skips whatever did commit.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import (
    KinesisStreamRecord,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from pushpipe.pings.ingest import PingRecord, aggregate_batch, parse_record_line
from pushpipe.pings.wiring import counter_store
from pushpipe.shared.observability import logger, metrics, tracer
from pushpipe.shared.settings import aggregate_settings

processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


def _parse(record: KinesisStreamRecord) -> PingRecord:
    return parse_record_line(record.kinesis.data_as_bytes())


def writer_of(records: list[dict[str, Any]]) -> tuple[str, str]:
    """(writer id of this batch, counter shard of this consumer) from the first record's
    ``eventID`` = ``shardId-000000000003:<sequence number>``."""
    shard_id, _, seq = records[0]["eventID"].partition(":")
    number = int(shard_id.rsplit("-", 1)[-1]) if shard_id.rsplit("-", 1)[-1].isdigit() else 0
    return f"{number}.{seq[-20:]}", f"{aggregate_settings().shard_prefix}{number}"


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry tokens
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    if not records:
        return {"batchItemFailures": []}
    with processor(records=records, handler=_parse, lambda_context=context):
        processed = processor.process()
    parsed = [
        (result, raw["kinesis"]["sequenceNumber"])
        for status, result, raw in processed
        if status == "success"
    ]
    writer, shard = writer_of(records)
    outcome = aggregate_batch(parsed, counter_store(), writer=writer, shard=shard)
    metrics.add_metric(name="PingsCounted", unit="Count", value=outcome.counted)
    metrics.add_metric(name="PingsDuplicate", unit="Count", value=outcome.duplicates)
    failures = list(processor.response().get("batchItemFailures", []))
    failures += [{"itemIdentifier": seq} for seq in outcome.failed]
    if outcome.failed:
        logger.warning("campaign commits failed", extra={"errors": outcome.errors})
    logger.info(
        "batch folded",
        extra={
            "records": len(records),
            "counted": outcome.counted,
            "duplicates": outcome.duplicates,
            "campaigns": outcome.campaigns,
            "failures": len(failures),
        },
    )
    return {"batchItemFailures": failures}
