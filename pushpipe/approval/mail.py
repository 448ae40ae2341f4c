"""Approval e-mails: rendering (HTML and text) and sending through SES.

Every e-mail is a MIME ``multipart/alternative`` message (text first, HTML second) sent
with the SES v2 ``SendEmail`` API as raw content, through the stack's configuration set.
The approvers' e-mail carries the three buttons (approve, reject, test push); each
approver gets their own links, signed for them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.approval.models import ApprovalRequest, FileAudience
from pushpipe.shared.errors import StoreError


@dataclass(frozen=True)
class Mail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Preview:
    """The exact payload a recipient of ``variant`` gets (token and id shown as what they
    are), and the largest payload of the campaign against the Web Push limit."""

    variant: str
    json_text: str


@dataclass(frozen=True)
class Links:
    approve: str
    reject: str
    test: str
    device: str


class Mailer:
    """SES v2 ``SendEmail`` with raw MIME content."""

    def __init__(self, sender: str, configuration_set: str | None = None, client: Any = None):
        self.sender = sender
        self.configuration_set = configuration_set
        self.client = client or boto3.client("sesv2")

    def send(self, to: str, mail: Mail) -> str:
        msg = EmailMessage()
        msg["Subject"] = mail.subject
        msg["From"] = self.sender
        msg["To"] = to
        msg["Date"] = formatdate(usegmt=True)
        msg["Message-ID"] = make_msgid(domain=self.sender.rsplit("@", 1)[-1])
        msg.set_content(mail.text)
        msg.add_alternative(mail.html, subtype="html")
        kwargs: dict[str, Any] = {
            "FromEmailAddress": self.sender,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": msg.as_bytes()}},
        }
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        try:
            return self.client.send_email(**kwargs)["MessageId"]
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(f"SES SendEmail to {to}", err.get("Code", "?"), str(exc)) from exc


# --- rendering ----------------------------------------------------------------------------
_e = html.escape

_STYLE = (
    "font-family:-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;"
    "color:#1f2328;max-width:680px;margin:0 auto;padding:16px"
)
_BUTTON = (
    "display:inline-block;padding:10px 18px;margin:4px 8px 4px 0;border-radius:6px;"
    "text-decoration:none;font-weight:600;color:#fff;background:{bg}"
)


def when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def audience_text(req: ApprovalRequest) -> str:
    aud = req.request.audience
    if isinstance(aud, FileAudience):
        return f"audience file {aud.key}"
    return aud.describe()


def recipients_text(req: ApprovalRequest) -> str:
    if req.audience_total is None:
        return "being counted"
    text = f"{req.audience_total - req.audience_malformed:,}"
    if req.audience_malformed:
        text += f" ({req.audience_malformed:,} malformed entries of the file are left out)"
    return text


def _variant_rows(req: ApprovalRequest) -> list[tuple[str, str, str, str]]:
    r = req.request
    if not r.variants:
        return [("default", "100%", r.title, r.body)]
    rows = [
        (v.id, f"{v.percent:g}%", v.title or r.title, v.body if v.body is not None else r.body)
        for v in r.variants
    ]
    if r.control_percent:
        rows.append(("control", f"{r.control_percent:g}%", "(receives nothing)", ""))
    return rows


def _facts(req: ApprovalRequest) -> list[tuple[str, str]]:
    r = req.request
    facts = [
        ("Recipients selected", recipients_text(req)),
        ("Tenant", req.tenant),
        ("Campaign", req.campaign),
        ("Request", req.id),
        ("Requested by", req.requester),
        ("Audience", audience_text(req)),
        ("Link", r.url),
        ("TTL", f"{r.ttl:,} s"),
        ("Urgency", r.urgency),
        (
            "Approvals needed",
            f"{req.approvals_required} of {', '.join(req.eligible_approvers()) or '-'}",
        ),
        ("Decide before", when(req.expires_at)),
    ]
    if r.note:
        facts.insert(4, ("Note", r.note))
    return facts


def text_summary(req: ApprovalRequest, previews: Sequence[Preview]) -> str:
    lines = [f"{k}: {v}" for k, v in _facts(req)]
    lines.append("")
    lines.append("Variants:")
    for vid, pct, title, body in _variant_rows(req):
        lines.append(f"  {vid:<10} {pct:>6}  {title}" + (f" — {body}" if body else ""))
    lines.append("")
    for p in previews:
        lines.append(f"Payload ({p.variant}):")
        lines.append(p.json_text)
        lines.append("")
    return "\n".join(lines)


def html_summary(req: ApprovalRequest, previews: Sequence[Preview]) -> str:
    facts = "".join(
        f'<tr><th align="left" style="padding:2px 12px 2px 0;vertical-align:top">{_e(k)}</th>'
        f"<td>{_e(v)}</td></tr>"
        for k, v in _facts(req)
    )
    variants = "".join(
        f"<tr><td>{_e(vid)}</td><td align='right'>{_e(pct)}</td><td>{_e(title)}</td>"
        f"<td>{_e(body)}</td></tr>"
        for vid, pct, title, body in _variant_rows(req)
    )
    payloads = "".join(
        f"<p style='margin:12px 0 4px'><b>Payload — {_e(p.variant)}</b></p>"
        f"<pre style='background:#f6f8fa;padding:8px;border-radius:6px;white-space:pre-wrap;"
        f"font-size:12px'>{_e(p.json_text)}</pre>"
        for p in previews
    )
    return (
        f"<table style='border-collapse:collapse'>{facts}</table>"
        "<h3 style='margin:16px 0 4px'>Variants</h3>"
        "<table cellpadding='4' style='border-collapse:collapse;border:1px solid #d0d7de'>"
        "<tr><th align='left'>variant</th><th>share</th><th align='left'>title</th>"
        f"<th align='left'>body</th></tr>{variants}</table>{payloads}"
    )


def _page(title: str, inner: str) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{_e(title)}</title></head><body><div style='{_STYLE}'>"
        f"<h2 style='margin-top:0'>{_e(title)}</h2>{inner}"
        "<p style='color:#59636e;font-size:12px;margin-top:24px'>pushpipe — ad-hoc campaign "
        "approval</p></div></body></html>"
    )


def _subject(req: ApprovalRequest, what: str) -> str:
    count = (
        ""
        if req.audience_total is None
        else f" → {req.audience_total - req.audience_malformed:,} recipients"
    )
    return f"[pushpipe] {what}: “{req.request.title}”{count} ({req.tenant})"


def approver_mail(req: ApprovalRequest, previews: Sequence[Preview], links: Links) -> Mail:
    buttons = (
        f"<p><a href='{_e(links.approve)}' style='{_BUTTON.format(bg='#1f883d')}'>Approve</a>"
        f"<a href='{_e(links.reject)}' style='{_BUTTON.format(bg='#cf222e')}'>Reject…</a>"
        f"<a href='{_e(links.test)}' style='{_BUTTON.format(bg='#0969da')}'>"
        "Send test push to me</a></p>"
        "<p style='font-size:13px;color:#59636e'>Each button opens a page that asks you to "
        "confirm; nothing happens before you do. The links are yours alone, work once, and "
        f"expire {when(req.expires_at)}. No test device yet? "
        f"<a href='{_e(links.device)}'>Register this browser for test pushes</a>.</p>"
    )
    html_body = _page(
        "Approval needed: ad-hoc push campaign",
        f"<p>{_e(req.requester)} asks to send this push notification.</p>"
        + buttons
        + html_summary(req, previews),
    )
    text = (
        f"{req.requester} asks to send an ad-hoc push campaign.\n\n"
        f"Approve:              {links.approve}\n"
        f"Reject (with reason): {links.reject}\n"
        f"Send test push to me: {links.test}\n"
        f"Register this browser as a test device: {links.device}\n\n"
        "Each link opens a page that asks you to confirm. The links are yours alone, work "
        f"once, and expire {when(req.expires_at)}.\n\n" + text_summary(req, previews)
    )
    return Mail(_subject(req, "Approval needed"), text, html_body)


def requester_mail(req: ApprovalRequest, previews: Sequence[Preview]) -> Mail:
    waiting = (
        f"Your request waits for {req.approvals_required} approval(s) from: "
        f"{', '.join(req.eligible_approvers())}. Nothing is sent before that."
    )
    return Mail(
        _subject(req, "Request sent for approval"),
        waiting + "\n\n" + text_summary(req, previews),
        _page(
            "Your campaign request is waiting for approval",
            f"<p>{_e(waiting)}</p>" + html_summary(req, previews),
        ),
    )


def outcome_mail(req: ApprovalRequest, what: str, detail: str) -> Mail:
    """To the requester: approved and released, rejected (with the reason), expired,
    failed, or refused by the system (e.g. an audience file that is not one)."""
    text = (
        f"{detail}\n\nTenant: {req.tenant}\nCampaign: {req.campaign}\nTitle: {req.request.title}\n"
    )
    if req.decisions:
        text += "\nDecisions:\n" + "\n".join(
            f"  {d.at}  {d.who:<28} {d.action}{(': ' + d.why) if d.why else ''}"
            for d in req.decisions
        )
    trail = "".join(
        f"<tr><td>{_e(d.at)}</td><td>{_e(d.who)}</td><td>{_e(d.action)}</td>"
        f"<td>{_e(d.why)}</td></tr>"
        for d in req.decisions
    )
    html_body = _page(
        f"Campaign request {what}",
        f"<p>{_e(detail)}</p>"
        f"<p>Tenant <b>{_e(req.tenant)}</b>, campaign <b>{_e(req.campaign)}</b>: "
        f"“{_e(req.request.title)}”</p>"
        + (
            "<h3>Decisions</h3><table cellpadding='4' style='border-collapse:collapse'>"
            f"{trail}</table>"
            if trail
            else ""
        ),
    )
    return Mail(_subject(req, f"Request {what}"), text, html_body)
