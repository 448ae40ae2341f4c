"""What the functions of the stack can be granted, by logical name (``Resources``), and
the environment values that come from deploy parameters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs

from infra.stacks.audit import Audit
from infra.stacks.config import DeployConfig
from infra.stacks.identity import People
from infra.stacks.mail import Mail
from pushpipe import topology as t

CATALOGS = {c.name: c for c in t.CATALOGS}
ISSUERS = {i.name: i for i in t.ISSUERS}


def mailers() -> dict[str, t.Mail]:
    return {m.name: m for m in t.MAILERS}


@dataclass
class Resources:
    """What functions can be granted, by logical name, plus stack-wide inputs."""

    config: DeployConfig
    code: lambda_.Code
    api_url: str
    log_retention: logs.RetentionDays
    tables: dict[str, dynamodb.TableV2]
    buckets: dict[str, s3.Bucket]
    queues: dict[str, sqs.Queue]
    streams: dict[str, kinesis.Stream]
    delivery_streams: dict[str, firehose.CfnDeliveryStream]
    secrets: dict[str, secretsmanager.Secret]
    mail: Mail | None = None
    audit: Audit | None = None
    people: People | None = None
    functions: dict[str, Any] = field(default_factory=dict)  # name -> PushpipeFunction
    # (label, queue) of every dead-letter / on-failure queue, for alarms and the dashboard
    dead_letter_queues: list[tuple[str, sqs.IQueue]] = field(default_factory=list)

    def physical(self, name: str) -> str:
        """The value a function finds in the resource's env var."""
        if name in self.tables:
            return self.tables[name].table_name
        if name in self.buckets:
            return self.buckets[name].bucket_name
        if name in self.queues:
            return self.queues[name].queue_url
        if name in self.streams:
            return self.streams[name].stream_name
        if name in self.delivery_streams:
            return self.delivery_streams[name].ref
        if name in self.secrets:
            return self.secrets[name].secret_arn  # a full ARN works as SecretId
        if self.people is not None and name in ISSUERS:
            return self.people.issuer
        if self.mail is not None and name in mailers():
            return self.mail.config.mail_from
        if self.audit is not None and name in CATALOGS:
            return self.audit.workgroup.ref  # the name, and a dependency on the workgroup
        raise KeyError(name)


def deploy_settings(config: DeployConfig) -> dict[str, str]:
    """Env values that come from deploy parameters and replace the topology defaults."""
    return {
        t.ENV_VAPID_SUBJECT: config.vapid_subject,
        t.ENV_APPROVER_EMAILS: ",".join(config.approver_emails),
        t.ENV_PUSH_HOSTS: ",".join(config.push_hosts),
    }
