"""CloudWatch alarms and dashboard.

Alarms: every dead-letter / on-failure queue holding a message, every function's errors
and throttles, the send failure rate and the ping rejection rate (EMF metrics the
functions publish through Powertools in the ``Pushpipe`` namespace, dimension
``service=pushpipe``). All alarms notify one SNS topic (optionally mailed).
"""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.stacks.api import HttpApi
from infra.stacks.config import DeployConfig
from infra.stacks.functions import PushpipeFunction
from infra.stacks.names import cid
from pushpipe.shared.observability import NAMESPACE, SERVICE

# EMF metric names the alarms read; the functions emit them with Powertools
# (``metrics.add_metric(name=..., unit="Count", ...)``, no extra dimensions).
SENDS_OK = ("Sent",)
SENDS_FAILED = ("SendFailed",)
PINGS_OK = ("PingsAccepted",)
PINGS_REJECTED = ("PingsRejectedForged", "PingsRejectedExpired")
# What a flood of forged or hostile input raises: it alarms (someone is probing), it
# never rolls back a deploy (a caller must not be able to veto a release).
SECURITY_REFUSALS = (
    "PingsRejectedForged",
    "RequestsRefusedMalformed",
    "SubscriptionTakeoversRefused",
    "RequestsRateLimited",
)
SECURITY_REFUSALS_PER_PERIOD = 500
ALARMED_METRICS = (*SENDS_OK, *SENDS_FAILED, *PINGS_OK, *PINGS_REJECTED, *SECURITY_REFUSALS)

PERIOD = Duration.minutes(5)
FUNCTION_ERRORS = 5  # per 5 minutes
FUNCTION_THROTTLES = 10  # per 5 minutes (async retries absorb a few)
SEND_FAILURE_RATE_PCT = 5
PING_REJECTION_RATE_PCT = 20
MIN_SAMPLE = 100  # rates are only meaningful over enough events


def emf(name: str, statistic: str = "Sum", period: Duration = PERIOD) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=NAMESPACE,
        metric_name=name,
        dimensions_map={"service": SERVICE},
        statistic=statistic,
        period=period,
    )


def rate(bad: tuple[str, ...], good: tuple[str, ...], label: str) -> cloudwatch.MathExpression:
    """100 * bad / (bad + good) once there are MIN_SAMPLE events in the period, else 0."""
    using = {f"b{i}": emf(name) for i, name in enumerate(bad)}
    using.update({f"g{i}": emf(name) for i, name in enumerate(good)})
    b = " + ".join(f"FILL(b{i}, 0)" for i in range(len(bad)))
    g = " + ".join(f"FILL(g{i}, 0)" for i in range(len(good)))
    return cloudwatch.MathExpression(
        expression=f"IF(({b}) + ({g}) >= {MIN_SAMPLE}, 100 * ({b}) / (({b}) + ({g})), 0)",
        using_metrics=using,
        label=label,
        period=PERIOD,
    )


class Monitoring(Construct):
    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        config: DeployConfig,
        functions: dict[str, PushpipeFunction],
        dead_letter_queues: list[tuple[str, sqs.IQueue]],
        streams: dict[str, kinesis.Stream],
        delivery_streams: dict[str, firehose.CfnDeliveryStream],
        api: HttpApi,
    ) -> None:
        super().__init__(scope, cid_)
        self.alarms: list[cloudwatch.Alarm] = []
        self.topic = self._build_topic(config)
        self._action = actions.SnsAction(self.topic)
        for label, queue in dead_letter_queues:
            self._build_dlq_alarm(label, queue)
        for fn in functions.values():
            self._build_function_alarms(fn)
        self.send_failure_alarm = self._alarm(
            "SendFailureRate",
            rate(SENDS_FAILED, SENDS_OK, "send failure %"),
            SEND_FAILURE_RATE_PCT,
            f"More than {SEND_FAILURE_RATE_PCT}% of push sends failed (400/403/413 or retries "
            "exhausted) over 5 minutes",
        )
        self.ping_rejection_alarm = self._alarm(
            "PingRejectionRate",
            rate(PINGS_REJECTED, PINGS_OK, "ping rejection %"),
            PING_REJECTION_RATE_PCT,
            f"More than {PING_REJECTION_RATE_PCT}% of pings rejected (forged, expired or "
            "malformed tokens) over 5 minutes",
        )
        # Neither rejection alarm gates a canary: forged input is counted and throttled,
        # and rolls nothing back. Canaries roll back on their own genuine errors only.
        self.security_alarm = self._alarm(
            "SecurityRefusals",
            cloudwatch.MathExpression(
                expression=" + ".join(f"FILL(m{i}, 0)" for i in range(len(SECURITY_REFUSALS))),
                using_metrics={f"m{i}": emf(n) for i, n in enumerate(SECURITY_REFUSALS)},
                label="security refusals",
                period=PERIOD,
            ),
            SECURITY_REFUSALS_PER_PERIOD,
            f"{SECURITY_REFUSALS_PER_PERIOD}+ forged, malformed, takeover or rate-limited "
            "requests in 5 minutes: someone is probing or flooding the API",
        )
        self.dashboard = self._build_dashboard(
            config, functions, dead_letter_queues, streams, delivery_streams, api
        )

    # --- alarms ---------------------------------------------------------------------
    def _build_topic(self, config: DeployConfig) -> sns.Topic:
        key = kms.Key(
            self,
            "AlarmTopicKey",
            description="pushpipe alarm topic encryption",
            enable_key_rotation=True,
        )
        key.add_to_resource_policy(
            iam.PolicyStatement(
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Stack.of(self).account}},
            )
        )
        topic = sns.Topic(
            self, "AlarmTopic", display_name="pushpipe alarms", master_key=key, enforce_ssl=True
        )
        if config.alarm_email:
            topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        return topic

    def _alarm(
        self, cid_: str, metric: cloudwatch.IMetric, threshold: float, description: str
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            cid_,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
        alarm.add_alarm_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def _build_dlq_alarm(self, label: str, queue: sqs.IQueue) -> None:
        self._alarm(
            cid(label.replace(" ", "-"), "Depth"),
            queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic="Maximum"
            ),
            1,
            f"{label}: messages are waiting in a dead-letter queue (work that failed for good)",
        )

    def _build_function_alarms(self, fn: PushpipeFunction) -> None:
        name = fn.spec.name
        self._alarm(
            cid(name, "Errors"),
            fn.function.metric_errors(period=PERIOD, statistic="Sum"),
            FUNCTION_ERRORS,
            f"{name}: {FUNCTION_ERRORS}+ invocation errors in 5 minutes",
        )
        self._alarm(
            cid(name, "Throttles"),
            fn.function.metric_throttles(period=PERIOD, statistic="Sum"),
            FUNCTION_THROTTLES,
            f"{name}: {FUNCTION_THROTTLES}+ throttled invocations in 5 minutes "
            "(reserved concurrency reached)",
        )
        if fn.canary_alarm is not None:
            fn.canary_alarm.add_alarm_action(self._action)

    # --- dashboard ------------------------------------------------------------------
    def _build_dashboard(
        self,
        config: DeployConfig,
        functions: dict[str, PushpipeFunction],
        dead_letter_queues: list[tuple[str, sqs.IQueue]],
        streams: dict[str, kinesis.Stream],
        delivery_streams: dict[str, firehose.CfnDeliveryStream],
        api: HttpApi,
    ) -> cloudwatch.Dashboard:
        board = cloudwatch.Dashboard(
            self, "Dashboard", dashboard_name=f"{config.stack_name}-pushpipe"
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="Pushes sent / failed",
                left=[emf(n) for n in (*SENDS_OK, *SENDS_FAILED)],
                right=[rate(SENDS_FAILED, SENDS_OK, "failure %")],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Pings accepted / rejected",
                left=[emf(n) for n in (*PINGS_OK, *PINGS_REJECTED)],
                right=[rate(PINGS_REJECTED, PINGS_OK, "rejection %")],
                width=12,
            ),
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="Invocations",
                left=[f.function.metric_invocations(period=PERIOD) for f in functions.values()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Errors and throttles",
                left=[f.function.metric_errors(period=PERIOD) for f in functions.values()],
                right=[f.function.metric_throttles(period=PERIOD) for f in functions.values()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Duration p99",
                left=[
                    f.function.metric_duration(period=PERIOD, statistic="p99")
                    for f in functions.values()
                ],
                width=8,
            ),
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="Dead-letter queues (messages)",
                left=[
                    q.metric_approximate_number_of_messages_visible(label=label, period=PERIOD)
                    for label, q in dead_letter_queues
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Kinesis iterator age (ms)",
                left=[
                    s.metric_get_records_iterator_age_milliseconds(
                        statistic="Maximum", period=PERIOD
                    )
                    for s in streams.values()
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Firehose delivery to S3 (success ratio)",
                left=[
                    cloudwatch.Metric(
                        namespace="AWS/Firehose",
                        metric_name="DeliveryToS3.Success",
                        dimensions_map={"DeliveryStreamName": d.ref},
                        statistic="Average",
                        period=PERIOD,
                        label=name,
                    )
                    for name, d in delivery_streams.items()
                ],
                width=8,
            ),
        )
        board.add_widgets(
            cloudwatch.GraphWidget(
                title="HTTP API requests / 4xx / 5xx",
                left=[
                    api.api.metric_count(period=PERIOD),
                    api.api.metric_client_error(period=PERIOD),
                    api.api.metric_server_error(period=PERIOD),
                ],
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="HTTP API latency p99 (ms)",
                left=[api.api.metric_latency(period=PERIOD, statistic="p99")],
                width=12,
            ),
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24),
        )
        return board
