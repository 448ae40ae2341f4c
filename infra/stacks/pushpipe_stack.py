"""The whole pushpipe stack, assembled from ``pushpipe.topology``.

One construct per concern, built in dependency order: storage, streams, secrets,
mail, the HTTP API (its URL goes into function environments), the functions, their
routes, the audit catalogue, then alarms and the dashboard.
"""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack, Tags
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.stacks.api import HttpApi
from infra.stacks.audit import Audit
from infra.stacks.config import DeployConfig
from infra.stacks.functions import (
    ARCHITECTURE,
    RUNTIME,
    RUNTIME_REASON,
    PushpipeFunction,
)
from infra.stacks.identity import People
from infra.stacks.mail import Mail
from infra.stacks.monitoring import Monitoring
from infra.stacks.nag import acknowledge
from infra.stacks.names import cid
from infra.stacks.resources import Resources
from infra.stacks.secrets import Secrets
from infra.stacks.storage import Storage
from infra.stacks.streaming import Streaming
from pushpipe import topology as t


class PushpipeStack(Stack):
    def __init__(
        self, scope: Construct, cid_: str, *, config: DeployConfig, code: lambda_.Code, **kwargs
    ) -> None:
        super().__init__(
            scope,
            cid_,
            stack_name=config.stack_name,
            description="pushpipe: serverless Web Push campaign pipeline",
            **kwargs,
        )
        Tags.of(self).add("project", t.PROJECT)
        self.config = config
        retention = logs.RetentionDays[_RETENTION[config.log_retention_days]]
        self.storage = Storage(self, "Storage")
        self.streaming = Streaming(
            self, "Streaming", buckets=self.storage.buckets, log_retention=retention
        )
        self.secrets = Secrets(
            self,
            "Secrets",
            code=code,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            log_retention=retention,
            tenants=config.tenants,
            runtime_reason=RUNTIME_REASON,
        )
        self.mail = Mail(self, "Mail", config=config)
        self.api = HttpApi(self, "Http", config=config, log_retention=retention)
        self.people = People(self, "People", config=config, api_url=self.api.url)
        self.audit = Audit(
            self,
            "Audit",
            config=config,
            archive=self.storage.buckets[t.ARCHIVE_BUCKET.name],
            access_logs=self.storage.access_logs,
        )
        self.resources = Resources(
            config=config,
            code=code,
            api_url=self.api.url,
            log_retention=retention,
            tables=self.storage.tables,
            buckets=self.storage.buckets,
            queues=self.storage.queues,
            streams=self.streaming.streams,
            delivery_streams=self.streaming.delivery_streams,
            secrets=self.secrets.secrets,
            mail=self.mail,
            audit=self.audit,
            people=self.people,
            dead_letter_queues=list(self.storage.dead_letter_queues),
        )
        self.functions = self._build_functions()
        self.api.add_routes(self.functions, authorizer=self.people.authorizer)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            functions=self.functions,
            dead_letter_queues=self.resources.dead_letter_queues,
            streams=self.streaming.streams,
            delivery_streams=self.streaming.delivery_streams,
            api=self.api,
        )
        self._acknowledge_cdk_internals()
        self._build_outputs()

    def _acknowledge_cdk_internals(self) -> None:
        """Findings on the helper CDK adds for S3 → SQS notifications (a singleton)."""
        for child in self.node.children:
            if child.node.id.startswith("BucketNotificationsHandler"):
                acknowledge(
                    child.node.find_child("Role"),
                    "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                    "service-role/AWSLambdaBasicExecutionRole]",
                    "CDK's BucketNotificationsHandler (runs only during deployment to set the "
                    "audience bucket's notification configuration) ships with this role; "
                    "the role only writes its own logs.",
                )

    def _build_functions(self) -> dict[str, PushpipeFunction]:
        for spec in t.FUNCTIONS:
            fn = PushpipeFunction(self, cid(spec.name, "Fn"), spec=spec, res=self.resources)
            # A function must not run before its secrets hold real keys.
            for seed in self.secrets.seeds:
                fn.function.node.add_dependency(seed)
            self.resources.functions[spec.name] = fn
        return self.resources.functions

    def _build_outputs(self) -> None:
        CfnOutput(
            self,
            "AudienceBucketName",
            value=self.storage.buckets[t.AUDIENCE_BUCKET.name].bucket_name,
            description=f"Drop audience files under s3://<this>/{t.AUDIENCE_PREFIX}",
        )
        CfnOutput(
            self,
            "ArchiveBucketName",
            value=self.storage.buckets[t.ARCHIVE_BUCKET.name].bucket_name,
            description="Firehose archive of sends and pings (Athena tables read it)",
        )
        CfnOutput(self, "ApiUrl", value=self.api.url, description="HTTP API base URL")
        CfnOutput(self, "OidcIssuer", value=self.people.issuer, description="where people sign in")
        CfnOutput(self, "OidcClientId", value=self.people.client_id)
        CfnOutput(self, "OidcAuthorizeUrl", value=self.people.authorize_url)
        CfnOutput(self, "OidcTokenUrl", value=self.people.token_url)
        if self.people.user_pool is not None:
            CfnOutput(self, "UserPoolId", value=self.people.user_pool.user_pool_id)
        CfnOutput(
            self,
            "AthenaWorkGroup",
            value=self.audit.workgroup_name,
            description="Athena workgroup with the named audit queries",
        )
        CfnOutput(
            self,
            "DashboardName",
            value=self.monitoring.dashboard.dashboard_name,
            description="CloudWatch dashboard",
        )
        CfnOutput(self, "AlarmTopicArn", value=self.monitoring.topic.topic_arn)
        for name, key in self.secrets.vapid_public_keys.items():
            CfnOutput(
                self,
                cid(name, "PublicKey"),
                value=key,
                description="VAPID application server key for pushManager.subscribe (public)",
            )
        for name, secret in self.secrets.secrets.items():
            CfnOutput(self, cid(name, "SecretArn"), value=secret.secret_arn)
        for name, fn in self.functions.items():
            CfnOutput(self, cid(name, "FunctionName"), value=fn.function_name)


_RETENTION = {
    1: "ONE_DAY", 3: "THREE_DAYS", 5: "FIVE_DAYS", 7: "ONE_WEEK", 14: "TWO_WEEKS",
    30: "ONE_MONTH", 60: "TWO_MONTHS", 90: "THREE_MONTHS", 120: "FOUR_MONTHS",
    150: "FIVE_MONTHS", 180: "SIX_MONTHS", 365: "ONE_YEAR", 400: "THIRTEEN_MONTHS",
    545: "EIGHTEEN_MONTHS", 731: "TWO_YEARS", 1827: "FIVE_YEARS", 3653: "TEN_YEARS",
}  # fmt: skip
