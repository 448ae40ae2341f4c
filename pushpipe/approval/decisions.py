"""What an approver's link does: ``inspect`` shows its confirmation page, ``perform`` acts.

``inspect`` refuses forged, expired, used and foreign links and self-approval without
changing anything; ``perform`` approves, rejects, sends a test push or registers a test
device. Each link works once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from pushpipe.approval.links import LinkClaims, verify_link
from pushpipe.approval.models import (
    Action,
    AlreadyDecided,
    ApprovalRequest,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    NotAnApprover,
    NoTestDevice,
    RequestClosed,
    RequestInvalid,
    RequestNotFound,
    SelfApproval,
    Stage,
    State,
)
from pushpipe.approval.ports import ApprovalConfig, ApprovalPorts
from pushpipe.approval.service import expire_request, notify_requester
from pushpipe.audience.payloads import message_for
from pushpipe.push.models import Outcome, PushMessage
from pushpipe.shared.observability import logger, metrics


@dataclass
class PageResult:
    """What the page shows after an action."""

    title: str
    message: str
    request: ApprovalRequest
    details: list[str] = field(default_factory=list)


@dataclass
class LinkView:
    claims: LinkClaims
    request: ApprovalRequest
    devices: int = 0


def inspect(
    token: str | None,
    ports: ApprovalPorts,
    config: ApprovalConfig,
    expect: Action | None = None,
) -> LinkView:
    """Check a link without using it: what its confirmation page shows."""
    now = ports.clock()
    claims = verify_link(token, ports.signing_keys(), now)
    if expect is not None and claims.action != expect.value:
        raise LinkInvalid(
            f"This is a “{claims.action}” link, opened as a “{expect.value}” link. Open the "
            "link exactly as it is in the e-mail."
        )
    try:
        req = ports.store.get(claims.request)
    except RequestNotFound as exc:
        raise LinkInvalid("This link is for a request that does not exist.") from exc
    if claims.approver not in req.approvers or claims.approver not in config.approvers:
        raise NotAnApprover(f"{claims.approver} is not an approver of this request.")
    action = Action(claims.action)
    if action == Action.APPROVE and claims.approver == req.requester:
        raise SelfApproval("You requested this campaign: someone else has to approve it.")
    if ports.store.link_used(claims):
        raise LinkUsed("This link was already used. Each link works once.")
    if action in (Action.APPROVE, Action.REJECT):
        if req.state == State.PENDING and req.expires_at <= now:
            expire_request(req, ports)
            raise LinkExpired("This request has expired: nobody can approve it any more.")
        if req.state != State.PENDING or req.stage != Stage.AWAITING:
            raise RequestClosed(ports.store.closed_message(req.id))
        if action == Action.APPROVE and ports.store.has_voted(req.id, claims.approver):
            raise AlreadyDecided(
                "You have already approved this request; your approval counts once."
            )
    devices = len(ports.devices.of(claims.approver)) if action == Action.TEST else 0
    return LinkView(claims, req, devices)


def perform(
    token: str | None,
    ports: ApprovalPorts,
    config: ApprovalConfig,
    reason: str = "",
    subscription: dict | None = None,
    expect: Action | None = None,
) -> PageResult:
    """Do what a confirmed link says (the POST of its page)."""
    view = inspect(token, ports, config, expect)
    claims, req = view.claims, view.request
    now = ports.clock()
    action = Action(claims.action)
    if action == Action.APPROVE:
        approvals = ports.store.approve(claims, now)
        metrics.add_metric(name="Approvals", unit="Count", value=1)
        if approvals >= req.approvals_required and ports.store.mark_approved(
            req.id, now, now + config.release_grace_s
        ):
            ports.invoker.invoke({"action": "release", "request": req.id})
            logger.info("request approved", extra={"request": req.id, "approvals": approvals})
            return PageResult(
                "Approved",
                f"Thank you. The campaign is approved and being released to the send path: "
                f"{_recipients(req)} recipients.",
                ports.store.get(req.id),
            )
        return PageResult(
            "Approval recorded",
            f"Your approval is recorded ({approvals} of {req.approvals_required}). The "
            "campaign is sent once enough approvers have approved it.",
            ports.store.get(req.id),
        )
    if action == Action.REJECT:
        why = " ".join(reason.split())[:1000]
        ports.store.close(req.id, State.REJECTED, claims.approver, "reject", why, now, claims)
        metrics.add_metric(name="Rejections", unit="Count", value=1)
        notify_requester(
            req.id,
            ports,
            "rejected",
            f"Your request was rejected by {claims.approver}"
            + (f": {why}" if why else " (no reason given)")
            + ". Nothing was sent.",
        )
        return PageResult(
            "Rejected",
            "The request is rejected; nothing will be sent. The requester has been told"
            + (" why." if why else "."),
            ports.store.get(req.id),
        )
    if action == Action.TEST:
        return _test_push(claims, req, ports, now)
    return _register_device(claims, req, ports, config, subscription, now)


def _recipients(req: ApprovalRequest) -> str:
    if req.audience_total is None:
        return "?"
    return f"{req.audience_total - req.audience_malformed:,}"


def _test_push(
    claims: LinkClaims, req: ApprovalRequest, ports: ApprovalPorts, now: float
) -> PageResult:
    devices = ports.devices.of(claims.approver)
    if not devices:
        raise NoTestDevice(
            "You have no registered test device yet. Open the “Register this browser for "
            "test pushes” link of the e-mail in the browser you want the test on, then "
            "use this link again."
        )
    ports.store.use_link(claims, now, f"test push to {len(devices)} device(s)")
    header = req.request.parsed_header(req.campaign)
    variants = [v.id for v in header.variants] or ["default"]
    messages = []
    for dev in devices:
        for variant in variants:
            body = {
                "nid": f"test-{req.id}-{variant}",
                "campaign": req.campaign,
                "variant": variant,
                "test": True,
                **message_for(header, variant, None),
            }
            messages.append(
                PushMessage(
                    recipient_id=f"{dev['sk'].removeprefix('DEVICE#')}:{variant}",
                    endpoint=dev["endpoint"],
                    p256dh=dev["p256dh"],
                    auth=dev["auth"],
                    payload=json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(),
                    ttl=min(header.ttl, 3600),
                    urgency="high",
                )
            )
    results = ports.sender().send(messages)
    gone = {r.recipient_id.split(":", 1)[0] for r in results if r.outcome is Outcome.PRUNED}
    for device_id in gone:
        ports.devices.remove(claims.approver, device_id)
    ok = sum(1 for r in results if r.outcome is Outcome.SENT)
    details = [
        f"{r.recipient_id}: {r.outcome.value}" + (f" ({r.reason})" if r.reason else "")
        for r in results
    ]
    metrics.add_metric(name="TestPushes", unit="Count", value=ok)
    return PageResult(
        "Test push sent" if ok == len(results) else "Test push partly failed",
        f"{ok} of {len(results)} test pushes ({len(variants)} variant(s) x {len(devices)} "
        f"device(s)) were accepted by the push services."
        + (f" {len(gone)} device(s) no longer exist and were removed." if gone else ""),
        req,
        details,
    )


def _register_device(
    claims: LinkClaims,
    req: ApprovalRequest,
    ports: ApprovalPorts,
    config: ApprovalConfig,
    subscription: dict | None,
    now: float,
) -> PageResult:
    sub = subscription if isinstance(subscription, dict) else {}
    keys = sub.get("keys")
    keys = keys if isinstance(keys, dict) else {}
    if not (isinstance(keys.get("p256dh"), str) and isinstance(keys.get("auth"), str)):
        raise RequestInvalid("subscription: a PushSubscription with endpoint and keys is needed")
    refused = config.endpoint_policy.refusal(sub.get("endpoint"))
    if refused is not None:
        raise RequestInvalid(f"subscription: {refused}")
    ports.store.use_link(claims, now, "registered a test device")
    dev = ports.devices.add(claims.approver, sub, now)
    return PageResult(
        "Test device registered",
        f"This browser now receives your test pushes (device {dev}).",
        req,
    )
