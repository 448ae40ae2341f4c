"""Builds the ping_handler's and the aggregate's ports once per container (warm starts
reuse them). Tests call ``reset()`` to rebuild them against fresh mocks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from pushpipe.pings.counters import CounterStore
from pushpipe.pings.ingest import KinesisPingWriter
from pushpipe.shared.errors import ConfigurationError
from pushpipe.shared.settings import aggregate_settings, ping_api_settings
from pushpipe.shared.tenants import TenantDirectory
from pushpipe.shared.tokens import SigningKeys
from pushpipe.subscriptions.store import SubscriptionStore

SECRET_MAX_AGE_S = 300


def _as_dict(value: object) -> dict:
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError("the secret is not a JSON object")
    return value


class KeyRing:
    """Signing keys from Secrets Manager, cached by Powertools Parameters for
    ``SECRET_MAX_AGE_S`` so a rotation is picked up without a redeploy."""

    def __init__(self, provider: SecretsProvider, name: str) -> None:
        self.provider, self.name = provider, name
        self._raw: dict | None = None
        self._keys: SigningKeys | None = None

    def keys(self) -> SigningKeys:
        raw = _as_dict(self.provider.get(self.name, transform="json", max_age=SECRET_MAX_AGE_S))
        if raw is not self._raw or self._keys is None:
            self._keys, self._raw = SigningKeys.from_secret(raw), raw
        return self._keys


@dataclass
class ApiPorts:
    keys: KeyRing
    writer: KinesisPingWriter
    counters: CounterStore
    subscriptions: SubscriptionStore
    tenants: TenantDirectory
    max_ping_bytes: int


@lru_cache(maxsize=1)
def api_ports() -> ApiPorts:
    s = ping_api_settings()
    secrets = SecretsProvider()
    return ApiPorts(
        keys=KeyRing(secrets, s.signing_secret),
        writer=KinesisPingWriter(s.pings_stream),
        counters=CounterStore(s.counters_table),
        subscriptions=SubscriptionStore(s.subscriptions_table),
        tenants=TenantDirectory(
            lambda: _as_dict(
                secrets.get(s.tenant_secret, transform="json", max_age=SECRET_MAX_AGE_S)
            )
        ),
        max_ping_bytes=s.max_ping_bytes,
    )


@lru_cache(maxsize=1)
def counter_store() -> CounterStore:
    return CounterStore(aggregate_settings().counters_table)


def reset() -> None:
    for cached in (api_ports, counter_store, ping_api_settings, aggregate_settings):
        cached.cache_clear()
