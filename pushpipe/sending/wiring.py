"""Builds the send path's ports once per container (warm starts reuse them)."""

from __future__ import annotations

import os
from functools import lru_cache

from pushpipe import topology as t
from pushpipe.pings.counters import send_counter_items
from pushpipe.pings.exposures import exposure_items
from pushpipe.push.endpoints import deployed_policy
from pushpipe.push.sender import WebPushSender
from pushpipe.push.vapid import VapidSigner
from pushpipe.sending.ports import SendConfig, SendPorts
from pushpipe.sending.run_store import RunStore
from pushpipe.shared.aws import ArchiveStream, AudienceObjects, SelfInvoker
from pushpipe.shared.observability import logger
from pushpipe.shared.secrets import SecretReader
from pushpipe.shared.settings import send_settings
from pushpipe.subscriptions.store import SubscriptionStore


@lru_cache(maxsize=1)
def send_config() -> SendConfig:
    return SendConfig.from_settings(send_settings())


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
    secrets = SecretReader()
    vapid = secrets.json(s.vapid_secret)
    sender = WebPushSender(
        VapidSigner(vapid["private_key"], s.vapid_subject),
        concurrency=s.concurrency,
        allow_list=s.allow_list,
        policy=deployed_policy(),
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
        signing_keys=secrets.signing_keys(s.signing_secret),
        ping_url=s.ping_url,
        counter_items=counter_items,
        on_pruned=on_pruned,
        exposure_items=exposures,
    )
