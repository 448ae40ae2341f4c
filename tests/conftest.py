"""Fixtures every suite may use.

Layout: ``unit/<feature>/`` (moto in-process, no servers), ``integration/`` (the embedded
local cloud: moto server, the local Lambda runtime, the local push service), ``infra/``
(the synthesized stack: assertions, cdk-nag, cfn-lint), ``e2e/`` (pages and sw.js in
headless Chromium). ``events/`` holds the event each trigger delivers, as JSON;
``support/`` the builders and fakes built on them.
"""

from __future__ import annotations

import pytest

from tests.support.events import FakeContext


@pytest.fixture
def lambda_context() -> FakeContext:
    """A Lambda context with a minute left, as a handler receives it."""
    return FakeContext()
