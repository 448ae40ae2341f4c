"""sw.js in headless Chromium: a push delivered through the DevTools protocol is shown
and its delivery ping reaches the local API (ping_handler, in-process with moto), which
verifies it and puts it on the pings stream.

Debian's chromium, driven by Playwright with ``executable_path``; skipped only if
/usr/bin/chromium is absent (``apt-get install -y chromium``).
"""

from __future__ import annotations

import json
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
WEB = Path(__file__).resolve().parents[2] / "web"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def _serve(handler) -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture
def local_api():
    from moto import mock_aws

    from pushpipe.pings import wiring as ping_wiring
    from tests.support.pings import provision, serve_lambda, set_env

    with mock_aws():
        p = provision("e2e")
        set_env(p)
        ping_wiring.reset()
        from functions.ping_handler.handler import handler

        server, url, seen = serve_lambda(handler)
        yield p, url, seen
        server.shutdown()
        ping_wiring.reset()


@pytest.fixture
def shop():
    server, url = _serve(partial(_Quiet, directory=str(WEB)))
    yield url
    server.shutdown()


@pytest.mark.parametrize("shape", ["flat", "declarative"])
def test_a_push_delivered_by_cdp_is_shown_and_pinged(local_api, shop, shape):
    """Both payload shapes: the flat one, and Declarative Web Push (web_push: 8030,
    mutable) that Safari 18.4+ could show by itself; sw.js shows and pings either."""
    from playwright.sync_api import sync_playwright

    from pushpipe.audience.payloads import declarative
    from tests.support.pings import read_stream, token

    p, api_url, seen = local_api
    tok, nid = token(tenant="acme", campaign="spring", variant="b", subscriber="browser-1")
    payload = {
        "nid": nid,
        "campaign": "spring",
        "variant": "b",
        "title": "Spring sale",
        "body": "20% off today",
        "url": f"{shop}/index.html?from=push",
        "icon": None,
        "ping": {"url": f"{api_url}/v1/pings", "token": tok},
    }
    if shape == "declarative":
        payload = declarative(payload, "de")
        assert payload["web_push"] == 8030 and payload["mutable"] is True
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            context = browser.new_context()
            context.grant_permissions(["notifications"], origin=shop)
            page = context.new_page()
            cdp = context.new_cdp_session(page)
            registrations: list[dict] = []
            cdp.on(
                "ServiceWorker.workerRegistrationUpdated",
                lambda e: registrations.extend(e["registrations"]),
            )
            cdp.send("ServiceWorker.enable")
            page.goto(f"{shop}/index.html")
            scope = page.evaluate(
                """async () => {
                    const r = await navigator.serviceWorker.register('sw.js');
                    await navigator.serviceWorker.ready;
                    return r.scope;
                }"""
            )
            deadline = time.time() + 10
            while not any(r["scopeURL"] == scope for r in registrations):
                assert time.time() < deadline, f"no registration for {scope}: {registrations}"
                page.wait_for_timeout(100)
            reg_id = next(r["registrationId"] for r in registrations if r["scopeURL"] == scope)

            cdp.send(
                "ServiceWorker.deliverPushMessage",
                {"origin": shop, "registrationId": reg_id, "data": json.dumps(payload)},
            )
            deadline = time.time() + 15
            while not any(s[0] == "POST" and s[1] == "/v1/pings" for s in seen):
                assert time.time() < deadline, f"no ping reached the API; saw {seen}"
                page.wait_for_timeout(100)
        finally:
            browser.close()

    _, _, headers, body, status = next(s for s in seen if s[0] == "POST")
    assert status == 202
    sent = json.loads(body)
    assert sent["type"] == "delivered" and sent["token"] == tok
    # a simple CORS request: text/plain, no preflight
    assert headers.get("Content-Type", "").startswith("text/plain")
    assert not any(s[0] == "OPTIONS" for s in seen)
    [record] = [json.loads(r["Data"]) for r in read_stream(p.pings_stream)]
    assert (record["type"], record["notification"], record["variant"]) == ("delivered", nid, "b")
