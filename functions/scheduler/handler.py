"""scheduler: scheduled campaigns (``pushpipe.scheduled.definitions``), run by an hourly
schedule.

Event ``{"action": "scheduled"}`` (optionally ``"now": ISO-8601`` to replay a day) →
writes each due (day, tenant, definition) audience under the audience prefix, once.

Event ``{"action": "stale"}`` (daily; ``"now"`` as above) → prunes the subscriptions that
a push service accepts but that never ping back (``pushpipe.subscriptions.engagement``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from pushpipe.scheduled.definitions import check_definitions, run_scheduled
from pushpipe.scheduled.wiring import scheduler_ports, stale_job
from pushpipe.shared.observability import logger, metrics, tracer
from pushpipe.shared.settings import scheduler_settings
from pushpipe.subscriptions.engagement import PRUNED, prune_stale

check_definitions()  # a definition that breaks the audience format fails the cold start


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry tokens
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action")
    if action not in ("scheduled", "stale"):
        raise ValueError(
            f"scheduler got an event it does not know: action {action!r}, keys {sorted(event)}"
        )
    now = datetime.fromisoformat(event["now"]) if event.get("now") else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    if action == "stale":
        job = stale_job()
        stale = prune_stale(now, job.policy, job.queries, job.subscriptions, job.reports)
        metrics.add_metric(
            name="StaleSubscriptionsPruned", unit="Count", value=stale.actions.get(PRUNED, 0)
        )
        return stale.as_dict()
    s = scheduler_settings()
    result = run_scheduled(now, scheduler_ports(), s.audience_bucket, s.audience_prefix)
    metrics.add_metric(name="ScheduledAudiencesWritten", unit="Count", value=len(result.written))
    return result.__dict__
