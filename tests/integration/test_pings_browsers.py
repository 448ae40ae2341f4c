"""Simulated browsers: they follow the push service's delivery log and ping the local API
the way sw.js does, at the configured rates; what they report is what gets counted."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
from moto import mock_aws

from pushpipe.pings import wiring as ping_wiring
from pushpipe.pings.counters import CounterStore
from pushpipe.pings.ingest import aggregate_batch, parse_record_line
from pushpipe.pings.reports import build_report
from pushpipe_local.sim.browsers import Rates, SimulatedBrowsers
from tests.support.pings import provision, read_stream, serve_lambda, set_env, token


class DeliveryLog:
    """Stands in for the push service's ``GET /_admin/received`` cursor."""

    def __init__(self, records: list[dict]) -> None:
        self.records = records
        log = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = parse_qs(urlparse(self.path).query)
                after, limit = int(q["after"][0]), int(q["limit"][0])
                chosen = [r for r in log.records if r["seq"] > after][:limit]
                body = json.dumps(
                    {"records": chosen, "next": chosen[-1]["seq"] if chosen else after}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def world():
    with mock_aws():
        p = provision("browsers")
        set_env(p)
        ping_wiring.reset()
        from functions.ping_handler.handler import handler

        server, api_url, _ = serve_lambda(handler)
        yield p, api_url
        server.shutdown()
        ping_wiring.reset()


def deliveries(api_url: str, n: int, campaign="spring") -> list[dict]:
    out = []
    for i in range(n):
        variant = "ab"[i % 2]
        tok, nid = token(campaign=campaign, variant=variant, subscriber=f"s{i}")
        payload = {
            "nid": nid,
            "campaign": campaign,
            "variant": variant,
            "title": "t",
            "body": "b",
            "url": "https://shop.example/",
            "ping": {"url": f"{api_url}/v1/pings", "token": tok},
        }
        out.append({"seq": i + 1, "subscriber": f"s{i}", "nid": nid, "payload": payload})
    return out


def counted(p, campaign="spring"):
    store = CounterStore(p.counters_table)
    records = [
        (parse_record_line(r["Data"]), r["SequenceNumber"]) for r in read_stream(p.pings_stream)
    ]
    aggregate_batch(records, store, "0.1", "k0")
    rep = build_report("acme", campaign, store.campaign_rows("acme", campaign))
    return {
        v.variant: {"delivered": v.delivered, "clicked": v.clicked, "closed": v.closed}
        for v in rep.variants
    }


def test_with_rate_one_every_push_pings_delivered_and_clicked(world):
    p, api_url = world
    log = DeliveryLog(deliveries(api_url, 40))
    log.records.append({"seq": 41, "subscriber": "x", "nid": None, "payload": "not json"})
    browsers = SimulatedBrowsers(log.url, Rates(delivered=1.0, clicked=1.0), concurrency=4)
    stats = browsers.run_until_idle(idle_s=0.3, timeout_s=60)
    log.server.shutdown()
    assert stats.deliveries == 41 and stats.without_ping == 1
    assert stats.accepted == 80 and stats.errors == 0 and not stats.refused
    assert stats.counts("spring") == {v: {"delivered": 20, "clicked": 20} for v in "ab"}
    assert counted(p) == {v: {"delivered": 20, "clicked": 20, "closed": 0} for v in "ab"}


def test_default_rates_follow_the_brief_and_the_report_matches_the_browsers(world):
    p, api_url = world
    log = DeliveryLog(deliveries(api_url, 1000))
    browsers = SimulatedBrowsers(log.url, Rates(seed=3), concurrency=8)
    stats = browsers.run_until_idle(idle_s=0.3, timeout_s=120)
    log.server.shutdown()
    delivered = sum(c.get("delivered", 0) for c in stats.counts("spring").values())
    clicked = sum(c.get("clicked", 0) for c in stats.counts("spring").values())
    assert 240 <= delivered <= 360  # 30% of 1,000
    assert clicked <= delivered * 0.15
    report = counted(p)
    for variant, kinds in stats.counts("spring").items():
        for kind, n in kinds.items():
            assert report[variant][kind] == n


def test_decisions_are_deterministic_per_notification():
    rates = Rates(seed=1)
    b = SimulatedBrowsers("http://127.0.0.1:9", rates)
    first = [b.pings_for({"nid": f"n{i}"}) for i in range(200)]
    assert first == [b.pings_for({"nid": f"n{i}"}) for i in range(200)]
    assert any(first) and not all(first)
    b.stop()
