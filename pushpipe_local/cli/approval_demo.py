"""The approval stage of ``pushpipe demo``: an ad-hoc campaign from request to report.

A draft audience of demo subscribers → ``POST /v1/requests`` with two title variants and
a 10% control group → the approvers' e-mails → the first approver registers a device and
sends themself a test push → approves (the link works once) → the release is sent once →
the control group is held out exactly as the hash assigns it → simulated browsers ping,
the shop reports orders from each group → the report compares each variant with the
control group, with the lift.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rich.markup import escape
from rich.table import Table

from pushpipe import topology as t
from pushpipe.audience.format import Variant
from pushpipe.audience.variants import assign
from pushpipe.sending.run_store import RunStore
from pushpipe.sending.runs import RunView
from pushpipe_local.cli.demo import DemoContext
from pushpipe_local.cli.progress import COMPACT
from pushpipe_local.cloud.cloud import physical_name
from pushpipe_local.sim.audiences import audience_bytes, recipient
from pushpipe_local.sim.browsers import Rates, SimulatedBrowsers
from pushpipe_local.sim.form_client import click, register_device
from pushpipe_local.sim.mailbox import LocalMail, print_mails, wait_for_mails
from pushpipe_local.sim.tenant import (
    DRAFTS,
    post_order,
    post_request,
    wait_for_conversions,
    wait_for_state,
)

DEMO_REQUESTER = "marketer@example.com"
MAX_RECIPIENTS = 2000
CONTROL_PERCENT = 10
VARIANTS: tuple[dict[str, Any], ...] = (
    {"id": "a", "percent": 45},
    {"id": "b", "percent": 45, "title": "Last hours: 30% off everything"},
)
# The variants as send_batch parses them, to tell which group a subscriber is in.
PARSED_VARIANTS = tuple(Variant(v["id"], v["percent"], {}) for v in VARIANTS)
# Every n-th member of each group orders: a converts best, then b, then the control group.
ORDER_EVERY = {"a": 6, "b": 9, "control": 12}


@dataclass
class AdHoc:
    """The demo's ad-hoc campaign, as the steps learn about it."""

    tenant: str
    campaign: str
    key: str
    subs: list[dict]
    seq_before: int  # the push service's last delivery before the request
    request_id: str = ""

    def group_of(self, subscriber: str) -> str:
        """The subscriber's variant or ``control``, as send_batch assigns it."""
        return assign(self.campaign, subscriber, PARSED_VARIANTS, CONTROL_PERCENT)


def _fail(ctx: DemoContext, message: str) -> None:
    ctx.console.print(f"[red]{message}[/red]")
    ctx.ok = False


def _upload_draft(ctx: DemoContext) -> AdHoc:
    """Up to 2,000 of the demo's subscribers as a draft audience file."""
    tenant = ctx.results.get("tenant", "demo-shop")
    subs = ctx.subscriptions[:MAX_RECIPIENTS]
    key = f"{DRAFTS}{tenant}/adhoc-{ctx.campaign}.json"
    ctx.endpoints.client("s3").put_object(
        Bucket=physical_name("bucket", "audience"),
        Key=key,
        Body=audience_bytes(
            {
                "id": "draft",
                "tenant": tenant,
                "message": {"title": "-", "url": "https://x.example"},
            },
            (recipient(s["id"], s) for s in subs),
        ),
    )
    seq = int(ctx.endpoints.push_admin("GET", "/_admin/stats").get("last_seq") or 0)
    return AdHoc(tenant, f"adhoc-{ctx.campaign}", key, subs, seq)


def _request(ctx: DemoContext, adhoc: AdHoc) -> bool:
    """``POST /v1/requests``: the draft, two title variants, a control group."""
    status, answer = post_request(
        ctx.endpoints,
        {
            "tenant": adhoc.tenant,
            "campaign": adhoc.campaign,
            "requester": DEMO_REQUESTER,
            "title": "Flash sale: 30% off",
            "body": "Until midnight, on everything.",
            "url": "https://shop.example/flash",
            "audience": {"kind": "file", "key": adhoc.key},
            "variants": list(VARIANTS),
            "control_percent": CONTROL_PERCENT,
            "note": "Demo: A/B test of the title with a 10% control group.",
        },
    )
    if status != 202:
        _fail(ctx, f"POST /v1/requests answered {status}: {escape(str(answer))}")
        return False
    adhoc.request_id = answer["id"]
    ctx.console.print(
        f"[bold]POST /v1/requests[/bold] → request {adhoc.request_id}: {len(adhoc.subs):,} "
        f"recipients from s3://{physical_name('bucket', 'audience')}/{adhoc.key}, "
        "variants a 45% / b 45%, control 10%."
    )
    return True


def _approver_mail(ctx: DemoContext, adhoc: AdHoc) -> tuple[str, LocalMail]:
    """Every approver's e-mail and the requester's copy; the first approver's."""
    approvers = [a.strip() for a in t.APPROVAL.settings[t.ENV_APPROVER_EMAILS].split(",")]
    mails = wait_for_mails(
        ctx.endpoints.moto_url,
        lambda m: adhoc.request_id in m.text or adhoc.campaign in m.text,
        count=len(approvers) + 1,
    )
    print_mails(ctx.console, mails)
    approver = approvers[0]
    return approver, next(m for m in mails if m.to == [approver])


def _test_push(ctx: DemoContext, approver: str, mail: LocalMail) -> None:
    """The approver registers a (local push service) browser, then tests the push on it."""
    ep = ctx.endpoints
    device = ep.push_admin("POST", "/_admin/subscriptions", {"count": 1})["subscriptions"][0]
    code, _ = register_device(
        mail.links["device"], {"endpoint": device["endpoint"], "keys": device["keys"]}
    )
    page, result = click(mail.links["test"])
    ctx.console.print(
        f"{approver}: registered a test device ({code}); “Send test push to me”: "
        f"{result.title if result else page.title}"
    )


def _approve(ctx: DemoContext, approver: str, mail: LocalMail) -> None:
    """GET shows the confirmation page (a mail scanner's prefetch changes nothing), POST
    approves; the same link a second time is refused."""
    page, result = click(mail.links["approve"])
    ctx.console.print(
        f"{approver}: GET {page.status} “{page.title}” → POST "
        f"{result.status if result else '-'} “{result.title if result else ''}”"
    )
    again, _ = click(mail.links["approve"])
    ctx.console.print(f"The same link again: {again.status} “{again.title}” — links work once.")


def _wait_run(ctx: DemoContext, campaign: str, timeout_s: float = 120) -> RunView | None:
    store = RunStore(physical_name("table", "runs"), client=ctx.endpoints.client("dynamodb"))
    run = None
    end = time.time() + timeout_s
    while time.time() < end:
        runs = store.runs_of_campaign(campaign)
        run = runs[0] if runs else None
        if run is not None and run.state in ("done", "aborted", "rejected", "failed"):
            break
        time.sleep(0.5)
    return run


def _released_run(ctx: DemoContext, adhoc: AdHoc) -> RunView | None:
    """The send of the released audience, once it is done (None if it failed)."""
    done = wait_for_state(ctx.endpoints, adhoc.tenant, adhoc.request_id, ("sent", "failed"))
    if done["state"] != "sent":
        _fail(ctx, f"the request ended {done['state']}: {done['reason']}")
        return None
    run = _wait_run(ctx, adhoc.campaign)
    if run is None or run.state != "done":
        _fail(ctx, f"the approved campaign's send did not finish: {run}")
        return None
    return run


def _check_control_group(ctx: DemoContext, adhoc: AdHoc, run: RunView) -> None:
    counts = run.counts
    expected = sum(1 for s in adhoc.subs if adhoc.group_of(s["id"]) == "control")
    ctx.console.print(
        f"Released once and sent: {counts['sent']:,} pushes, {counts['control']:,} subscribers "
        f"held out as the control group (expected {expected:,} by the hash)."
    )
    if counts["control"] != expected or counts["sent"] != len(adhoc.subs) - expected:
        ctx.ok = False
        ctx.console.print("[red]sent + control does not match the audience[/red]")
    ctx.results["adhoc_campaign"] = adhoc.campaign


def _buyers(adhoc: AdHoc) -> list[str]:
    """Who orders: every n-th member of each group (``ORDER_EVERY``), by subscriber id."""
    groups = {s["id"]: adhoc.group_of(s["id"]) for s in adhoc.subs}
    return [
        sid
        for g, n in ORDER_EVERY.items()
        for sid in sorted(sid for sid, grp in groups.items() if grp == g)[::n]
    ]


def _pings_and_orders(ctx: DemoContext, adhoc: AdHoc) -> int:
    """Browsers ping deliveries and clicks; the shop reports orders from every group.
    Returns how many orders were placed."""
    ep = ctx.endpoints
    browsers = SimulatedBrowsers(
        ep.push_url, Rates(seed=11), concurrency=16, after=adhoc.seq_before
    )
    stats = browsers.run_until_idle(idle_s=1.5, timeout_s=120)
    browsers.stop()
    buyers = _buyers(adhoc)
    accepted = sum(
        post_order(ep, adhoc.tenant, sid, f"{adhoc.campaign}-o{i}", "25.00")
        for i, sid in enumerate(buyers)
    )
    pinged = stats.counts(adhoc.campaign)
    delivered = sum(pinged.get(v, {}).get("delivered", 0) for v in ("a", "b"))
    ctx.console.print(
        f"Simulated browsers pinged {delivered:,} "
        f"deliveries; the shop reported {accepted} orders (POST /v1/orders, signed) from "
        "members of variant a, variant b and the control group."
    )
    return len(buyers)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _lift(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


def _money(per: dict) -> str:
    return ", ".join(f"{v} {c}" for c, v in sorted(per.items())) or "-"


def comparison_table(report: dict) -> Table:
    """Each variant next to the control group, with the lift (the report's comparison)."""
    cmp = report["comparison"]
    table = Table(
        title=f"campaign {report['campaign']}: variants against the control group", **COMPACT
    )
    for col in (
        "group",
        "recipients",
        "CTR",
        "conversions",
        "conv. rate",
        "lift",
        "revenue/recipient",
        "lift",
    ):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in [*cmp["variants"], cmp["control"]]:
        is_control = row["group"] == "control"
        table.add_row(
            row["group"] + (" (held out)" if is_control else ""),
            f"{row['recipients']:,}",
            "-" if is_control else _pct(row["ctr"]),
            str(row["conversions"]),
            _pct(row["conversion_rate"]),
            "" if is_control else _lift(row["conversion_lift"]),
            _money(row["revenue_per_recipient"]),
            "" if is_control else ", ".join(_lift(v) for v in row["revenue_lift"].values()) or "-",
        )
    return table


def _show_comparison(ctx: DemoContext, adhoc: AdHoc, conversions: int) -> None:
    try:
        report = wait_for_conversions(ctx.endpoints, adhoc.tenant, adhoc.campaign, conversions)
    except SystemExit as exc:  # the report API refused (fetch_report says why)
        ctx.console.print(f"[yellow]report: {exc}[/yellow]")
        return
    if report.get("comparison"):
        ctx.console.print(comparison_table(report))
    else:
        _fail(ctx, "the report has no control-group comparison")


def _stage_approval(ctx: DemoContext) -> None:
    adhoc = _upload_draft(ctx)
    if not _request(ctx, adhoc):
        return
    approver, mail = _approver_mail(ctx, adhoc)
    _test_push(ctx, approver, mail)
    _approve(ctx, approver, mail)
    run = _released_run(ctx, adhoc)
    if run is None:
        return
    _check_control_group(ctx, adhoc, run)
    orders = _pings_and_orders(ctx, adhoc)
    _show_comparison(ctx, adhoc, orders)


# Collected by pushpipe_local.cli.demo (through pushpipe_local.cli.approval, the plugin).
DEMO_STAGES = [("Ad-hoc campaign with approval, A/B variants and a control group", _stage_approval)]
