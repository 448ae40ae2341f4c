"""The deploy-time secret seeder: real keys in the readers' formats, never overwritten."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from infra.runtime import secret_seeder
from pushpipe.push.vapid import VapidSigner
from pushpipe.shared.tenants import TenantDirectory
from pushpipe.shared.tokens import SigningKeys

PLACEHOLDER = json.dumps(
    {"seeded": False, "placeholder": "Zx81kq0PLm"}
)  # as CloudFormation makes it


@pytest.fixture
def sm(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def _new(sm, name: str) -> str:
    return sm.create_secret(Name=name, SecretString=PLACEHOLDER)["ARN"]


def _value(sm, arn: str) -> dict:
    return json.loads(sm.get_secret_value(SecretId=arn)["SecretString"])


def test_vapid_secret_gets_a_key_pair_the_sender_can_sign_with(sm):
    arn = _new(sm, "vapid")
    assert secret_seeder.seed(arn, "vapid", client=sm) == "seeded"
    value = _value(sm, arn)
    signer = VapidSigner(value["private_key"], "mailto:ops@example.com")
    assert signer.public_key == value["public_key"]
    assert signer.headers_for("https://fcm.googleapis.com/fcm/send/abc")["Authorization"]


def test_a_seeded_secret_is_never_replaced(sm):
    arn = _new(sm, "vapid")
    secret_seeder.seed(arn, "vapid", client=sm)
    first = _value(sm, arn)
    assert secret_seeder.seed(arn, "vapid", client=sm) == "kept"
    assert _value(sm, arn) == first


def test_an_operator_written_value_is_kept_even_if_not_json(sm):
    arn = sm.create_secret(Name="manual", SecretString="-----BEGIN PRIVATE KEY-----...")["ARN"]
    assert secret_seeder.seed(arn, "vapid", client=sm) == "kept"


def test_signing_secret_has_an_active_32_byte_key(sm):
    arn = _new(sm, "signing")
    secret_seeder.seed(arn, "hmac", client=sm)
    keys = SigningKeys.from_secret(_value(sm, arn))
    assert keys.active == "k1"
    assert len(keys.keys["k1"]) == 32
    other = _new(sm, "signing2")
    secret_seeder.seed(other, "hmac", client=sm)
    assert _value(sm, other) != _value(sm, arn)


def test_tenant_directory_gets_keys_per_tenant_and_new_tenants_are_added_later(sm):
    arn = _new(sm, "tenants")
    assert secret_seeder.seed(arn, "json", ["acme", "globex"], client=sm) == "seeded"
    first = _value(sm, arn)
    directory = TenantDirectory(lambda: _value(sm, arn))
    acme_key = first["tenants"]["acme"]["report_keys"][0]
    assert directory.authorize_report("acme", f"Bearer {acme_key}")

    assert secret_seeder.seed(arn, "json", ["acme", "globex", "initech"], client=sm) == (
        "added 1 tenants"
    )
    second = _value(sm, arn)
    assert second["tenants"]["acme"] == first["tenants"]["acme"]  # existing keys untouched
    assert set(second["tenants"]) == {"acme", "globex", "initech"}
    assert secret_seeder.seed(arn, "json", ["acme"], client=sm) == "kept"  # never removes


def test_plain_json_secret_starts_empty(sm):
    arn = _new(sm, "config")
    secret_seeder.seed(arn, "json", client=sm)
    assert _value(sm, arn) == {}


class _Responses:
    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def __call__(self, request, timeout):
        self.bodies.append(json.loads(request.data))
        assert request.get_method() == "PUT"

        class _Ok:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return False

            def read(self):
                return b""

        return _Ok()


def _event(request_type: str, **props) -> dict:
    return {
        "RequestType": request_type,
        "ResponseURL": "https://cloudformation-custom-resource-response.example/presigned",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/Pushpipe/x",
        "RequestId": "r-1",
        "LogicalResourceId": "SecretsVapidSeed",
        "ResourceProperties": props,
    }


def test_handler_answers_cloudformation_success_and_failure(sm, monkeypatch):
    responses = _Responses()
    monkeypatch.setattr(secret_seeder.urllib.request, "urlopen", responses)
    monkeypatch.setattr(secret_seeder.boto3, "client", lambda *_a, **_k: sm)
    arn = _new(sm, "vapid")

    secret_seeder.handler(_event("Create", SecretId=arn, Kind="vapid"), None)
    assert responses.bodies[-1]["Status"] == "SUCCESS"
    assert responses.bodies[-1]["Data"] == {
        "Outcome": "seeded",
        "PublicKey": _value(sm, arn)["public_key"],  # the public half only
    }
    assert "PRIVATE" not in json.dumps(responses.bodies)

    secret_seeder.handler(_event("Create", SecretId=_new(sm, "odd"), Kind="rsa"), None)
    assert responses.bodies[-1]["Status"] == "FAILED"
    assert "unknown secret kind 'rsa'" in responses.bodies[-1]["Reason"]

    before = _value(sm, arn)
    secret_seeder.handler(_event("Delete", SecretId=arn, Kind="vapid"), None)
    assert responses.bodies[-1]["Status"] == "SUCCESS"
    assert _value(sm, arn) == before
