"""The approval pages in headless Chromium: a marketer fills the request form and submits
it; an approver follows the approve link from the e-mail, sees the confirmation page and
confirms; the same link a second time is refused.

The approval function's handler runs in-process behind a tiny HTTP API gateway (moto
in-process for DynamoDB, S3, SES and Secrets Manager). Debian's chromium, driven by
Playwright with ``executable_path``; skipped only if /usr/bin/chromium is absent.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from tests.support.approval import (
    BUCKET,
    REGION,
    deploy_handler_env,
    parse_mail,
    provision,
    read_object,
)

CHROMIUM = Path("/usr/bin/chromium")
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
KEY = "acme-report-key-0123456789"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium"
    ),
]


class Queue:
    """The approval function's asynchronous self-invocations, run by the test."""

    def __init__(self) -> None:
        self.events: list[dict] = []

    def invoke(self, event: dict) -> None:
        self.events.append(event)


@pytest.fixture
def approval_api(monkeypatch):
    from moto import mock_aws

    from pushpipe.approval import wiring as approval_wiring
    from pushpipe_local.sim.audiences import audience_bytes, recipient
    from tests.support.pings import serve_lambda

    with mock_aws():
        _, s3 = provision()
        keys = {"p256dh": "B" + "A" * 86, "auth": "A" * 22}
        s3.put_object(
            Bucket=BUCKET,
            Key="drafts/acme/weekend.json",
            Body=audience_bytes(
                {
                    "id": "d",
                    "tenant": "acme",
                    "message": {"title": "-", "url": "https://x.example"},
                },
                [
                    recipient(
                        f"s{i}",
                        {"endpoint": f"https://fcm.googleapis.com/fcm/send/{i}", "keys": keys},
                    )
                    for i in range(40)
                ],
            ),
        )
        from functions.approval.handler import handler

        server, url, _ = serve_lambda(handler)
        deploy_handler_env(
            monkeypatch, url, "alice@example.com,bob@example.com", {"acme": KEY}, vapid_public="B"
        )
        approval_wiring.reset()
        queue = Queue()
        approval_wiring.wiring().ports.invoker = queue
        yield url, queue, approval_wiring.wiring(), s3
        server.shutdown()
        approval_wiring.reset()


def _mails() -> list[dict]:
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return [
        parse_mail(m.destinations, m.raw_data)
        for m in ses_backends[DEFAULT_ACCOUNT_ID][REGION].sent_messages
    ]


def _run(queue: Queue, action: str, wiring) -> list[str]:
    from pushpipe.approval.service import prepare, release

    step = {"prepare": prepare, "release": release}[action]
    done = [
        step(e["request"], wiring.ports, wiring.config)
        for e in queue.events
        if e["action"] == action
    ]
    queue.events = [e for e in queue.events if e["action"] != action]
    return done


def test_fill_the_form_submit_and_follow_the_approve_link(approval_api):
    from playwright.sync_api import sync_playwright

    url, queue, wiring, s3 = approval_api
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_context().new_page()
            csp_errors: list[str] = []
            page.on(
                "console",
                lambda m: csp_errors.append(m.text) if "Content Security" in m.text else None,
            )

            # the marketer: a form with a mistake first, then fixed
            page.goto(f"{url}/v1/requests/form")
            page.fill("#tenant", "acme")
            page.fill("#key", KEY)
            page.fill("#requester", "marketer@example.com")
            page.fill("#title", "Weekend sale")
            page.fill("#body", "20% off everything")
            page.fill("#url", "https://shop.example/weekend")
            page.check("#kind-file")
            page.fill("#audience_key", "drafts/acme/weekend.json")
            page.fill("#variant_1_id", "a")
            page.fill("#variant_1_percent", "50")
            page.fill("#variant_2_id", "b")
            page.fill("#variant_2_percent", "45")
            page.fill("#variant_2_title", "Weekend: 20% off")
            page.fill("#control_percent", "10")
            page.click("#submit")
            assert "must add up to 100, got 105" in page.inner_text("#error")
            assert page.input_value("#title") == "Weekend sale", "the form keeps what was typed"
            page.fill("#key", KEY)  # never echoed back: typed again
            page.fill("#variant_2_percent", "40")
            page.click("#submit")
            request_id = page.inner_text("#request-id")
            assert request_id.startswith("r")
            assert queue.events == [{"action": "prepare", "request": request_id}]
            assert _run(queue, "prepare", wiring) == ["mailed"]

            # the approver: the e-mail's approve link opens a confirmation page
            alice = next(m for m in _mails() if m["to"] == ["alice@example.com"])
            assert "40 recipients" in alice["subject"]
            page.goto(alice["links"]["approve"])
            assert page.inner_text("h1") == "Approve the campaign"
            body = page.inner_text("main")
            assert "40" in body and "Weekend: 20% off" in body and "control" in body
            assert queue.events == [], "opening the link approves nothing"
            page.click("#confirm")
            assert page.inner_text("h1") == "Approved"
            assert "40 recipients" in page.inner_text("#result")
            assert _run(queue, "release", wiring) == ["released"]

            # the same link again: a clear refusal, nothing changes
            page.goto(alice["links"]["approve"])
            assert page.inner_text("h1") == "This link was already used"
            assert "Nothing was changed" in page.inner_text("main")
            assert csp_errors == [], csp_errors
        finally:
            browser.close()

    doc = read_object(s3, f"audiences/acme/requests/{request_id}.json")
    assert len(doc["recipients"]) == 40
    assert doc["campaign"]["variants"] == [
        {"id": "a", "percent": 50.0},
        {"id": "b", "percent": 40.0, "message": {"title": "Weekend: 20% off"}},
    ]
    assert wiring.ports.store.get(request_id).state.value == "sent"
