"""``pushpipe local mail`` and ``pushpipe request new|status``: ad-hoc campaigns that need
approval, on the local cloud.

``pushpipe local mail`` lists the e-mails sent through SES in the local cloud with their
links, which point at the local HTTP API and work there: open one in a browser, or let
the CLI click it (``--click N approve``: GET the confirmation page, then POST its form,
as a person would). ``pushpipe request new`` asks for an ad-hoc campaign through the
real ``POST /v1/requests``; ``pushpipe request status ID`` follows it.

The mailbox, the form client and the tenant's API calls are in ``pushpipe_local.sim``;
the demo stage (``DEMO_STAGES``) is in ``pushpipe_local.cli.approval_demo``.
"""

from __future__ import annotations

import argparse
import json
import urllib.error
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pushpipe_local.cli.approval_demo import DEMO_STAGES
from pushpipe_local.cli.session import Endpoints, require_running
from pushpipe_local.sim.form_client import click
from pushpipe_local.sim.mailbox import LocalMail, local_mails, print_mails
from pushpipe_local.sim.tenant import DRAFTS, post_request, request_status

__all__ = ["DEMO_STAGES", "register"]

console = Console()


# --- pushpipe local mail -------------------------------------------------------------------
def _numbered(mails: list[LocalMail], number: str) -> LocalMail | None:
    return next((m for m in mails if str(m.index) == number), None)


def _click_mail(mails: list[LocalMail], number: str, action: str, reason: str) -> int:
    mail = _numbered(mails, number)
    if mail is None or action not in mail.links:
        console.print(f"[red]mail #{number} has no {action!r} link[/red]")
        return 2
    page, result = click(mail.links[action], reason)
    console.print(f"GET  {page.status} {escape(page.title)}")
    if result is None:
        console.print(f"[red]{escape(page.text)}[/red]")
        return 1
    console.print(f"POST {result.status} {escape(result.title)}: {escape(result.text)}")
    return 0 if result.status < 400 else 1


def _show_mail(mails: list[LocalMail], number: str) -> int:
    mail = _numbered(mails, number)
    if mail is None:
        console.print(f"[red]no mail #{number}[/red]")
        return 2
    to = escape(", ".join(mail.to))
    console.print(f"[bold]From:[/bold] {escape(mail.sender)}\n[bold]To:[/bold] {to}")
    console.print(f"[bold]Subject:[/bold] {escape(mail.subject)}\n")
    print(mail.text)
    return 0


def _list_mails(mails: list[LocalMail], last: int, as_json: bool) -> int:
    newest = mails[-last:]
    if as_json:
        print(json.dumps([m.__dict__ for m in newest], indent=2))
        return 0
    if not mails:
        console.print("no e-mails yet")
        return 0
    print_mails(console, newest)
    console.print("Open a link in a browser, or: pushpipe local mail --click N approve")
    return 0


def cmd_mail(args: argparse.Namespace) -> int:
    ep = require_running(args)
    mails = local_mails(ep.moto_url)
    if args.to:
        mails = [m for m in mails if args.to.lower() in (a.lower() for a in m.to)]
    if args.click:
        number, action = args.click
        return _click_mail(mails, number, action, args.reason or "")
    if args.show:
        return _show_mail(mails, args.show)
    return _list_mails(mails, args.last, args.json)


# --- pushpipe request new ------------------------------------------------------------------
def _variant(spec: str) -> dict:
    parts = spec.split(":", 2)
    if len(parts) < 2:
        raise argparse.ArgumentTypeError("a variant is ID:PERCENT[:TITLE]")
    out: dict[str, Any] = {"id": parts[0], "percent": float(parts[1])}
    if len(parts) == 3 and parts[2]:
        out["title"] = parts[2]
    return out


def _audience(args: argparse.Namespace, ep: Endpoints) -> dict[str, Any]:
    """The request's audience: a local file uploaded under drafts/<tenant>/, or a segment."""
    if not args.file:
        return {
            "kind": "segment",
            "topics": args.topic or [],
            "countries": args.country or [],
            "languages": args.language or [],
        }
    path = Path(args.file)
    key = f"{DRAFTS}{args.tenant}/{path.name}"
    ep.client("s3").put_object(
        Bucket=ep.name("bucket", "audience"), Key=key, Body=path.read_bytes()
    )
    console.print(f"uploaded the draft audience to s3://{ep.name('bucket', 'audience')}/{key}")
    return {"kind": "file", "key": key}


def _request_body(args: argparse.Namespace, audience: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": args.tenant,
        "requester": args.requester,
        "title": args.title,
        "body": args.body or "",
        "url": args.url,
        "ttl": args.ttl,
        "audience": audience,
    }
    if args.campaign:
        body["campaign"] = args.campaign
    if args.variant:
        body["variants"] = args.variant
        body["control_percent"] = args.control
    return body


def cmd_request_new(args: argparse.Namespace) -> int:
    ep = require_running(args)
    if bool(args.file) == bool(args.topic or args.country or args.language or args.everyone):
        console.print(
            "[red]give an audience: --file PATH, or a segment "
            "(--topic/--country/--language/--everyone)[/red]"
        )
        return 2
    status, answer = post_request(ep, _request_body(args, _audience(args, ep)))
    if status >= 400:
        console.print(f"[red]{status}: {escape(str(answer.get('message')))}[/red]")
        return 1
    console.print(
        f"request [bold]{answer['id']}[/bold] (campaign {answer['campaign']}) is "
        f"{answer['state']}; "
        f"approvers: {', '.join(answer['approvers'])}. See the e-mails: pushpipe local mail"
    )
    return 0


# --- pushpipe request status ---------------------------------------------------------------
STATUS_FIELDS = (
    "tenant",
    "campaign",
    "requester",
    "state",
    "stage",
    "recipients",
    "approvals",
    "audience_key",
    "released",
    "reason",
)


def request_tables(status: dict) -> tuple[Table, Table]:
    """The request's fields, and its decisions (who, when, what, why)."""
    table = Table(title=f"request {status['id']}", show_header=False)
    for k in STATUS_FIELDS:
        table.add_row(k, str(status.get(k)))
    trail = Table(title="decisions")
    for col in ("when", "who", "action", "why"):
        trail.add_column(col)
    for d in status["decisions"]:
        trail.add_row(d["at"], d["who"], d["action"], d["why"])
    return table, trail


def cmd_request_status(args: argparse.Namespace) -> int:
    ep = require_running(args)
    try:
        status = request_status(ep, args.tenant, args.id)
    except urllib.error.HTTPError as exc:
        console.print(f"[red]{exc.code}: {exc.read().decode()[:300]}[/red]")
        return 1
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    for table in request_tables(status):
        console.print(table)
    return 0


# --- registration --------------------------------------------------------------------------
def _local_subparsers(subparsers: Any) -> Any:
    local = subparsers.choices.get("local")
    for action in getattr(local, "_actions", []):
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


def _register_mail(local: Any) -> None:
    mail = local.add_parser(
        "mail", help="e-mails sent through SES in the local cloud, with their links"
    )
    mail.add_argument("--to", help="only e-mails to this address")
    mail.add_argument("--last", type=int, default=20, help="how many (newest)")
    mail.add_argument("--show", metavar="N", help="print e-mail N (text part)")
    mail.add_argument(
        "--click",
        nargs=2,
        metavar=("N", "ACTION"),
        help="follow e-mail N's link ACTION (approve/reject/test): GET its page, POST it",
    )
    mail.add_argument("--reason", help="with --click N reject: the reason")
    mail.add_argument("--json", action="store_true")
    mail.set_defaults(func=cmd_mail)


def _register_request(subparsers: Any) -> None:
    request = subparsers.add_parser("request", help="ad-hoc campaigns that need approval")
    rsub = request.add_subparsers(dest="request_command", required=True)
    new = rsub.add_parser("new", help="ask for an ad-hoc campaign (POST /v1/requests)")
    new.add_argument("--tenant", default="demo-shop")
    new.add_argument("--requester", required=True, help="your e-mail")
    new.add_argument("--title", required=True)
    new.add_argument("--body")
    new.add_argument("--url", required=True)
    new.add_argument("--ttl", type=int, default=86400)
    new.add_argument("--campaign")
    new.add_argument("--file", help="a local audience file (uploaded under drafts/)")
    new.add_argument("--topic", action="append", help="segment: subscribers of this topic")
    new.add_argument("--country", action="append")
    new.add_argument("--language", action="append")
    new.add_argument("--everyone", action="store_true", help="segment: every subscriber")
    new.add_argument("--variant", action="append", type=_variant, help="ID:PERCENT[:TITLE]")
    new.add_argument("--control", type=float, default=0, help="control group percent")
    new.set_defaults(func=cmd_request_new)
    status = rsub.add_parser("status", help="state and decisions of a request")
    status.add_argument("id")
    status.add_argument("--tenant", default="demo-shop")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=cmd_request_status)


def register(subparsers: Any) -> None:
    local = _local_subparsers(subparsers)
    if local is not None:
        _register_mail(local)
    _register_request(subparsers)
