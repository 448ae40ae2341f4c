"""The recorded events in ``tests/events/`` have the shapes AWS delivers (checked against
Powertools' event models), and the builders change only what a test is about."""

from __future__ import annotations

import json
from urllib.parse import unquote_plus

import pytest
from aws_lambda_powertools.utilities.parser.models import (
    APIGatewayProxyEventV2Model,
    KinesisDataStreamModel,
    S3Model,
    SqsModel,
)

from pushpipe.sending.runs import Cursor
from tests.support.events import event_names, http_event, kinesis_event, load_event, sqs_s3_event

ACTIONS = {"send_chain": "chain", "send_sweep": "sweep", "approval_sweep": "sweep"}


def test_every_trigger_has_a_recorded_event() -> None:
    assert set(event_names()) >= {
        "sqs_s3_object_created",
        "sqs_s3_test_event",
        "apigw_http_v2",
        "kinesis_batch",
        "send_chain",
        "send_sweep",
        "scheduled",
        "approval_sweep",
    }


def test_the_audience_notification_is_an_s3_event_inside_an_sqs_message() -> None:
    sqs = SqsModel.model_validate(load_event("sqs_s3_object_created"))
    s3 = S3Model.model_validate(json.loads(sqs.Records[0].body))
    assert s3.Records[0].eventName.startswith("ObjectCreated")
    # S3 URL-encodes keys: what a handler must decode before reading the object
    assert s3.Records[0].s3.object.key == "audience/spring+sale%3A+week+1.json"


def test_the_s3_test_event_comes_in_the_same_queue() -> None:
    sqs = SqsModel.model_validate(load_event("sqs_s3_test_event"))
    assert json.loads(sqs.Records[0].body)["Event"] == "s3:TestEvent"


def test_sqs_s3_event_encodes_the_key_as_s3_does() -> None:
    key = "audience/été 2026/50% off+more.json"
    event = sqs_s3_event("bucket-1", key, '"abc"', size=7)
    s3 = S3Model.model_validate(json.loads(SqsModel.model_validate(event).Records[0].body))
    obj = s3.Records[0].s3.object
    assert " " not in obj.key and unquote_plus(obj.key) == key
    assert (s3.Records[0].s3.bucket.name, obj.eTag, obj.size) == ("bucket-1", "abc", 7)


def test_http_events_are_api_gateway_v2_requests() -> None:
    APIGatewayProxyEventV2Model.model_validate(load_event("apigw_http_v2"))
    built = APIGatewayProxyEventV2Model.model_validate(
        http_event("DELETE", "/v1/subscriptions/x", b"\x00\xff", query={"a": "1"})
    )
    assert built.requestContext.http.method == "DELETE"
    assert built.rawPath == "/v1/subscriptions/x" and built.isBase64Encoded
    assert built.rawQueryString == "a=1"


def test_kinesis_events_carry_the_records_data() -> None:
    KinesisDataStreamModel.model_validate(load_event("kinesis_batch"))
    built = KinesisDataStreamModel.model_validate(
        kinesis_event([{"PartitionKey": "p", "SequenceNumber": "42", "Data": b'{"a":1}'}])
    )
    assert built.Records[0].kinesis.data == b'{"a":1}'
    assert built.Records[0].kinesis.sequenceNumber == "42"


@pytest.mark.parametrize("name", sorted(ACTIONS))
def test_action_events_name_their_action(name: str) -> None:
    assert load_event(name)["action"] == ACTIONS[name]


def test_the_chain_hand_off_is_a_cursor() -> None:
    event = load_event("send_chain")
    cursor = Cursor.from_event(event["cursor"])
    assert cursor.to_event() == event


def test_loaded_events_are_copies() -> None:
    load_event("send_sweep")["action"] = "changed"
    assert load_event("send_sweep")["action"] == "sweep"


def test_an_unknown_event_says_which_exist() -> None:
    with pytest.raises(FileNotFoundError, match="kinesis_batch"):
        load_event("nope")
