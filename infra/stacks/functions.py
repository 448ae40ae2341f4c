"""One construct per topology function: role, log group, function, grants, triggers.

Everything here is read from ``pushpipe.topology.Function``; adding a function or a
trigger there needs no change in this module.
"""

from __future__ import annotations

from collections.abc import Callable, Container

from aws_cdk import ArnFormat, Duration, RemovalPolicy, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codedeploy as codedeploy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.stacks.bundling import PYTHON_VERSION
from infra.stacks.grants import grant_bucket
from infra.stacks.nag import acknowledge
from infra.stacks.names import cid, function_name
from infra.stacks.resources import CATALOGS as _CATALOGS
from infra.stacks.resources import ISSUERS as _ISSUERS
from infra.stacks.resources import Resources, deploy_settings
from infra.stacks.resources import mailers as _mailers
from infra.stacks.storage import failure_queue
from pushpipe import topology as t
from pushpipe.shared.observability import NAMESPACE, SERVICE

RUNTIME = lambda_.Runtime.PYTHON_3_12
ARCHITECTURE = lambda_.Architecture.ARM_64
CANARY = codedeploy.LambdaDeploymentConfig.CANARY_10_PERCENT_5_MINUTES
CANARY_ALIAS = "live"
CANARY_MIN_ERRORS, CANARY_ERROR_PCT = 3, 5  # a minimum volume before a rollback
KINESIS_RETRIES = 5
KINESIS_MAX_RECORD_AGE = Duration.hours(6)
SCHEDULE_RETRIES = 2

TABLE_ACTIONS = (
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
)  # no Scan: every access path is a key or index query (README: What gets created)

RUNTIME_REASON = (
    f"Pinned to {RUNTIME.name}: the bundle's binary wheels (pydantic-core, cryptography, "
    f"ijson, aiohttp) are installed for cp{PYTHON_VERSION.replace('.', '')}/aarch64 and the "
    "tests run the same code on 3.11+; upgrade RUNTIME and bundling.PYTHON_VERSION together."
)

assert RUNTIME.name == f"python{PYTHON_VERSION}", "bundle and runtime must agree"


class PushpipeFunction(Construct):
    """A topology function with its own role, log group, grants and triggers."""

    def __init__(self, scope: Construct, cid_: str, *, spec: t.Function, res: Resources) -> None:
        super().__init__(scope, cid_)
        self.spec = spec
        self.res = res
        self.stack = Stack.of(self)
        self.function_name = function_name(res.config.stack_name, spec.name)
        self.failure_queue: sqs.Queue | None = None
        self.log_group = self._build_log_group()
        self.role = self._build_role()
        self._build_failure_queue()
        self.function = self._build_function()
        self.target: lambda_.IFunction = self.function
        self.alias: lambda_.Alias | None = None
        self.deployment_group: codedeploy.LambdaDeploymentGroup | None = None
        self.canary_alarm: cloudwatch.Alarm | None = None
        if spec.canary:
            self._build_canary()
        for name in spec.uses:
            self._grant_use(name)
        self._check_writes()
        if spec.invokes_self:
            self._grant_self_invoke()
        for trigger in spec.triggers:
            self._build_trigger(trigger)

    # --- the function ---------------------------------------------------------------
    def _build_log_group(self) -> logs.LogGroup:
        return logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/lambda/{self.function_name}",
            retention=self.res.log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _build_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"pushpipe {self.spec.name}: only what topology.uses grants",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[self.log_group.log_group_arn],
            )
        )
        return role

    def _is_async(self) -> bool:
        """Invoked asynchronously: by itself, or by an EventBridge schedule."""
        return self.spec.invokes_self or any(
            isinstance(trigger, t.ScheduleTrigger) for trigger in self.spec.triggers
        )

    def _build_failure_queue(self) -> None:
        if self._is_async():
            self.failure_queue = failure_queue(self, "OnFailure")
            self.res.dead_letter_queues.append((f"{self.spec.name} on-failure", self.failure_queue))

    def _environment(self) -> dict[str, str]:
        env = {
            "POWERTOOLS_SERVICE_NAME": SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            "POWERTOOLS_TRACER_CAPTURE_RESPONSE": "false",  # responses carry tokens, keys
        }
        for name in self.spec.uses:
            variable = _resource_env(name)
            if variable:
                env[variable] = self.res.physical(name)
            if name in _CATALOGS and self.res.audit is not None:
                env[_CATALOGS[name].database_env] = self.res.audit.database.ref
            if name in _ISSUERS and self.res.people is not None:
                env.update(self.res.people.env_values())
            if name in _mailers() and self.res.mail is not None:
                mailer = _mailers()[name]
                env[mailer.configuration_set_env] = (
                    self.res.mail.configuration_set.configuration_set_name
                )
        overrides = deploy_settings(self.res.config)
        for key, value in self.spec.settings.items():
            env[key] = overrides.get(key, str(value))
        if self.spec.env:
            env[self.spec.env] = self.function_name
        for variable, path in self.spec.api_paths.items():
            env[variable] = self.res.api_url.rstrip("/") + "/" + path.lstrip("/")
        return env

    def _build_function(self) -> lambda_.Function:
        spec = self.spec
        kwargs: dict = {}
        if self.failure_queue is not None:  # built for every asynchronously invoked function
            kwargs.update(
                retry_attempts=spec.async_retries,
                max_event_age=Duration.seconds(spec.async_max_event_age_s),
                on_failure=destinations.SqsDestination(self.failure_queue),
            )
        if spec.invokes_self:
            # Lambda stops a chain of invocations after ~16 hops of the same request
            # lineage unless the function allows recursive loops; a send chain of a
            # million recipients legitimately re-invokes itself far more often.
            kwargs["recursive_loop"] = lambda_.RecursiveLoop.ALLOW
        function = lambda_.Function(
            self,
            "Function",
            function_name=self.function_name,
            description=f"pushpipe {spec.name} ({spec.handler})",
            code=self.res.code,
            handler=spec.handler,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            memory_size=spec.memory_mb,
            timeout=Duration.seconds(spec.timeout_s),
            reserved_concurrent_executions=spec.reserved_concurrency,
            role=self.role,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            tracing=lambda_.Tracing.ACTIVE,
            environment=self._environment(),
            **kwargs,
        )
        acknowledge(function, "AwsSolutions-L1", RUNTIME_REASON)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray PutTraceSegments/PutTelemetryRecords do not support resource-level "
            "permissions; this is the only statement with Resource '*'.",
        )
        return function

    # --- canary ---------------------------------------------------------------------
    def _build_canary(self) -> None:
        self.alias = lambda_.Alias(
            self, "Alias", alias_name=CANARY_ALIAS, version=self.function.current_version
        )
        self.target = self.alias
        minute = Duration.minutes(1)
        self.canary_alarm = cloudwatch.Alarm(
            self,
            "CanaryErrors",
            alarm_description=f"{self.spec.name}: {CANARY_MIN_ERRORS}+ errors and "
            f"{CANARY_ERROR_PCT}%+ of invocations on the '{CANARY_ALIAS}' alias in a "
            "minute (genuine failures: no request body can cause one; rolls back the canary)",
            metric=cloudwatch.MathExpression(
                expression=f"IF(FILL(e, 0) >= {CANARY_MIN_ERRORS} AND FILL(i, 0) > 0, "
                "100 * FILL(e, 0) / FILL(i, 0), 0)",
                using_metrics={
                    "e": self.alias.metric_errors(period=minute, statistic="Sum"),
                    "i": self.alias.metric_invocations(period=minute, statistic="Sum"),
                },
                period=minute,
            ),
            threshold=CANARY_ERROR_PCT,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        self.deployment_group = codedeploy.LambdaDeploymentGroup(
            self,
            "Deployment",
            alias=self.alias,
            deployment_config=CANARY,
            alarms=[self.canary_alarm],
            auto_rollback=codedeploy.AutoRollbackConfig(
                failed_deployment=True, stopped_deployment=True, deployment_in_alarm=True
            ),
        )
        acknowledge(
            self.deployment_group.role,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSCodeDeployRoleForLambdaLimited]",
            "CodeDeploy's own least-privilege role for Lambda deployments (shift alias "
            "weights, read alarms, invoke hooks); AWS maintains it as the API evolves.",
        )

    def add_canary_alarm(self, alarm: cloudwatch.IAlarm) -> None:
        """Roll the canary back on this alarm too (e.g. a domain rejection rate)."""
        if self.deployment_group is not None:
            self.deployment_group.add_alarm(alarm)

    # --- grants ---------------------------------------------------------------------
    def _grant_use(self, name: str) -> None:
        """Grant what ``uses=name`` needs; the first kind of resource that has the name wins."""
        res = self.res
        grants: tuple[tuple[Container[str], Callable[[str], None]], ...] = (
            (res.tables, self._grant_table),
            (res.buckets, self._grant_bucket),
            (res.delivery_streams, self._grant_delivery_stream),
            (res.streams, self._grant_stream),
            (res.secrets, self._grant_secret),
            (res.queues, self._grant_queue),
            (res.functions, self._grant_invoke),
            (_mailers() if res.mail is not None else {}, self._grant_mail),
            (_CATALOGS if res.audit is not None else {}, self._grant_queries),
            # the issuer's tokens reach a function as claims: nothing to grant
            (_ISSUERS if res.people is not None else {}, lambda _name: None),
        )
        for declared, grant in grants:
            if name in declared:
                grant(name)
                return
        raise KeyError(
            f"function {self.spec.name!r} uses {name!r}, which the topology does not "
            "declare (or declares after the function)"
        )

    def _grant_table(self, name: str) -> None:
        table = self.res.tables[name]
        spec = t.by_name(t.TABLES, name)
        arns = [table.table_arn] + [
            f"{table.table_arn}/index/{index.name}" for index in spec.indexes
        ]
        self.role.add_to_policy(iam.PolicyStatement(actions=list(TABLE_ACTIONS), resources=arns))

    def _grant_bucket(self, name: str) -> None:
        grant_bucket(self.role, self.res.buckets[name], name, self.spec)

    def _grant_delivery_stream(self, name: str) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["firehose:PutRecord", "firehose:PutRecordBatch"],
                resources=[self.res.delivery_streams[name].attr_arn],
            )
        )

    def _grant_stream(self, name: str) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=[
                    "kinesis:PutRecord",
                    "kinesis:PutRecords",
                    "kinesis:DescribeStreamSummary",
                ],
                resources=[self.res.streams[name].stream_arn],
            )
        )

    def _grant_secret(self, name: str) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                resources=[self.res.secrets[name].secret_arn],
            )
        )

    def _grant_queue(self, name: str) -> None:
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                resources=[self.res.queues[name].queue_arn],
            )
        )

    def _grant_invoke(self, name: str) -> None:
        other = self.res.functions[name]
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["lambda:InvokeFunction"], resources=[other.function.function_arn]
            )
        )

    def _grant_queries(self, name: str) -> None:
        if self.res.audit is not None:
            self.res.audit.grant_queries(self.role, self.spec.name)

    def _grant_mail(self, name: str) -> None:
        if self.res.mail is not None:  # only offered when the stack has mail
            self.res.mail.grant_send(self.role)

    def _check_writes(self) -> None:
        for name in self.spec.writes:
            if name not in self.spec.uses or name not in self.res.buckets:
                raise ValueError(
                    f"function {self.spec.name!r}: writes={name!r} must name a bucket that is "
                    "also in uses"
                )
        for name in self.spec.prefixes:
            if name not in self.spec.uses or name not in self.res.buckets:
                raise ValueError(
                    f"function {self.spec.name!r}: prefixes of {name!r}, not a used bucket"
                )

    def _grant_self_invoke(self) -> None:
        # The constructed ARN (not function.function_arn) avoids a function → policy →
        # function dependency cycle.
        arn = self.stack.format_arn(
            service="lambda",
            resource="function",
            resource_name=self.function_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[arn])
        )

    # --- triggers -------------------------------------------------------------------
    def _build_trigger(self, trigger: object) -> None:
        if isinstance(trigger, t.SqsTrigger):
            queue = self._need(self.res.queues, trigger.queue, "queue")
            spec = t.by_name(t.QUEUES, trigger.queue)
            if spec.visibility_timeout_s < self.spec.timeout_s:
                raise ValueError(
                    f"queue {trigger.queue!r} visibility timeout {spec.visibility_timeout_s}s is "
                    f"shorter than {self.spec.name}'s timeout {self.spec.timeout_s}s; Lambda "
                    "would see messages again while they are still being processed"
                )
            self.target.add_event_source(
                sources.SqsEventSource(
                    queue, batch_size=trigger.batch_size, report_batch_item_failures=True
                )
            )
        elif isinstance(trigger, t.KinesisTrigger):
            stream = self._need(self.res.streams, trigger.stream, "stream")
            dead = failure_queue(self, cid(trigger.stream, "StreamFailures"))
            self.res.dead_letter_queues.append(
                (f"{self.spec.name} {trigger.stream} failures", dead)
            )
            self.target.add_event_source(
                sources.KinesisEventSource(
                    stream,
                    starting_position=lambda_.StartingPosition.TRIM_HORIZON,
                    batch_size=trigger.batch_size,
                    max_batching_window=Duration.seconds(trigger.max_batching_window_s),
                    bisect_batch_on_error=True,
                    report_batch_item_failures=True,
                    retry_attempts=KINESIS_RETRIES,
                    max_record_age=KINESIS_MAX_RECORD_AGE,
                    on_failure=sources.SqsDlq(dead),
                )
            )
        elif isinstance(trigger, t.ScheduleTrigger):
            events.Rule(
                self,
                cid(trigger.name, "Schedule"),
                description=f"pushpipe schedule {trigger.name} -> {self.spec.name}",
                schedule=_schedule(trigger),
                targets=[
                    targets.LambdaFunction(
                        self.target,
                        event=events.RuleTargetInput.from_object(trigger.payload),
                        retry_attempts=SCHEDULE_RETRIES,
                        max_event_age=Duration.hours(1),
                        dead_letter_queue=self.failure_queue,
                    )
                ],
            )
        else:
            raise TypeError(
                f"no CDK mapping for trigger type {type(trigger).__name__} of {self.spec.name}"
            )

    def _need(self, items: dict, name: str, kind: str):
        if name not in items:
            raise KeyError(
                f"{self.spec.name}: trigger names {kind} {name!r}, which is not declared"
            )
        return items[name]


def _schedule(trigger: t.ScheduleTrigger) -> events.Schedule:
    cron = getattr(trigger, "cron", None)
    if cron:
        return events.Schedule.expression(f"cron({cron})")
    return events.Schedule.rate(Duration.minutes(trigger.rate_minutes))


def _resource_env(name: str) -> str | None:
    try:
        return t.resource_env(name)
    except KeyError:
        return None
