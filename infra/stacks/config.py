"""Deploy parameters, read once from CDK context and validated.

Pass them with ``cdk deploy -c pushpipe:vapidSubject=mailto:ops@example.com ...`` (the
``make deploy`` target does it from make variables) or put them in ``cdk.json``'s
``context``. Lists accept a JSON list or a comma-separated string.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

PREFIX = "pushpipe:"
_EMAIL = re.compile(r"^[^@\s]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_HTTPS = r"^https://[^\s/]+(/[^\s]*)?$"
_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# context key -> field name
KEYS = {
    "stackName": "stack_name",
    "vapidSubject": "vapid_subject",
    "approverEmails": "approver_emails",
    "sesIdentity": "ses_identity",
    "tenants": "tenants",
    "alarmEmail": "alarm_email",
    "apiRateLimit": "api_rate_limit",
    "apiBurstLimit": "api_burst_limit",
    "logRetentionDays": "log_retention_days",
    "pushHosts": "push_hosts",
    # people sign in: a Cognito user pool unless oidcIssuer names another OIDC issuer
    "oidcIssuer": "oidc_issuer",
    "oidcClientId": "oidc_client_id",
    "oidcAuthorizeUrl": "oidc_authorize_url",
    "oidcTokenUrl": "oidc_token_url",
    "oidcGroupsClaim": "oidc_groups_claim",
    "cognitoDomainPrefix": "cognito_domain_prefix",
}


class ConfigError(ValueError):
    """A deploy parameter is missing or invalid; the message names the context key."""


class DeployConfig(BaseModel):
    stack_name: str = Field(default="Pushpipe", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,39}$")
    vapid_subject: str = Field(pattern=r"^(mailto:[^@\s]+@[^@\s]+|https://[^\s/]+)$")
    approver_emails: tuple[str, ...] = Field(min_length=1)
    ses_identity: str  # a verified sender address, or a domain to send from
    tenants: tuple[str, ...] = Field(min_length=1)
    alarm_email: str | None = None
    api_rate_limit: int = Field(default=2000, ge=1, le=10_000)  # steady requests/second
    api_burst_limit: int = Field(default=5000, ge=1, le=10_000)
    log_retention_days: int = 30
    # push-service domains endpoints may use beyond the browsers' (pushpipe/push/endpoints)
    push_hosts: tuple[str, ...] = ()
    # Another OIDC issuer instead of the stack's Cognito user pool (infra/stacks/identity.py)
    oidc_issuer: str | None = Field(default=None, pattern=_HTTPS)
    oidc_client_id: str | None = Field(default=None, min_length=1, max_length=256)
    oidc_authorize_url: str | None = Field(default=None, pattern=_HTTPS)
    oidc_token_url: str | None = Field(default=None, pattern=_HTTPS)
    oidc_groups_claim: str = Field(default="cognito:groups", pattern=r"^[A-Za-z0-9_:./-]{1,128}$")
    # The Cognito hosted sign-in domain: <prefix>.auth.<region>.amazoncognito.com
    cognito_domain_prefix: str | None = Field(
        default=None, pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
    )

    @model_validator(mode="after")
    def _issuer_is_whole(self) -> DeployConfig:
        given = {
            "oidcClientId": self.oidc_client_id,
            "oidcAuthorizeUrl": self.oidc_authorize_url,
            "oidcTokenUrl": self.oidc_token_url,
        }
        if self.oidc_issuer and not all(given.values()):
            missing = ", ".join(f"{PREFIX}{k}" for k, v in given.items() if not v)
            raise ValueError(f"{PREFIX}oidcIssuer also needs {missing}")
        if not self.oidc_issuer and any(given.values()):
            raise ValueError(f"{PREFIX}oidcClientId and the endpoints need {PREFIX}oidcIssuer")
        return self

    @field_validator("approver_emails")
    @classmethod
    def _emails(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _EMAIL.match(v)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return value

    @field_validator("alarm_email")
    @classmethod
    def _alarm_email(cls, value: str | None) -> str | None:
        if value is not None and not _EMAIL.match(value):
            raise ValueError(f"not an e-mail address: {value!r}")
        return value

    @field_validator("ses_identity")
    @classmethod
    def _identity(cls, value: str) -> str:
        if not (_EMAIL.match(value) or _DOMAIN.match(value)):
            raise ValueError(f"must be an e-mail address or a domain, got {value!r}")
        return value

    @field_validator("tenants")
    @classmethod
    def _tenants(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _TENANT.match(v)]
        if bad:
            raise ValueError(f"tenant ids must match {_TENANT.pattern}, got {bad}")
        return value

    @field_validator("push_hosts")
    @classmethod
    def _push_hosts(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in value if not _DOMAIN.match(v)]
        if bad:
            raise ValueError(f"push hosts must be domain names, got {bad}")
        return tuple(v.lower() for v in value)

    @field_validator("log_retention_days")
    @classmethod
    def _retention(cls, value: int) -> int:
        allowed = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1827, 3653)
        if value not in allowed:
            raise ValueError(f"CloudWatch Logs retention must be one of {allowed}")
        return value

    @property
    def ses_is_domain(self) -> bool:
        return "@" not in self.ses_identity

    @property
    def mail_from(self) -> str:
        """The sender address of approval mail."""
        return f"pushpipe@{self.ses_identity}" if self.ses_is_domain else self.ses_identity

    @classmethod
    def from_context(cls, get: Any) -> DeployConfig:
        """``get`` is ``node.try_get_context``; unknown ``pushpipe:`` keys are ignored."""
        raw: dict[str, Any] = {}
        for key, name in KEYS.items():
            value = get(PREFIX + key)
            if value is None or value == "":
                continue
            if name in {"approver_emails", "tenants", "push_hosts"}:
                value = _as_list(value)
            raw[name] = value
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            names = {v: k for k, v in KEYS.items()}
            lines = [
                f"  -c {PREFIX}{names.get(str(err['loc'][0]), err['loc'][0])}=...: {err['msg']}"
                if err["loc"]
                else f"  {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors()
            ]
            raise ConfigError(
                "pushpipe deploy parameters are missing or invalid:\n" + "\n".join(lines)
            ) from None


def _as_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    text = str(value).strip()
    if text.startswith("["):
        return tuple(str(v).strip() for v in json.loads(text))
    return tuple(part.strip() for part in text.split(",") if part.strip())
