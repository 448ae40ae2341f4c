"""Deploy parameters: read from CDK context, validated, with errors naming the key."""

from __future__ import annotations

import aws_cdk as cdk
import pytest

from infra.cdk_app import build_app
from infra.stacks.config import ConfigError, DeployConfig

GOOD = {
    "pushpipe:vapidSubject": "mailto:ops@example.com",
    "pushpipe:approverEmails": "alice@example.com, bob@example.com",
    "pushpipe:sesIdentity": "example.com",
    "pushpipe:tenants": '["acme", "globex"]',
}


def _config(**overrides) -> DeployConfig:
    ctx = {**GOOD, **overrides}
    return DeployConfig.from_context(ctx.get)


def test_lists_accept_comma_separated_and_json():
    config = _config()
    assert config.approver_emails == ("alice@example.com", "bob@example.com")
    assert config.tenants == ("acme", "globex")
    assert config.mail_from == "pushpipe@example.com"
    assert _config(**{"pushpipe:sesIdentity": "ops@example.com"}).mail_from == "ops@example.com"


def test_missing_parameters_are_listed_with_the_flag_to_pass():
    with pytest.raises(ConfigError) as err:
        DeployConfig.from_context({}.get)
    message = str(err.value)
    for key in ("vapidSubject", "approverEmails", "sesIdentity", "tenants"):
        assert f"-c pushpipe:{key}=" in message


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("pushpipe:vapidSubject", "ops@example.com", "vapidSubject"),
        ("pushpipe:approverEmails", "alice", "not e-mail addresses"),
        ("pushpipe:sesIdentity", "not an identity", "e-mail address or a domain"),
        ("pushpipe:tenants", "Acme Corp", "tenant ids must match"),
        ("pushpipe:logRetentionDays", 42, "retention must be one of"),
        ("pushpipe:stackName", "9lives", "stackName"),
        ("pushpipe:pushHosts", "http://push.example.com", "push hosts must be domain names"),
    ],
)
def test_invalid_parameters_name_the_key(key, value, expected):
    with pytest.raises(ConfigError, match=expected):
        _config(**{key: value})


def test_push_hosts_are_optional_and_lists():
    assert _config().push_hosts == ()
    assert _config(
        **{"pushpipe:pushHosts": "Push.Example.com, eu.push.example.net"}
    ).push_hosts == (
        "push.example.com",
        "eu.push.example.net",
    )


def test_app_refuses_to_synthesize_without_parameters():
    with pytest.raises(ConfigError, match="pushpipe:vapidSubject"):
        build_app(cdk.App(context={}))
