"""send_batch: starts a send when an audience file lands, and runs its chains.

Events:
* SQS records carrying S3 ObjectCreated notifications (the audience drop) → ``admit``;
* ``{"action": "chain", "cursor": {...}}`` from its own async re-invocation → ``run_chain``;
* ``{"action": "sweep"}`` from the schedule → ``sweep`` (resume chains whose invocation died).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from pushpipe.sending.runs import Cursor
from pushpipe.sending.service import admit, run_chain, sweep
from pushpipe.sending.wiring import send_config, send_ports, warm
from pushpipe.shared.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)
warm()


def _admit_record(record: SQSRecord, lambda_context: LambdaContext) -> list[dict]:
    """One SQS message = one S3 notification (possibly several records, or a test event).
    The run's admission lease lasts as long as this invocation may (Powertools passes
    ``lambda_context`` to a record handler that names it)."""
    body = json.loads(record.body)
    if body.get("Event") == "s3:TestEvent":
        logger.info("ignoring the S3 test event")
        return []
    results = []
    for s3 in body.get("Records", []):
        if not str(s3.get("eventName", "")).startswith("ObjectCreated"):
            continue
        obj = s3["s3"]["object"]
        result = admit(
            s3["s3"]["bucket"]["name"],
            unquote_plus(obj["key"]),  # S3 notifications URL-encode keys
            obj.get("eTag") or obj.get("etag") or "",
            send_ports(),
            send_config(),
            lease_ms=lambda_context.get_remaining_time_in_millis(),
        )
        metrics.add_metric(name=f"Admission_{result.status}", unit="Count", value=1)
        results.append(result.__dict__)
    return results


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry tokens
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> Mapping[str, Any]:
    action = event.get("action")
    if action == "chain":
        cursor = Cursor.from_event(event["cursor"])
        logger.append_keys(run_id=cursor.run_id, chain=cursor.chain)
        result = run_chain(
            cursor,
            send_ports(),
            send_config(),
            context.get_remaining_time_in_millis,
            request_id=context.aws_request_id,
        )
        metrics.add_metric(name="Sent", unit="Count", value=result.sent_in_invocation)
        metrics.add_metric(name="SendFailed", unit="Count", value=result.failed_in_invocation)
        return result.__dict__
    if action == "sweep":
        resumed = sweep(send_ports(), send_config())
        metrics.add_metric(name="ChainsResumed", unit="Count", value=len(resumed))
        return {"resumed": [c.__dict__ for c in resumed]}
    if "Records" in event:
        return process_partial_response(
            event=event,
            record_handler=_admit_record,
            processor=processor,
            context=context,
        )
    raise ValueError(f"send_batch got an event it does not know: keys {sorted(event)}")
