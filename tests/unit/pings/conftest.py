"""The ping path's tables, stream and secrets in moto, with the functions' environment
set and their wiring rebuilt, so a test can call the handlers and read the counters."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from pushpipe.pings import wiring as ping_wiring
from pushpipe.pings.counters import CounterStore
from tests.support.pings import REGION, provision, set_env


@pytest.fixture
def store():
    with mock_aws():
        p = provision("unit")
        set_env(p)
        ping_wiring.reset()
        yield CounterStore(p.counters_table, boto3.client("dynamodb", region_name=REGION))
        ping_wiring.reset()
