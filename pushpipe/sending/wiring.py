"""Builds the send path's ports once per container (warm starts reuse them)."""

from __future__ import annotations

import os
from functools import lru_cache

from aws_lambda_powertools.utilities import parameters

from pushpipe import topology as t
from pushpipe.pings.counters import send_counter_items
from pushpipe.pings.exposures import exposure_items
from pushpipe.push.sender import WebPushSender
from pushpipe.push.vapid import VapidSigner
from pushpipe.sending.runs import RunStore
from pushpipe.sending.service import SendConfig, SendPorts
from pushpipe.shared.aws import ArchiveStream, AudienceObjects, SelfInvoker
from pushpipe.shared.observability import logger
from pushpipe.shared.settings import send_settings
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore

SECRET_MAX_AGE_S = 300


@lru_cache(maxsize=1)
def send_config() -> SendConfig:
    s = send_settings()
    return SendConfig(
        chains=s.chains,
        batch_size=s.batch_size,
        min_remaining_ms=s.min_remaining_ms,
        dry_run=s.dry_run,
        audience_prefix=s.audience_prefix,
        sweep_grace_ms=s.sweep_grace_ms,
    )


def warm() -> None:
    """Build the ports in the init phase of a cold start (secrets, clients, the sender),
    so that the first invocation's time goes to sending. A failure here is only logged:
    the invocation raises it again, with its context."""
    if not os.environ.get(t.ENV_RUNS_TABLE):
        return  # imported outside a deployed function (tests, tools)
    try:
        send_ports()
    except Exception as exc:
        logger.warning("send_batch could not initialise at cold start", extra={"error": str(exc)})


@lru_cache(maxsize=1)
def send_ports() -> SendPorts:
    s = send_settings()
    vapid = parameters.get_secret(s.vapid_secret, transform="json", max_age=SECRET_MAX_AGE_S)
    signing = parameters.get_secret(s.signing_secret, transform="json", max_age=SECRET_MAX_AGE_S)
    sender = WebPushSender(
        VapidSigner(vapid["private_key"], s.vapid_subject),
        concurrency=s.concurrency,
        allow_list=s.allow_list,
    )
    counter_items = exposures = None
    if s.counters_table:
        table = s.counters_table

        def counter_items(tenant, campaign, by_variant, now, chain):
            return send_counter_items(table, shard=f"s{chain}")(tenant, campaign, by_variant, now)

        def exposures(tenant, campaign, groups, now, batch):
            return exposure_items(table, tenant, campaign, groups, now, batch)

    on_pruned = None
    if s.subscriptions_table:
        on_pruned = SubscriptionStore(s.subscriptions_table).delete_many
    return SendPorts(
        runs=RunStore(s.runs_table),
        objects=AudienceObjects(),
        archive=ArchiveStream(s.sends_firehose),
        invoker=SelfInvoker(s.send_function),
        sender=sender,
        signing_keys=SigningKeys.from_secret(signing),
        ping_url=s.ping_url,
        counter_items=counter_items,
        on_pruned=on_pruned,
        exposure_items=exposures,
    )
