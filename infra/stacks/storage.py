"""Buckets, tables, queues and the S3 → SQS notifications, built from the topology."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.stacks.nag import acknowledge
from infra.stacks.names import cid
from pushpipe import topology as t

ABORT_UPLOADS_AFTER = Duration.days(7)
NONCURRENT_DAYS = 30
ACCESS_LOG_DAYS = 90
DLQ_RETENTION = Duration.days(14)


def secure_bucket(
    scope: Construct,
    cid: str,
    *,
    access_logs: s3.IBucket | None,
    log_prefix: str = "",
    expire_days: int | None = None,
    removal: RemovalPolicy = RemovalPolicy.RETAIN,
    versioned: bool = False,
) -> s3.Bucket:
    """A private, SSL-only, encrypted bucket with a lifecycle and server access logs;
    ``versioned`` keeps overwritten and deleted objects for NONCURRENT_DAYS (an audience
    replaced mid-send or an archive object deleted by mistake can be recovered)."""
    rules = [
        s3.LifecycleRule(
            id="abort-incomplete-uploads",
            abort_incomplete_multipart_upload_after=ABORT_UPLOADS_AFTER,
        )
    ]
    if expire_days:
        rules.append(s3.LifecycleRule(id="expire", expiration=Duration.days(expire_days)))
    if versioned:
        rules.append(
            s3.LifecycleRule(
                id="expire-noncurrent",
                noncurrent_version_expiration=Duration.days(NONCURRENT_DAYS),
                expired_object_delete_marker=True,
            )
        )
    return s3.Bucket(
        scope,
        cid,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        encryption=s3.BucketEncryption.S3_MANAGED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        lifecycle_rules=rules,
        versioned=versioned,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=log_prefix or None,
        removal_policy=removal,
        auto_delete_objects=False,
    )


def secure_queue(scope: Construct, cid: str, **kwargs) -> sqs.Queue:
    """An SQS queue encrypted with SSE-SQS that refuses non-TLS requests."""
    return sqs.Queue(
        scope, cid, encryption=sqs.QueueEncryption.SQS_MANAGED, enforce_ssl=True, **kwargs
    )


def failure_queue(scope: Construct, cid: str, *, redrive_target: bool = False) -> sqs.Queue:
    """A dead-letter / on-failure destination queue: kept 14 days, alarmed when non-empty.

    cdk-nag recognises a queue named in another queue's redrive policy as a DLQ; a Lambda
    on-failure destination it does not, hence the acknowledgement there.
    """
    queue = secure_queue(scope, cid, retention_period=DLQ_RETENTION)
    if not redrive_target:
        acknowledge(
            queue,
            "AwsSolutions-SQS3",
            "This queue is a Lambda on-failure destination (a dead-letter queue in all but "
            "name); messages here are inspected and redriven by an operator, a second DLQ "
            "would add nothing.",
        )
    return queue


class Storage(Construct):
    """Every bucket, table and queue the topology declares (plus an access-log bucket)."""

    def __init__(self, scope: Construct, cid: str) -> None:
        super().__init__(scope, cid)
        self.buckets: dict[str, s3.Bucket] = {}
        self.tables: dict[str, dynamodb.TableV2] = {}
        self.queues: dict[str, sqs.Queue] = {}
        # (label, queue) of every queue whose depth means lost work: alarmed and dashboarded
        self.dead_letter_queues: list[tuple[str, sqs.IQueue]] = []
        self.access_logs = self._build_access_log_bucket()
        for bucket in t.BUCKETS:
            self._build_bucket(bucket)
        for table in t.TABLES:
            self._build_table(table)
        for queue in t.QUEUES:
            self._build_queue(queue)
        for notification in t.NOTIFICATIONS:
            self._build_notification(notification)

    def _build_access_log_bucket(self) -> s3.Bucket:
        bucket = secure_bucket(self, "AccessLogs", access_logs=None, expire_days=ACCESS_LOG_DAYS)
        return bucket  # cdk-nag knows a log destination needs no access logs of its own

    def _build_bucket(self, spec: t.Bucket) -> None:
        self.buckets[spec.name] = secure_bucket(
            self,
            cid(spec.name, "Bucket"),
            access_logs=self.access_logs,
            log_prefix=f"{spec.name}/",
            expire_days=spec.expire_days,
            versioned=True,  # audiences and the archive: nothing overwritten is lost at once
        )

    def _build_table(self, spec: t.Table) -> None:
        key = dynamodb.AttributeType.STRING
        self.tables[spec.name] = dynamodb.TableV2(
            self,
            cid(spec.name, "Table"),
            partition_key=dynamodb.Attribute(name=spec.pk, type=key),
            sort_key=dynamodb.Attribute(name=spec.sk, type=key) if spec.sk else None,
            billing=dynamodb.Billing.on_demand(),
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            encryption=dynamodb.TableEncryptionV2.aws_managed_key(),
            time_to_live_attribute=spec.ttl_attribute,
            dynamo_stream=dynamodb.StreamViewType.NEW_AND_OLD_IMAGES if spec.stream else None,
            global_secondary_indexes=[
                dynamodb.GlobalSecondaryIndexPropsV2(
                    index_name=index.name,
                    partition_key=dynamodb.Attribute(name=index.pk, type=key),
                    sort_key=dynamodb.Attribute(name=index.sk, type=key) if index.sk else None,
                    projection_type=dynamodb.ProjectionType.KEYS_ONLY
                    if index.keys_only
                    else dynamodb.ProjectionType.ALL,
                )
                for index in spec.indexes
            ]
            or None,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _build_queue(self, spec: t.Queue) -> None:
        dlq = None
        if spec.dlq:
            dead = failure_queue(self, cid(spec.name, "Dlq"), redrive_target=True)
            self.dead_letter_queues.append((f"{spec.name} DLQ", dead))
            dlq = sqs.DeadLetterQueue(queue=dead, max_receive_count=spec.max_receive_count)
        queue = secure_queue(
            self,
            cid(spec.name, "Queue"),
            visibility_timeout=Duration.seconds(spec.visibility_timeout_s),
            dead_letter_queue=dlq,
        )
        if not spec.dlq:
            acknowledge(
                queue,
                "AwsSolutions-SQS3",
                f"topology declares queue {spec.name!r} without a dead-letter queue "
                "(dlq=False): its consumer handles poison messages itself.",
            )
        self.queues[spec.name] = queue

    def _build_notification(self, spec: object) -> None:
        if isinstance(spec, t.S3ToQueue):
            bucket = self._need(self.buckets, spec.bucket, "bucket", spec)
            queue = self._need(self.queues, spec.queue, "queue", spec)
            bucket.add_event_notification(
                s3.EventType.OBJECT_CREATED,
                s3n.SqsDestination(queue),
                s3.NotificationKeyFilter(prefix=spec.prefix),
            )
            return
        raise TypeError(f"no CDK mapping for notification type {type(spec).__name__}: {spec!r}")

    @staticmethod
    def _need(items: dict, name: str, kind: str, spec: object):
        if name not in items:
            raise KeyError(f"{spec!r} names {kind} {name!r}, which the topology does not declare")
        return items[name]
