"""Creating resources exactly as the topology declares them (local cloud and tests).

Physical names are the logical names under ``PREFIX``; ``create_resources`` makes every
bucket, queue (with its dead-letter queue), S3 notification, table, stream, SES identity
and delivery stream of ``pushpipe.topology`` in moto; ``resource_env`` gives a function
the env vars that name what it ``uses``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from pushpipe import topology as t

ACCOUNT = "123456789012"
PREFIX = "pushpipe-local"

# The SES identity of the local cloud (moto refuses mail from unverified senders).
LOCAL_MAIL_FROM = "pushpipe@pushpipe.local"
LOCAL_CONFIGURATION_SET = f"{PREFIX}-mail"


def physical_name(kind: str, name: str) -> str:
    if kind == "secret":
        return f"{PREFIX}/{name}"
    return f"{PREFIX}-{name}"


class _Declared(Protocol):
    """A resource of the topology that a function can use, and its env var."""

    @property
    def name(self) -> str: ...

    @property
    def env(self) -> str | None: ...


# What a function's ``uses`` can name, by the kind its physical name is made for.
RESOURCE_KINDS: dict[str, tuple[_Declared, ...]] = {
    "table": t.TABLES,
    "bucket": t.BUCKETS,
    "firehose": t.DELIVERY_STREAMS,
    "secret": t.SECRETS,
    "queue": t.QUEUES,
    "stream": t.STREAMS,
}


def resource_env(fn: t.Function) -> dict[str, str]:
    """The env vars that carry the physical names of the resources ``fn`` uses."""
    return {
        item.env: physical_name(kind, item.name)
        for used in fn.uses
        for kind, group in RESOURCE_KINDS.items()
        for item in group
        if item.name == used and item.env
    }


def create_table(client: Any, table: t.Table, name: str) -> None:
    """A DynamoDB table with the topology's key schema, indexes, TTL and stream."""
    attrs = {table.pk: "S"}
    keys = [{"AttributeName": table.pk, "KeyType": "HASH"}]
    if table.sk:
        attrs[table.sk] = "S"
        keys.append({"AttributeName": table.sk, "KeyType": "RANGE"})
    gsis = []
    for ix in table.indexes:
        attrs.setdefault(ix.pk, "S")
        schema = [{"AttributeName": ix.pk, "KeyType": "HASH"}]
        if ix.sk:
            attrs.setdefault(ix.sk, "S")
            schema.append({"AttributeName": ix.sk, "KeyType": "RANGE"})
        gsis.append(
            {
                "IndexName": ix.name,
                "KeySchema": schema,
                "Projection": {"ProjectionType": "KEYS_ONLY" if ix.keys_only else "ALL"},
            }
        )
    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": keys,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": k, "AttributeType": v} for k, v in attrs.items()
        ],
    }
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    if table.stream:
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
    client.create_table(**kwargs)
    if table.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": table.ttl_attribute},
        )


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def create_queues(sqs: Any, visibility_s: int) -> dict[str, str]:
    """Every queue, and the dead-letter queue of those that have one: {logical name: URL}
    (a dead-letter queue is ``<name>-dlq``)."""
    urls: dict[str, str] = {}
    for q in t.QUEUES:
        name = physical_name("queue", q.name)
        attrs = {"VisibilityTimeout": str(visibility_s)}
        if q.dlq:
            dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
            urls[f"{q.name}-dlq"] = dlq
            attrs["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": _queue_arn(sqs, dlq),
                    "maxReceiveCount": str(q.max_receive_count),
                }
            )
        urls[q.name] = sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]
    return urls


def create_notifications(s3: Any, sqs: Any, queue_urls: dict[str, str]) -> None:
    """S3 object-created notifications into their queues."""
    for n in t.NOTIFICATIONS:
        url = queue_urls[n.queue]
        s3.put_bucket_notification_configuration(
            Bucket=physical_name("bucket", n.bucket),
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": _queue_arn(sqs, url),
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": n.prefix}]}},
                    }
                ]
            },
        )
        drain_test_event(sqs, url)


def drain_test_event(sqs: Any, queue_url: str) -> None:
    """S3 sends an ``s3:TestEvent`` when notifications are configured; the handler
    ignores it too, but draining it keeps the first invocation for real work."""
    got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
    for m in got.get("Messages", []):
        if "s3:TestEvent" in m["Body"]:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])


def create_delivery_streams(firehose: Any) -> None:
    """Firehose delivery streams (direct put) into their bucket and prefix."""
    for d in t.DELIVERY_STREAMS:
        firehose.create_delivery_stream(
            DeliveryStreamName=physical_name("firehose", d.name),
            DeliveryStreamType="DirectPut",
            ExtendedS3DestinationConfiguration={
                "RoleARN": f"arn:aws:iam::{ACCOUNT}:role/firehose",
                "BucketARN": f"arn:aws:s3:::{physical_name('bucket', d.bucket)}",
                "Prefix": d.prefix,
                "BufferingHints": {"SizeInMBs": 1, "IntervalInSeconds": 60},
            },
        )


def create_resources(client: Callable[[str], Any], visibility_s: int) -> dict[str, str]:
    """Every resource of the topology, through ``client(service)``; returns the queue
    URLs by logical name."""
    s3, sqs = client("s3"), client("sqs")
    for b in t.BUCKETS:
        s3.create_bucket(Bucket=physical_name("bucket", b.name))
    queue_urls = create_queues(sqs, visibility_s)
    create_notifications(s3, sqs, queue_urls)
    for tb in t.TABLES:
        create_table(client("dynamodb"), tb, physical_name("table", tb.name))
    kinesis = client("kinesis")
    for st in t.STREAMS:
        kinesis.create_stream(StreamName=physical_name("stream", st.name), ShardCount=st.shards)
    if t.MAILERS:
        sesv2 = client("sesv2")
        sesv2.create_configuration_set(ConfigurationSetName=LOCAL_CONFIGURATION_SET)
        sesv2.create_email_identity(EmailIdentity=LOCAL_MAIL_FROM)
    create_delivery_streams(client("firehose"))
    return queue_urls
