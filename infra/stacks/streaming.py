"""Kinesis data streams and Firehose delivery streams into the archive bucket."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kinesis as kinesis
from aws_cdk import aws_kinesisfirehose as firehose
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from infra.stacks.nag import acknowledge
from infra.stacks.names import cid
from pushpipe import topology as t

BUFFER_INTERVAL_S = 300  # Firehose flushes every 5 minutes or 64 MiB, whichever first
BUFFER_SIZE_MB = 64
# Firehose "custom prefix" expressions: the archive is partitioned by hour, UTC.
HOUR_PARTITION = "!{timestamp:yyyy/MM/dd/HH}/"


def archive_prefix(prefix: str) -> str:
    """``sends/`` → ``sends/!{timestamp:yyyy/MM/dd/HH}/`` (objects land in sends/2026/11/22/09/)."""
    return f"{prefix.rstrip('/')}/{HOUR_PARTITION}"


def error_prefix(prefix: str) -> str:
    return f"errors/{prefix.rstrip('/')}/!{{firehose:error-output-type}}/{HOUR_PARTITION}"


class Streaming(Construct):
    """Every Kinesis stream and Firehose delivery stream the topology declares."""

    def __init__(
        self,
        scope: Construct,
        cid_: str,
        *,
        buckets: Mapping[str, s3.IBucket],
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, cid_)
        self._buckets = buckets
        self._retention = log_retention
        self.streams: dict[str, kinesis.Stream] = {}
        self.delivery_streams: dict[str, firehose.CfnDeliveryStream] = {}
        for stream in t.STREAMS:
            self._build_stream(stream)
        for delivery in t.DELIVERY_STREAMS:
            self._build_delivery_stream(delivery)

    def _build_stream(self, spec: t.Stream) -> None:
        # On-demand capacity: ping bursts (300k in 30 min) need no shard planning.
        self.streams[spec.name] = kinesis.Stream(
            self,
            cid(spec.name, "Stream"),
            stream_mode=kinesis.StreamMode.ON_DEMAND,
            encryption=kinesis.StreamEncryption.MANAGED,
            retention_period=Duration.hours(24),
        )

    def _build_delivery_stream(self, spec: t.DeliveryStream) -> None:
        if spec.bucket not in self._buckets:
            raise KeyError(f"{spec!r} delivers into bucket {spec.bucket!r}, which is not declared")
        bucket = self._buckets[spec.bucket]
        name = cid(spec.name)
        log_group = logs.LogGroup(
            self,
            f"{name}FirehoseLogs",
            retention=self._retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        log_stream = logs.LogStream(
            self, f"{name}FirehoseLogStream", log_group=log_group, log_stream_name="S3Delivery"
        )
        role = iam.Role(
            self,
            f"{name}FirehoseRole",
            assumed_by=iam.ServicePrincipal(
                "firehose.amazonaws.com",
                conditions={"StringEquals": {"sts:ExternalId": Stack.of(self).account}},
            ),
            description=f"Firehose {spec.name}: write the archive bucket, read its source",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:AbortMultipartUpload", "s3:GetObject", "s3:PutObject"],
                resources=[
                    bucket.arn_for_objects(f"{spec.prefix.rstrip('/')}/*"),
                    bucket.arn_for_objects("errors/*"),
                ],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(actions=["logs:PutLogEvents"], resources=[log_group.log_group_arn])
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{_ref(bucket)}.Arn>/{spec.prefix.rstrip('/')}/*]",
            "Firehose writes one object per buffer flush under its own archive prefix; object "
            "keys are generated (date path + random suffix), so only a prefix can be named.",
        )
        acknowledge(
            role,
            f"AwsSolutions-IAM5[Resource::<{_ref(bucket)}.Arn>/errors/*]",
            "Firehose writes records it could not deliver under errors/ with generated keys; "
            "only the prefix can be named.",
        )
        source = None
        encryption = None
        if spec.source_stream:
            if spec.source_stream not in self.streams:
                raise KeyError(
                    f"{spec!r} reads stream {spec.source_stream!r}, which is not declared"
                )
            stream = self.streams[spec.source_stream]
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=[
                        "kinesis:DescribeStream",
                        "kinesis:DescribeStreamSummary",
                        "kinesis:GetShardIterator",
                        "kinesis:GetRecords",
                        "kinesis:ListShards",
                    ],
                    resources=[stream.stream_arn],
                )
            )
            source = firehose.CfnDeliveryStream.KinesisStreamSourceConfigurationProperty(
                kinesis_stream_arn=stream.stream_arn, role_arn=role.role_arn
            )
        else:
            encryption = (
                firehose.CfnDeliveryStream.DeliveryStreamEncryptionConfigurationInputProperty(
                    key_type="AWS_OWNED_CMK"
                )
            )
        delivery = firehose.CfnDeliveryStream(
            self,
            f"{name}Firehose",
            delivery_stream_type="KinesisStreamAsSource" if source else "DirectPut",
            kinesis_stream_source_configuration=source,
            delivery_stream_encryption_configuration_input=encryption,
            extended_s3_destination_configuration=firehose.CfnDeliveryStream.ExtendedS3DestinationConfigurationProperty(
                bucket_arn=bucket.bucket_arn,
                role_arn=role.role_arn,
                prefix=archive_prefix(spec.prefix),
                error_output_prefix=error_prefix(spec.prefix),
                compression_format="GZIP",
                buffering_hints=firehose.CfnDeliveryStream.BufferingHintsProperty(
                    interval_in_seconds=BUFFER_INTERVAL_S, size_in_m_bs=BUFFER_SIZE_MB
                ),
                cloud_watch_logging_options=firehose.CfnDeliveryStream.CloudWatchLoggingOptionsProperty(
                    enabled=True,
                    log_group_name=log_group.log_group_name,
                    log_stream_name=log_stream.log_stream_name,
                ),
            ),
        )
        # The role's policy must exist before Firehose validates access to the bucket.
        delivery.node.add_dependency(role.node.find_child("DefaultPolicy"))
        if source:
            acknowledge(
                delivery,
                "AwsSolutions-KDF1",
                f"Firehose {spec.name} reads from a Kinesis stream encrypted with the AWS managed "
                "key; server-side encryption cannot be set on a stream-sourced delivery stream "
                "and the archive bucket encrypts at rest.",
            )
        self.delivery_streams[spec.name] = delivery


def _ref(construct) -> str:
    """The logical id cdk-nag prints for a resource in a finding (``<LogicalId.Arn>``)."""
    return Stack.of(construct).get_logical_id(construct.node.default_child)
