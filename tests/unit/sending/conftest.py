"""The ``world`` fixture: S3, the runs table and the sends stream in moto, wired into
``SendPorts`` with a recording sender."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from pushpipe import topology as t
from pushpipe.sending import service as sending
from pushpipe.sending.run_store import RunStore
from pushpipe.sending.service import SendPorts
from pushpipe.shared.aws import ArchiveStream
from pushpipe.shared.tokens import SigningKeys
from pushpipe_local.cloud.provision import create_table
from tests.support.sending import (
    BUCKET,
    STREAM,
    TABLE,
    Clock,
    CountingObjects,
    RecordingInvoker,
    RecordingSender,
)


@pytest.fixture
def world(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.create_bucket(Bucket="archive")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        create_table(ddb, t.RUNS_TABLE, TABLE)
        boto3.client("firehose", region_name="us-east-1").create_delivery_stream(
            DeliveryStreamName=STREAM,
            ExtendedS3DestinationConfiguration={
                "RoleARN": "arn:aws:iam::123456789012:role/f",
                "BucketARN": "arn:aws:s3:::archive",
                "Prefix": "sends/",
            },
        )
        clock = Clock()
        ports = SendPorts(
            runs=RunStore(TABLE, ddb, clock=clock),
            objects=CountingObjects(),
            archive=ArchiveStream(STREAM, boto3.client("firehose", region_name="us-east-1")),
            invoker=RecordingInvoker(),
            sender=RecordingSender(),
            signing_keys=SigningKeys.from_secret({"active": "k", "keys": {"k": "k" * 43}}),
            ping_url="https://api.example/v1/pings",
        )
        sending.forget_streams()
        yield ports, clock, s3
        sending.forget_streams()
