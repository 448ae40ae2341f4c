"""HTML pages of the approval function: the request form, the confirmation pages behind
the e-mail links, results and refusals. Templates live next to this file."""

from __future__ import annotations

import html
import json
import secrets
from functools import cache
from pathlib import Path
from string import Template
from typing import Any

from pushpipe.approval.mail import Preview, html_summary
from pushpipe.approval.models import MAX_VARIANTS, Action, ApprovalRequest

TEMPLATES = Path(__file__).parent / "templates"
FORM_VARIANT_ROWS = 4
_e = html.escape


@cache
def template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def sw_js() -> str:
    return (TEMPLATES / "sw.js").read_text(encoding="utf-8")


def page(title: str, content: str) -> str:
    return template("layout.html").substitute(title=_e(title), content=content)


def form_page(
    action: str, prefix: str, values: dict[str, str] | None = None, error: str = ""
) -> str:
    v = {k: _e(str(x)) for k, x in (values or {}).items()}
    rows = []
    for i in range(1, min(FORM_VARIANT_ROWS, MAX_VARIANTS) + 1):
        rows.append(
            "<tr>"
            f"<td><input type='text' name='variant_{i}_id' id='variant_{i}_id' "
            f"value='{v.get(f'variant_{i}_id', '')}' placeholder='{chr(96 + i)}'></td>"
            f"<td><input type='number' step='any' min='0' max='100' name='variant_{i}_percent' "
            f"id='variant_{i}_percent' value='{v.get(f'variant_{i}_percent', '')}'></td>"
            f"<td><input type='text' name='variant_{i}_title' id='variant_{i}_title' "
            f"value='{v.get(f'variant_{i}_title', '')}'></td>"
            f"<td><input type='text' name='variant_{i}_body' id='variant_{i}_body' "
            f"value='{v.get(f'variant_{i}_body', '')}'></td>"
            "</tr>"
        )
    kind = (values or {}).get("audience_kind", "file")
    content = template("form.html").substitute(
        action=_e(action),
        prefix=_e(prefix),
        error=f"<p class='error' id='error'>{_e(error)}</p>" if error else "",
        tenant=v.get("tenant", ""),
        requester=v.get("requester", ""),
        title_value=v.get("title", ""),
        body=v.get("body", ""),
        url=v.get("url", ""),
        icon=v.get("icon", ""),
        ttl=v.get("ttl", "86400"),
        campaign=v.get("campaign", ""),
        file_checked="checked" if kind != "segment" else "",
        segment_checked="checked" if kind == "segment" else "",
        audience_key=v.get("audience_key", ""),
        topics=v.get("topics", ""),
        countries=v.get("countries", ""),
        languages=v.get("languages", ""),
        variant_rows="\n".join(rows),
        control_percent=v.get("control_percent", "0"),
        note=v.get("note", ""),
    )
    return page("Ask for an ad-hoc push campaign", content)


def _split(value: str) -> list[str]:
    return [x.strip() for x in value.replace(";", ",").split(",") if x.strip()]


def _optional(fields: dict[str, str], name: str) -> str | None:
    value = fields.get(name, "").strip()
    return value or None


def _form_audience(fields: dict[str, str]) -> dict[str, Any]:
    if fields.get("audience_kind") == "segment":
        return {
            "kind": "segment",
            "topics": _split(fields.get("topics", "")),
            "countries": [c.upper() for c in _split(fields.get("countries", ""))],
            "languages": _split(fields.get("languages", "")),
        }
    return {"kind": "file", "key": fields.get("audience_key", "").strip()}


def _form_variants(fields: dict[str, str]) -> list[dict[str, Any]]:
    variants = []
    for i in range(1, MAX_VARIANTS + 1):
        vid = _optional(fields, f"variant_{i}_id")
        if vid is None:
            continue
        percent = _optional(fields, f"variant_{i}_percent") or "0"
        variant: dict[str, Any] = {"id": vid, "percent": percent}
        for part in ("title", "body"):
            if (value := _optional(fields, f"variant_{i}_{part}")) is not None:
                variant[part] = value
        variants.append(variant)
    return variants


def form_to_request(fields: dict[str, str]) -> dict[str, Any]:
    """The form's fields as a ``RequestIn`` body (validation happens there)."""
    raw: dict[str, Any] = {
        name: fields.get(name, "").strip()
        for name in ("tenant", "requester", "title", "body", "url", "note")
    }
    for name in ("campaign", "icon", "urgency", "topic", "ttl"):
        if (value := _optional(fields, name)) is not None:
            raw[name] = value
    raw["audience"] = _form_audience(fields)
    if variants := _form_variants(fields):
        raw["variants"] = variants
        raw["control_percent"] = _optional(fields, "control_percent") or "0"
    return raw


def submitted_page(req: ApprovalRequest) -> str:
    return page(
        "Request received",
        f"<p class='ok' id='submitted'>Request <b id='request-id'>{_e(req.id)}</b> for campaign "
        f"<b>{_e(req.campaign)}</b> is stored. Its audience is being counted; then the "
        f"approvers ({_e(', '.join(req.eligible_approvers()))}) and you get an e-mail with "
        "the number of recipients and the exact payload. Nothing is sent before "
        f"{req.approvals_required} of them approve.</p>",
    )


_INTRO = {
    Action.APPROVE: "Approve this campaign? Once enough approvers have approved, it is "
    "sent to the recipients below.",
    Action.REJECT: "Reject this campaign? It will never be sent. The requester is told, with "
    "your reason if you give one.",
    Action.TEST: "Send this push to your own registered test devices (every variant once)?",
}
_BUTTON = {
    Action.APPROVE: ("Approve", ""),
    Action.REJECT: ("Reject", "reject"),
    Action.TEST: ("Send test push to me", "test"),
}


def confirm_page(
    action: Action,
    token: str,
    post_to: str,
    req: ApprovalRequest,
    previews: list[Preview],
    approver: str,
    devices: int = 0,
) -> str:
    extra = ""
    intro = _INTRO[action]
    if action == Action.REJECT:
        extra = (
            "<label for='reason'>Reason <span class='hint'>(optional; sent to the "
            "requester)</span></label><textarea id='reason' name='reason' maxlength='1000'>"
            "</textarea>"
        )
    if action == Action.TEST:
        intro += f" You have {devices} registered test device(s)."
    label, cls = _BUTTON[action]
    content = template("confirm.html").substitute(
        intro=_e(intro),
        action=_e(post_to),
        token=_e(token),
        extra=extra,
        button=_e(label),
        button_class=cls,
        summary=f"<p class='hint'>Signed in by your link as {_e(approver)}.</p>"
        + html_summary(req, previews),
    )
    titles = {
        Action.APPROVE: "Approve the campaign",
        Action.REJECT: "Reject the campaign",
        Action.TEST: "Send a test push to yourself",
    }
    return page(titles[action], content)


def result_page(title: str, message: str, details: list[str] | None = None) -> str:
    listing = "<ul>" + "".join(f"<li>{_e(d)}</li>" for d in details) + "</ul>" if details else ""
    return page(title, f"<p class='ok' id='result'>{_e(message)}</p>{listing}")


def refusal_page(title: str, message: str) -> str:
    return page(
        title,
        f"<p class='error' id='refusal'>{_e(message)}</p><p>Nothing was changed.</p>",
    )


def device_page(
    token: str, approver: str, vapid_key: str, post_to: str, sw_url: str
) -> tuple[str, str]:
    """(page, CSP nonce of its script)."""
    nonce = secrets.token_urlsafe(16)
    content = template("device.html").substitute(
        approver=_e(approver),
        nonce=nonce,
        token_json=_json(token),
        vapid_json=_json(vapid_key),
        post_json=_json(post_to),
        sw_json=_json(sw_url),
    )
    return page("Register this browser for test pushes", content), nonce


def _json(value: str) -> str:
    """A JSON string literal that is safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
