"""What the approval flow needs from the outside world, and its settings.

``ApprovalPorts`` is filled by ``pushpipe.approval.wiring`` with the AWS adapters (the
request store, S3, SES, the self-invoker) and a Web Push sender built on first use.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pushpipe.approval.devices import DeviceStore
from pushpipe.approval.mail import Mail
from pushpipe.approval.store import RequestStore
from pushpipe.audience.writer import AudienceSink
from pushpipe.push.endpoints import BROWSERS_ONLY, EndpointPolicy
from pushpipe.push.models import PushMessage, SendResult
from pushpipe.shared.ports import AudienceSource, Invoker
from pushpipe.shared.settings import ApprovalSettings, default_of
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore


class Sender(Protocol):
    def send(self, messages: list[PushMessage], **kwargs: Any) -> list[SendResult]: ...


class MailSender(Protocol):
    def send(self, to: str, mail: Mail) -> str:
        """Send one e-mail; returns the provider's message id."""
        ...


@dataclass
class ApprovalConfig:
    audience_bucket: str
    approvers: tuple[str, ...]
    api_url: str  # the HTTP API's base URL: links are <api_url>/v1/approval/<action>?t=...
    ping_url: str
    audience_prefix: str = default_of(ApprovalSettings, "audience_prefix")
    approvals_required: int = default_of(ApprovalSettings, "approvals_required")
    request_ttl_s: int = default_of(ApprovalSettings, "request_ttl_hours") * 3600
    endpoint_policy: EndpointPolicy = BROWSERS_ONLY  # where test pushes may go
    release_grace_s: int = 900  # an approved request not sent by then is released again


@dataclass
class ApprovalPorts:
    store: RequestStore
    devices: DeviceStore  # approvers' test devices, in the same table
    objects: AudienceSource
    writer: AudienceSink
    subscriptions: SubscriptionStore
    mailer: MailSender
    signing_keys: Callable[[], SigningKeys]
    invoker: Invoker
    sender: Callable[[], Sender]  # built on first use (VAPID key from Secrets Manager)
    clock: Callable[[], float] = time.time
