"""The local cloud's mailbox: the e-mails SES "sent", read back from moto, with their links.

moto keeps every e-mail its SES accepted and exposes them at ``/moto-api/data.json``;
``local_mails`` parses them (raw MIME or simple ``SendEmail``) into ``LocalMail`` with
the approval links found in the text part (approve, reject, test, device), which point
at the local HTTP API and work there. ``print_mails`` lists them for a person to copy.
"""

from __future__ import annotations

import email
import json
import re
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import policy

from rich.console import Console
from rich.markup import escape

LINK = re.compile(
    r"https?://[^\s\"'<>]+/v1/(?:approval/(?:approve|reject|test)|approvers/device)\?t=[A-Za-z0-9._%~-]+"
)


@dataclass
class LocalMail:
    index: int
    message_id: str
    sender: str
    to: list[str]
    subject: str
    text: str
    html: str
    links: dict[str, str] = field(default_factory=dict)  # approve/reject/test/device -> URL


def _links(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for link in LINK.findall(text):
        kind = link.split("/v1/", 1)[1].split("?", 1)[0].split("/")[-1]
        out.setdefault(kind, link)
    return out


def parse_raw(
    index: int, message_id: str, sender: str, destinations: Iterable[str], raw: str
) -> LocalMail:
    msg = email.message_from_bytes(raw.encode(), policy=policy.default)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    text = text_part.get_content() if text_part else ""
    body_html = html_part.get_content() if html_part else ""
    return LocalMail(
        index,
        message_id,
        sender,
        list(dict.fromkeys(destinations)),  # moto lists the To header's address again
        str(msg["Subject"] or ""),
        text,
        body_html,
        _links(text),
    )


def local_mails(moto_url: str) -> list[LocalMail]:
    """Every e-mail moto's SES accepted, oldest first (numbered from 1)."""
    with urllib.request.urlopen(f"{moto_url}/moto-api/data.json", timeout=60) as resp:
        data = json.loads(resp.read())
    out: list[LocalMail] = []
    for model in ("RawMessage", "Message"):
        for m in (data.get("ses") or {}).get(model, []):
            if model == "RawMessage":
                out.append(parse_raw(0, m["id"], m["source"], m["destinations"], m["raw_data"]))
            else:  # a simple (non-raw) SendEmail
                to = (m.get("destinations") or {}).get("ToAddresses", [])
                out.append(LocalMail(0, m["id"], m["source"], to, m["subject"], m["body"], "", {}))
    for i, mail in enumerate(out, 1):
        mail.index = i
    return out


def wait_for_mails(
    moto_url: str,
    predicate: Callable[[LocalMail], bool],
    count: int = 1,
    timeout_s: float = 60.0,
) -> list[LocalMail]:
    """Poll until ``count`` mails match ``predicate``."""
    end = time.time() + timeout_s
    found: list[LocalMail] = []
    while time.time() < end:
        found = [m for m in local_mails(moto_url) if predicate(m)]
        if len(found) >= count:
            return found
        time.sleep(0.3)
    raise TimeoutError(f"{len(found)} of {count} expected e-mails arrived in {timeout_s:g} s")


def print_mails(out: Console, mails: list[LocalMail]) -> None:
    """Each e-mail: number, recipient, subject, then its links in full (copyable)."""
    for m in mails:
        out.print(
            f"[bold]#{m.index}[/bold] to {escape(', '.join(m.to))}: {escape(m.subject)}",
            highlight=False,
        )
        for kind, link in m.links.items():
            out.print(f"    {kind:<8} {link}", soft_wrap=True, highlight=False)
