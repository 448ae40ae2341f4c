"""The one reader of secrets (Secrets Manager, through Powertools Parameters).

Every function reads its secrets here, with one cache age: a rotated secret is picked up
within ``SECRET_MAX_AGE_S`` without a redeploy, and a warm container does not call
Secrets Manager on every request. A secret is a JSON object; an empty one reads as ``{}``,
anything else is a ``ConfigurationError`` that names it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider

from pushpipe.shared.errors import ConfigurationError
from pushpipe.shared.tokens import SigningKeys

SECRET_MAX_AGE_S = 300


class SecretReader:
    def __init__(self, provider: Any = None, max_age_s: int = SECRET_MAX_AGE_S) -> None:
        self.provider = provider or SecretsProvider()
        self.max_age_s = max_age_s
        self._keys: dict[str, tuple[object, SigningKeys]] = {}

    def json(self, name: str) -> dict:
        value = self.provider.get(name, transform="json", max_age=self.max_age_s)
        if value is None or value == "":
            return {}
        if not isinstance(value, dict):
            raise ConfigurationError(f"the secret {name} is not a JSON object")
        return value

    def signing_keys(self, name: str) -> SigningKeys:
        """The HMAC key ring in secret ``name``, parsed again only when the cached secret
        value was refreshed (a rotation)."""
        raw = self.json(name)
        cached = self._keys.get(name)
        if cached is None or cached[0] is not raw:
            cached = self._keys[name] = (raw, SigningKeys.from_secret(raw))
        return cached[1]
