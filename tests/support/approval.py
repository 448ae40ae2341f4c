"""Test support for the approval flow: resources from the topology in moto (in-process),
ports with a recording invoker and sender, and the e-mails moto's SES kept."""

from __future__ import annotations

import base64
import email
import io
import json
import re
from dataclasses import dataclass, field
from email import policy
from typing import Any

import boto3

from pushpipe import topology as t
from pushpipe.approval.devices import DeviceStore
from pushpipe.approval.mail import Mailer
from pushpipe.approval.ports import ApprovalConfig, ApprovalPorts
from pushpipe.approval.store import RequestStore
from pushpipe.audience.writer import AudienceWriter
from pushpipe.shared.aws import AudienceObjects
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore
from pushpipe_local.cloud.provision import create_table
from pushpipe_local.sim.audiences import audience_bytes, recipient
from tests.support.sending import RecordingInvoker, RecordingSender

REGION = "us-east-1"
BUCKET = "test-audience"
REQUESTS = "test-requests"
SUBSCRIPTIONS = "test-subscriptions"
MAIL_FROM = "pushpipe@example.com"
APPROVERS = ("alice@example.com", "bob@example.com", "carol@example.com")
KEYS = SigningKeys.from_secret(
    {"active": "k1", "keys": {"k1": base64.urlsafe_b64encode(b"s" * 32).decode()}}
)
P256DH = "B" + "A" * 86
AUTH = "A" * 22


def real_keys() -> dict[str, str]:
    """A browser-like subscription key pair (a real P-256 point)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    point = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    )
    return {"p256dh": base64.urlsafe_b64encode(point).rstrip(b"=").decode(), "auth": AUTH}


class Clock:
    """Time that moves on by a millisecond each time it is read (so decisions made one
    after the other are ordered, as they are in real life)."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


@dataclass
class Env:
    ports: ApprovalPorts
    config: ApprovalConfig
    invoker: RecordingInvoker
    sender: RecordingSender
    clock: Clock
    s3: Any
    ses_messages: Any = field(default=None)

    def mails(self) -> list[dict]:
        """Every e-mail SES kept: {to, subject, text, html, links}."""
        from moto.core import DEFAULT_ACCOUNT_ID
        from moto.ses.models import ses_backends

        out = []
        for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages:
            out.append(parse_mail(m.destinations, m.raw_data))
        return out

    def mails_to(self, address: str) -> list[dict]:
        return [m for m in self.mails() if address in m["to"]]

    def put_audience(self, key: str, n: int, malformed: int = 0, prefix: str = "sub") -> str:
        subs = [
            recipient(
                f"{prefix}-{i}",
                {
                    "endpoint": f"https://fcm.googleapis.com/fcm/send/{prefix}/{i}",
                    "keys": {"p256dh": P256DH, "auth": AUTH},
                },
            )
            for i in range(n)
        ]
        subs += [
            {"id": f"bad-{i}", "subscription": {"endpoint": "ftp://x"}} for i in range(malformed)
        ]
        body = audience_bytes(
            {
                "id": "draft",
                "tenant": "acme",
                "message": {"title": "x", "url": "https://x.example"},
            },
            subs,
        )
        return self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)["ETag"].strip('"')


_LINK = re.compile(
    r"https?://[^\s\"'<>]+/v1/(?:approval/(?:approve|reject|test)|approvers/device)\?t=[A-Za-z0-9._%~-]+"
)


def parse_mail(destinations: Any, raw: str) -> dict:
    msg = email.message_from_bytes(
        raw.encode() if isinstance(raw, str) else raw, policy=policy.default
    )
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    links = {}
    for link in _LINK.findall(text):
        kind = link.split("/v1/", 1)[1].split("?", 1)[0].split("/")[-1]
        links[kind] = link
    return {
        # moto lists a raw message's recipients from the API call and from its To header
        "to": list(
            dict.fromkeys(
                destinations.get("ToAddresses", [])
                if isinstance(destinations, dict)
                else destinations
            )
        ),
        "subject": str(msg["Subject"]),
        "text": text,
        "html": html,
        "links": links,
    }


def token_of(link: str) -> str:
    from urllib.parse import parse_qs, urlsplit

    return parse_qs(urlsplit(link).query)["t"][0]


def provision() -> tuple[Any, Any]:
    """The approval function's tables, bucket and SES identity. Call inside ``mock_aws()``;
    returns the DynamoDB and S3 clients."""
    ddb = boto3.client("dynamodb", region_name=REGION)
    create_table(ddb, t.REQUESTS_TABLE, REQUESTS)
    create_table(ddb, t.SUBSCRIPTIONS_TABLE, SUBSCRIPTIONS)
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    boto3.client("sesv2", region_name=REGION).create_email_identity(EmailIdentity=MAIL_FROM)
    return ddb, s3


def deploy_handler_env(
    monkeypatch, api_url: str, approvers: str, report_keys: dict[str, str], vapid_public: str
) -> None:
    """Secrets and environment for the approval handler itself, as the stack sets them.
    Call inside ``mock_aws()`` after ``provision()``."""
    from tests.support.pings import SIGNING_SECRET_VALUE

    sm = boto3.client("secretsmanager", region_name=REGION)
    sm.create_secret(Name="signing", SecretString=json.dumps(SIGNING_SECRET_VALUE))
    sm.create_secret(
        Name="vapid", SecretString=json.dumps({"public_key": vapid_public, "private_key": "x"})
    )
    tenants = {tenant: {"report_keys": [key]} for tenant, key in report_keys.items()}
    sm.create_secret(Name="tenants", SecretString=json.dumps({"tenants": tenants}))
    env = {
        t.ENV_REQUESTS_TABLE: REQUESTS,
        t.ENV_AUDIENCE_BUCKET: BUCKET,
        t.ENV_SUBSCRIPTIONS_TABLE: SUBSCRIPTIONS,
        t.ENV_SIGNING_SECRET: "signing",
        t.ENV_VAPID_SECRET: "vapid",
        t.ENV_VAPID_SUBJECT: "mailto:ops@example.com",
        t.ENV_TENANT_SECRET: "tenants",
        t.ENV_MAIL_FROM: MAIL_FROM,
        t.ENV_APPROVER_EMAILS: approvers,
        t.ENV_PUBLIC_API_URL: api_url + "/",
        t.ENV_PING_URL: api_url + "/v1/pings",
        t.ENV_APPROVAL_FUNCTION: "approval",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_TRACE_DISABLED": "1",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)


def make_env(approvers: tuple[str, ...] = APPROVERS, required: int = 1) -> Env:
    """Call inside ``mock_aws()``."""
    ddb, s3 = provision()
    invoker, sender, clock = RecordingInvoker(), RecordingSender(), Clock()
    ports = ApprovalPorts(
        store=RequestStore(REQUESTS, ddb),
        devices=DeviceStore(REQUESTS, ddb),
        objects=AudienceObjects(s3),
        writer=AudienceWriter(s3),
        subscriptions=SubscriptionStore(SUBSCRIPTIONS, ddb),
        mailer=Mailer(MAIL_FROM, None, boto3.client("sesv2", region_name=REGION)),
        signing_keys=lambda: KEYS,
        invoker=invoker,
        sender=lambda: sender,
        clock=clock,
    )
    config = ApprovalConfig(
        audience_bucket=BUCKET,
        approvers=approvers,
        api_url="https://api.example",
        ping_url="https://api.example/v1/pings",
        approvals_required=required,
    )
    return Env(ports, config, invoker, sender, clock, s3)


def read_object(s3, key: str) -> dict:
    return json.load(io.BytesIO(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()))
