"""An approver at the approval pages, scripted: what a person does with an e-mail's links.

``click`` opens a link (GET: the confirmation page, which changes nothing, as a mail
scanner's prefetch must not) and confirms it by posting the page's form, with a reason
for a rejection. ``register_device`` does what the device page's script does: post the
browser's PushSubscription, so that the approver's test pushes reach it.
"""

from __future__ import annotations

import html
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlencode, urlsplit


class _FormReader(HTMLParser):
    """The first form of a page: its action and its hidden/text fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._skip = 0  # inside <style>, <script>, <title>
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("style", "script", "title"):
            self._skip += 1
        if tag == "form" and self.action is None:
            self.action, self._in_form = a.get("action") or "", True
        elif tag == "input" and self._in_form and a.get("name"):
            self.fields[a["name"] or ""] = a.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        if tag in ("style", "script", "title"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if data.strip() and not self._skip:
            self.text.append(data.strip())


@dataclass
class Page:
    status: int
    body: str
    title: str

    @property
    def text(self) -> str:
        reader = _FormReader()
        reader.feed(self.body)
        return " ".join(reader.text)


def _title(body: str) -> str:
    m = re.search(r"<h1>(.*?)</h1>", body, re.S)
    return html.unescape(m.group(1)).strip() if m else ""


def fetch(url: str, data: bytes | None = None, headers: dict | None = None) -> Page:
    req = urllib.request.Request(
        url, data=data, headers=headers or {}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = resp.read().decode()
            return Page(resp.status, body, _title(body))
    except urllib.error.HTTPError as exc:
        body = exc.read().decode()
        return Page(exc.code, body, _title(body))


def click(link: str, reason: str = "") -> tuple[Page, Page | None]:
    """Open an e-mail link (GET: the confirmation page) and confirm it (POST its form).
    Returns (confirmation page, result page); no POST if the GET was refused."""
    page = fetch(link)
    if page.status != 200:
        return page, None
    reader = _FormReader()
    reader.feed(page.body)
    parts = urlsplit(link)
    action = reader.action or parts.path
    fields = dict(reader.fields)
    if reason:
        fields["reason"] = reason
    result = fetch(
        f"{parts.scheme}://{parts.netloc}{action}",
        urlencode(fields).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    return page, result


def register_device(link: str, subscription: dict) -> tuple[int, dict]:
    """What the device page's script does: POST the browser's PushSubscription."""
    parts = urlsplit(link)
    token = parse_qs(parts.query)["t"][0]
    req = urllib.request.Request(
        f"{parts.scheme}://{parts.netloc}/v1/approvers/device",
        data=json.dumps({"t": token, "subscription": subscription}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
