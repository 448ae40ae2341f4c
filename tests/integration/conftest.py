"""The embedded local cloud as a test fixture: moto server, the local Lambda runtime
running the real handlers, and the local push service, wired from the topology."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pushpipe import topology as t
from pushpipe.audience.keys import audience_key
from pushpipe.sending.run_store import RunStore
from pushpipe.sending.runs import FINAL_STATES, RunView, run_id_for
from pushpipe_local.cloud.cloud import LocalCloud, LocalOptions, physical_name
from pushpipe_local.sim.audiences import demo_campaign, recipient, write_audience

# Each invocation works for about 2 s and then hands off, so a chain of a few thousand
# recipients recurses even on an idle machine; a batch of 500 still has more than 10 s
# to finish in on a loaded one (the remaining time minus a safety margin is its budget).
SEND_TIMEOUT_S = 14.0
MIN_REMAINING_MS = 12000


@pytest.fixture(scope="session")
def local_cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    home: Path = tmp_path_factory.mktemp("local-cloud")
    cloud = LocalCloud(
        LocalOptions(
            home=home,
            timeouts={"send_batch": SEND_TIMEOUT_S},
            settings={
                "send_batch": {
                    t.ENV_CHAINS: "4",
                    t.ENV_MIN_REMAINING_MS: str(MIN_REMAINING_MS),
                    t.ENV_SWEEP_GRACE_MS: "3000",
                },
                # The local push service stands in for Apple's in the stale-subscription
                # test: its subscriptions are "other", and three silent sends are enough.
                "scheduler": {
                    t.ENV_STALE_SERVICES: "apple,other",
                    t.ENV_STALE_SILENT_SENDS: "3",
                    t.ENV_STALE_GRACE_HOURS: "1",
                },
            },
            schedule_every_s=None,  # tests run the sweeper themselves
            async_retry_delays_s=(0.5, 1.0),
            prewarm={"send_batch": 5},
        )
    ).start()
    yield cloud
    cloud.stop()


TENANT = "demo-shop"  # the tenant of demo_campaign(): the tests' drops lie under its prefix


class SendHarness:
    """Drops audience files and waits for their runs, for one test."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.bucket = physical_name("bucket", "audience")
        self.store = RunStore(physical_name("table", "runs"), client=cloud.client("dynamodb"))
        self.s3 = cloud.client("s3")

    def subscribers(self, n: int) -> list[dict]:
        return self.cloud.push_admin("POST", "/_admin/subscriptions", {"count": n})["subscriptions"]

    def key(self, name: str) -> str:
        """Where a drop of ``name`` lies: under the test tenant's audience prefix (a full
        key under the audience prefix is taken as it is)."""
        if name.startswith(t.AUDIENCE_PREFIX):
            return name
        return audience_key(t.AUDIENCE_PREFIX, TENANT, name)

    def drop(self, key: str, body: bytes) -> str:
        got = self.s3.put_object(Bucket=self.bucket, Key=self.key(key), Body=body)
        return got["ETag"].strip('"')

    def drop_audience(self, key: str, campaign: dict, subs: list[dict], **extra) -> str:
        buf = io.BytesIO()
        write_audience(buf, campaign, (recipient(s["id"], s, **extra) for s in subs))
        return self.drop(key, buf.getvalue())

    def run_id(self, key: str, etag: str) -> str:
        return run_id_for(self.bucket, self.key(key), etag)

    def wait_run(self, key: str, etag: str, timeout_s: float = 180) -> RunView:
        run_id = self.run_id(key, etag)
        end = time.time() + timeout_s
        view = None
        while time.time() < end:
            view = self.store.view(run_id)
            if view is not None and view.state in FINAL_STATES:
                assert self.cloud.runtime.wait_idle(30)
                return self.store.view(run_id)
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} did not finish in {timeout_s} s: {view}")

    def stats(self) -> dict:
        return self.cloud.push_admin("GET", "/_admin/stats")

    def received(self) -> list[dict]:
        out, after = [], 0
        while True:
            page = self.cloud.push_admin("GET", f"/_admin/received?after={after}&limit=5000")
            out.extend(page["records"])
            if not page["records"]:
                return out
            after = page["next"]


@pytest.fixture
def send(local_cloud: LocalCloud) -> Iterator[SendHarness]:
    """A clean push service (deliveries, faults) and a quiet runtime for each test."""
    assert local_cloud.runtime.wait_idle(60), "the local cloud is still busy from a test before"
    local_cloud.push_admin("POST", "/_admin/reset", {})
    yield SendHarness(local_cloud)
    local_cloud.push_admin("DELETE", "/_admin/faults")


@pytest.fixture
def campaign_id(request: pytest.FixtureRequest) -> str:
    return f"{request.node.name[:40].replace('_', '-')}-{int(time.time() * 1000) % 10**8}"


__all__ = ["SendHarness", "demo_campaign"]
