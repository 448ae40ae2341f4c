"""Builds the ping_handler's and the aggregate's ports once per container (warm starts
reuse them). Tests call ``reset()`` to rebuild them against fresh mocks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from pushpipe.pings.counters import CounterStore
from pushpipe.pings.ingest import KinesisPingWriter
from pushpipe.shared.ratelimit import WindowLimiter
from pushpipe.shared.secrets import SecretReader
from pushpipe.shared.settings import aggregate_settings, ping_api_settings
from pushpipe.shared.tenants import TenantDirectory
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore


@dataclass
class ApiPorts:
    signing_keys: Callable[[], SigningKeys]  # the current key ring (rotation-aware)
    writer: KinesisPingWriter
    counters: CounterStore
    subscriptions: SubscriptionStore
    tenants: TenantDirectory
    limiter: WindowLimiter  # in the counters table
    max_ping_bytes: int


@lru_cache(maxsize=1)
def api_ports() -> ApiPorts:
    s = ping_api_settings()
    secrets = SecretReader()
    return ApiPorts(
        signing_keys=lambda: secrets.signing_keys(s.signing_secret),
        writer=KinesisPingWriter(s.pings_stream),
        counters=CounterStore(s.counters_table),
        subscriptions=SubscriptionStore(s.subscriptions_table),
        tenants=TenantDirectory(lambda: secrets.json(s.tenant_secret)),
        limiter=WindowLimiter(s.counters_table),
        max_ping_bytes=s.max_ping_bytes,
    )


@lru_cache(maxsize=1)
def counter_store() -> CounterStore:
    return CounterStore(aggregate_settings().counters_table)


def reset() -> None:
    for cached in (api_ports, counter_store, ping_api_settings, aggregate_settings):
        cached.cache_clear()
