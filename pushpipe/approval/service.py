"""The approval flow, free of Lambda and HTTP.

``submit``   — validate a request (message, audience, variants, payload size), store it
               pending and hand the counting to an asynchronous invocation;
``prepare``  — count the audience by streaming it, then mail the approvers (each with
               their own signed links) and the requester;
``inspect``  — what a link's confirmation page shows; refuses forged, expired, used,
               foreign links and self-approval without changing anything;
``perform``  — what the confirmed page does: approve, reject, test push, register a
               test device;
``release``  — write the approved audience under the audience prefix, exactly once;
``sweep``    — expire undecided requests, finish releases that were interrupted.

Ports (store, S3, subscriptions, SES, the push sender, the self-invoker) come in as
arguments (``ApprovalPorts``).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

from pushpipe.approval.links import LinkClaims, new_claims, sign_link, verify_link
from pushpipe.approval.mail import (
    Links,
    Preview,
    approver_mail,
    outcome_mail,
    requester_mail,
)
from pushpipe.approval.models import (
    Action,
    AlreadyDecided,
    ApprovalRequest,
    FileAudience,
    LinkExpired,
    LinkInvalid,
    LinkUsed,
    NotAnApprover,
    NoTestDevice,
    RequestClosed,
    RequestIn,
    RequestInvalid,
    RequestNotFound,
    SelfApproval,
    Stage,
    State,
)
from pushpipe.approval.ports import ApprovalConfig, ApprovalPorts
from pushpipe.approval.release import count_file, count_segment, file_recipients, segment_recipients
from pushpipe.approval.store import SYSTEM
from pushpipe.audience.format import Recipient
from pushpipe.audience.payloads import PayloadBuilder, message_for
from pushpipe.audience.writer import Counter, audience_chunks
from pushpipe.push.models import Outcome, PushMessage
from pushpipe.shared.errors import AudienceChanged, AudienceRejected, PayloadTooLarge, StoreError
from pushpipe.shared.observability import logger, metrics

REQUESTS_SUBPREFIX = "requests/"


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


# --- submit -------------------------------------------------------------------------------
def new_request_id() -> str:
    return "r" + secrets.token_hex(8)


def audience_key_for(config: ApprovalConfig, request_id: str) -> str:
    return f"{config.audience_prefix}{REQUESTS_SUBPREFIX}{request_id}.json"


def submit(body: RequestIn, ports: ApprovalPorts, config: ApprovalConfig) -> ApprovalRequest:
    """Validate and store a request; its audience is counted asynchronously."""
    now = ports.clock()
    eligible = [a for a in config.approvers if a != body.requester]
    if len(eligible) < config.approvals_required:
        raise RequestInvalid(
            f"{config.approvals_required} approval(s) are needed but only {len(eligible)} "
            f"approver(s) other than {body.requester} are configured"
        )
    request_id = new_request_id()
    day = datetime.fromtimestamp(now, UTC).strftime("%Y%m%d")
    campaign = body.campaign or f"adhoc-{day}-{request_id[1:9]}"
    header = body.parsed_header(campaign)
    try:
        PayloadBuilder(header, ports.signing_keys(), config.ping_url).check_size()
    except PayloadTooLarge as exc:
        raise RequestInvalid(str(exc)) from exc
    if isinstance(body.audience, FileAudience):
        key = body.audience.key
        if key.startswith(config.audience_prefix):
            raise RequestInvalid(
                f"audience.key: {key!r} is under {config.audience_prefix!r}, where every file "
                "is sent as soon as it lands; upload the draft elsewhere in the bucket "
                "(e.g. drafts/) and request it from there"
            )
        if ports.objects.etag(config.audience_bucket, key) is None:
            raise RequestInvalid(
                f"audience.key: there is no file s3://{config.audience_bucket}/{key}"
            )
    req = ApprovalRequest(
        id=request_id,
        tenant=body.tenant,
        campaign=campaign,
        requester=body.requester,
        request=body,
        state=State.PENDING,
        stage=Stage.COUNTING,
        created_at=int(now),
        expires_at=int(now) + config.request_ttl_s,
        approvals_required=config.approvals_required,
        approvers=tuple(config.approvers),
    )
    ports.store.create(req)
    ports.invoker.invoke({"action": "prepare", "request": request_id})
    logger.info(
        "request submitted",
        extra={"request": request_id, "tenant": req.tenant, "campaign": campaign},
    )
    metrics.add_metric(name="RequestsSubmitted", unit="Count", value=1)
    return req


# --- prepare: count, then mail ------------------------------------------------------------
def prepare(request_id: str, ports: ApprovalPorts, config: ApprovalConfig) -> str:
    """Count the audience and mail approvers and requester. Idempotent."""
    req = ports.store.get(request_id, decisions=False)
    if req.state != State.PENDING or req.stage != Stage.COUNTING:
        return "already-prepared"
    aud = req.request.audience
    etag: str | None = None
    try:
        if isinstance(aud, FileAudience):
            etag = ports.objects.etag(config.audience_bucket, aud.key)
            if etag is None:
                raise AudienceRejected(f"the audience file {aud.key} is gone")
            pinned = etag
            counted = count_file(
                lambda: ports.objects.open(config.audience_bucket, aud.key, pinned)
            )
            total, malformed = counted.total, counted.malformed
        else:
            total = count_segment(
                ports.subscriptions, req.tenant, aud.topics, aud.countries, aud.languages
            )
            malformed = 0
    except AudienceChanged:
        return _refuse(req, "the audience file changed while it was being counted", ports)
    except AudienceRejected as exc:
        return _refuse(req, f"the audience file is not usable: {exc.reason}", ports)
    if total - malformed <= 0:
        return _refuse(req, "the audience is empty: nobody would receive the push", ports)
    if not ports.store.counted(request_id, total, malformed, etag, ports.clock()):
        return "already-prepared"
    req = ports.store.get(request_id)
    previews = payload_previews(req, ports, config)
    failures = []
    for approver in req.eligible_approvers():
        try:
            ports.mailer.send(
                approver, approver_mail(req, previews, links_for(req, approver, ports, config))
            )
        except StoreError as exc:
            failures.append(f"{approver}: {exc}")
    try:
        ports.mailer.send(req.requester, requester_mail(req, previews))
    except StoreError as exc:
        failures.append(f"{req.requester}: {exc}")
    if failures:
        logger.error("approval e-mails failed", extra={"request": request_id, "failures": failures})
        ports.store.record(request_id, ports.clock(), SYSTEM, "mail-failed", "; ".join(failures))
    metrics.add_metric(name="RequestsCounted", unit="Count", value=1)
    logger.info("request counted and mailed", extra={"request": request_id, "total": total})
    return "mailed"


def _refuse(req: ApprovalRequest, reason: str, ports: ApprovalPorts) -> str:
    try:
        ports.store.close(req.id, State.REJECTED, SYSTEM, "refuse", reason, ports.clock())
    except RequestClosed:
        return "already-closed"
    _notify(req.id, ports, "refused", f"Your request was refused before approval: {reason}.")
    return "refused"


def _notify(request_id: str, ports: ApprovalPorts, what: str, detail: str) -> None:
    req = ports.store.get(request_id)
    try:
        ports.mailer.send(req.requester, outcome_mail(req, what, detail))
    except StoreError as exc:
        logger.error("outcome e-mail failed", extra={"request": request_id, "error": str(exc)})


def link_url(config: ApprovalConfig, action: Action, token: str) -> str:
    base = config.api_url.rstrip("/")
    if action == Action.DEVICE:
        return f"{base}/v1/approvers/device?t={quote(token)}"
    return f"{base}/v1/approval/{action.value}?t={quote(token)}"


def links_for(
    req: ApprovalRequest, approver: str, ports: ApprovalPorts, config: ApprovalConfig
) -> Links:
    keys = ports.signing_keys()

    def url(action: Action) -> str:
        return link_url(
            config, action, sign_link(new_claims(req.id, approver, action, req.expires_at), keys)
        )

    return Links(
        approve=url(Action.APPROVE),
        reject=url(Action.REJECT),
        test=url(Action.TEST),
        device=url(Action.DEVICE),
    )


def payload_previews(
    req: ApprovalRequest, ports: ApprovalPorts, config: ApprovalConfig
) -> list[Preview]:
    """The exact JSON each variant's recipients get; the per-recipient values (the
    notification id and the signed ping token) are named, not shown."""
    header = req.request.parsed_header(req.campaign)
    builder = PayloadBuilder(header, ports.signing_keys(), config.ping_url)
    probe = Recipient(0, "x" * 128, "https://push.invalid/", "", "", None, None)
    worst, _ = builder.worst_case_size()
    out = []
    for variant in [v.id for v in header.variants] or ["default"]:
        payload = json.loads(builder.build(probe, variant))
        payload["nid"] = "<notification id, per recipient>"
        payload["ping"]["token"] = "<signed ping token, per recipient>"
        label = f"variant {variant}" if header.variants else "every recipient"
        out.append(Preview(label, json.dumps(payload, indent=2, ensure_ascii=False)))
    if out:
        out[-1] = Preview(
            out[-1].variant,
            out[-1].json_text + f"\n\n(largest payload: {worst:,} of 3,993 bytes allowed)",
        )
    return out


# --- links --------------------------------------------------------------------------------
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
            _expire(req, ports)
            raise LinkExpired("This request has expired: nobody can approve it any more.")
        if req.state != State.PENDING or req.stage != Stage.AWAITING:
            raise RequestClosed(ports.store.closed_message(req.id))
        if action == Action.APPROVE and ports.store.has_voted(req.id, claims.approver):
            raise AlreadyDecided(
                "You have already approved this request; your approval counts once."
            )
    devices = len(ports.store.devices(claims.approver)) if action == Action.TEST else 0
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
        _notify(
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
    return _register_device(claims, req, ports, subscription, now)


def _recipients(req: ApprovalRequest) -> str:
    if req.audience_total is None:
        return "?"
    return f"{req.audience_total - req.audience_malformed:,}"


def _test_push(
    claims: LinkClaims, req: ApprovalRequest, ports: ApprovalPorts, now: float
) -> PageResult:
    devices = ports.store.devices(claims.approver)
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
        ports.store.remove_device(claims.approver, device_id)
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
    subscription: dict | None,
    now: float,
) -> PageResult:
    sub = subscription or {}
    endpoint = sub.get("endpoint")
    keys = sub.get("keys") or {}
    if not (
        isinstance(endpoint, str)
        and endpoint.startswith(("https://", "http://"))
        and len(endpoint) <= 2048
        and isinstance(keys.get("p256dh"), str)
        and isinstance(keys.get("auth"), str)
    ):
        raise RequestInvalid("subscription: a PushSubscription with endpoint and keys is needed")
    ports.store.use_link(claims, now, "registered a test device")
    dev = ports.store.add_device(claims.approver, sub, now)
    return PageResult(
        "Test device registered",
        f"This browser now receives your test pushes (device {dev}).",
        req,
    )


# --- expiry, release, sweep ---------------------------------------------------------------
def _expire(req: ApprovalRequest, ports: ApprovalPorts) -> bool:
    try:
        ports.store.close(
            req.id,
            State.EXPIRED,
            SYSTEM,
            "expire",
            f"no decision before {datetime.fromtimestamp(req.expires_at, UTC).isoformat()}",
            ports.clock(),
        )
    except RequestClosed:
        return False
    _notify(
        req.id, ports, "expired", "Your request expired without enough approvals. Nothing was sent."
    )
    return True


def release(request_id: str, ports: ApprovalPorts, config: ApprovalConfig) -> str:
    """Write the approved audience under the audience prefix, once. Idempotent."""
    req = ports.store.get(request_id, decisions=False)
    if req.state != State.APPROVED:
        return f"not-approved ({req.state.value})"
    key = audience_key_for(config, req.id)
    header = req.request.campaign_header(req.campaign)
    aud = req.request.audience
    body = None
    try:
        if isinstance(aud, FileAudience):
            body = ports.objects.open(config.audience_bucket, aud.key, req.source_etag or "")
            recipients = Counter(file_recipients(body))
        else:
            recipients = Counter(
                segment_recipients(
                    ports.subscriptions, req.tenant, aud.topics, aud.countries, aud.languages
                )
            )
        written = ports.writer.write_once(
            config.audience_bucket, key, audience_chunks(header, recipients)
        )
    except (AudienceChanged, AudienceRejected) as exc:
        reason = (
            "the audience file changed after it was counted and approved"
            if isinstance(exc, AudienceChanged)
            else f"the audience file is no longer usable: {exc.reason}"
        )
        try:
            ports.store.close(
                req.id, State.FAILED, SYSTEM, "fail", reason, ports.clock(), expect=State.APPROVED
            )
        except RequestClosed:
            return "already-closed"
        _notify(
            req.id,
            ports,
            "failed",
            f"Your approved request could not be sent: {reason}. Nothing was sent.",
        )
        return "failed"
    finally:
        if body is not None:
            body.close()
    released = (
        recipients.n if written.created else (req.audience_total or 0) - req.audience_malformed
    )
    try:
        ports.store.close(
            req.id,
            State.SENT,
            SYSTEM,
            "release",
            f"{released} recipients released as s3://{config.audience_bucket}/{key}",
            ports.clock(),
            expect=State.APPROVED,
            extra={"audience_key": key, "released": released, "audience_etag": written.etag},
        )
    except RequestClosed:
        return "already-released"
    metrics.add_metric(name="RequestsReleased", unit="Count", value=1)
    logger.info("audience released", extra={"request": req.id, "key": key, "released": released})
    _notify(
        req.id,
        ports,
        "approved and sent",
        f"Your request was approved. {released:,} recipients were released to the send "
        "path; the push is going out now.",
    )
    return "released"


def sweep(ports: ApprovalPorts, config: ApprovalConfig) -> dict[str, int]:
    """Expire undecided requests and finish interrupted releases."""
    now = ports.clock()
    done = {"expired": 0, "released": 0}
    for request_id in list(ports.store.open_until(now)):
        req = ports.store.get(request_id, decisions=False)
        if req.state == State.PENDING and req.expires_at <= now:
            done["expired"] += int(_expire(req, ports))
        elif req.state == State.APPROVED:
            done["released"] += int(release(request_id, ports, config) == "released")
    return done
