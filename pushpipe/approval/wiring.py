"""Builds the approval function's ports once per container (warm starts reuse them).
Tests call ``reset()`` to rebuild them against fresh mocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pushpipe.approval.devices import DeviceStore
from pushpipe.approval.mail import Mailer
from pushpipe.approval.ports import ApprovalConfig, ApprovalPorts
from pushpipe.approval.store import RequestStore
from pushpipe.audience.writer import AudienceWriter
from pushpipe.push.endpoints import deployed_policy
from pushpipe.shared.aws import AudienceObjects, SelfInvoker
from pushpipe.shared.secrets import SecretReader
from pushpipe.shared.settings import approval_settings
from pushpipe.shared.tenants import TenantDirectory
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore


@dataclass
class ApprovalWiring:
    ports: ApprovalPorts
    config: ApprovalConfig
    tenants: TenantDirectory
    vapid_public_key: Callable[[], str]  # , for the device registration page


@lru_cache(maxsize=1)
def wiring() -> ApprovalWiring:
    s = approval_settings()
    secrets = SecretReader()

    def signing_keys() -> SigningKeys:
        return secrets.signing_keys(s.signing_secret)

    def vapid() -> dict:
        return secrets.json(s.vapid_secret)

    @lru_cache(maxsize=1)
    def sender():
        from pushpipe.push.sender import WebPushSender
        from pushpipe.push.vapid import VapidSigner

        return WebPushSender(
            VapidSigner(vapid()["private_key"], s.vapid_subject),
            concurrency=10,
            policy=deployed_policy(),
        )

    ports = ApprovalPorts(
        store=RequestStore(s.requests_table),
        devices=DeviceStore(s.requests_table),
        objects=AudienceObjects(),
        writer=AudienceWriter(),
        subscriptions=SubscriptionStore(s.subscriptions_table),
        mailer=Mailer(s.mail_from, s.mail_configuration_set),
        signing_keys=signing_keys,
        invoker=SelfInvoker(s.function_name),
        sender=sender,
    )
    config = ApprovalConfig(
        audience_bucket=s.audience_bucket,
        approvers=s.approver_emails,
        api_url=s.public_api_url.rstrip("/"),
        ping_url=s.ping_url,
        audience_prefix=s.audience_prefix,
        approvals_required=s.approvals_required,
        request_ttl_s=s.request_ttl_hours * 3600,
        endpoint_policy=deployed_policy(),
    )
    tenants = TenantDirectory(lambda: secrets.json(s.tenant_secret))
    return ApprovalWiring(ports, config, tenants, lambda: vapid().get("public_key", ""))


def reset() -> None:
    wiring.cache_clear()
    approval_settings.cache_clear()
