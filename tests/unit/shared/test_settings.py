"""Function settings are validated once, with a message that names the function."""

from __future__ import annotations

import pytest

from pushpipe import topology as t
from pushpipe.shared import settings
from pushpipe.shared.errors import ConfigurationError


def test_missing_settings_name_the_function_and_the_field(monkeypatch):
    for name in (t.ENV_RUNS_TABLE, t.ENV_COUNTERS_TABLE):
        monkeypatch.delenv(name, raising=False)
    settings.send_settings.cache_clear()
    settings.aggregate_settings.cache_clear()
    with pytest.raises(
        ConfigurationError, match=r"(?s)send_batch settings are invalid.*runs_table"
    ):
        settings.send_settings()
    with pytest.raises(
        ConfigurationError, match=r"(?s)aggregate settings are invalid.*counters_table"
    ):
        settings.aggregate_settings()


def test_valid_settings_are_read_from_the_environment(monkeypatch):
    monkeypatch.setenv(t.ENV_COUNTERS_TABLE, "counters")
    monkeypatch.setenv(t.ENV_COUNTER_SHARD_PREFIX, "kx")
    settings.aggregate_settings.cache_clear()
    got = settings.aggregate_settings()
    assert (got.counters_table, got.shard_prefix) == ("counters", "kx")
    settings.aggregate_settings.cache_clear()
