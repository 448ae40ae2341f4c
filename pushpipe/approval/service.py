"""The approval flow, free of Lambda and HTTP.

``submit``   — validate a request (message, audience, variants, payload size), store it
               pending and hand the counting to an asynchronous invocation;
``prepare``  — count the audience by streaming it, then mail the approvers (each with
               their own signed links) and the requester;
``release``  — write the approved audience under the audience prefix, exactly once;
``sweep``    — expire undecided requests, finish releases that were interrupted.

Ports (store, S3, subscriptions, SES, the push sender, the self-invoker) come in as
arguments (``ApprovalPorts``). What each approver's link does (``inspect``, ``perform``)
lives in ``decisions``.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from urllib.parse import quote

from pushpipe import topology as t
from pushpipe.approval.links import new_claims, sign_link
from pushpipe.approval.mail import (
    Links,
    Preview,
    approver_mail,
    outcome_mail,
    requester_mail,
)
from pushpipe.approval.models import (
    Action,
    ApprovalRequest,
    FileAudience,
    RequestClosed,
    RequestIn,
    RequestInvalid,
    Stage,
    State,
)
from pushpipe.approval.ports import ApprovalConfig, ApprovalPorts
from pushpipe.approval.release import count_file, count_segment, file_recipients, segment_recipients
from pushpipe.approval.store import SYSTEM
from pushpipe.audience.format import Recipient
from pushpipe.audience.keys import audience_key, tenant_of, tenant_prefix
from pushpipe.audience.payloads import PayloadBuilder
from pushpipe.audience.writer import Counter, audience_chunks
from pushpipe.shared.errors import AudienceChanged, AudienceRejected, PayloadTooLarge, StoreError
from pushpipe.shared.observability import logger, metrics

REQUESTS_SUBPREFIX = "requests/"


# --- submit -------------------------------------------------------------------------------
def new_request_id() -> str:
    return "r" + secrets.token_hex(8)


def audience_key_for(config: ApprovalConfig, req: ApprovalRequest) -> str:
    """The approved audience of ``req``: under its tenant's audience prefix."""
    return audience_key(config.audience_prefix, req.tenant, f"{REQUESTS_SUBPREFIX}{req.id}.json")


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
        drafts = tenant_prefix(t.DRAFTS_PREFIX, body.tenant)
        # One answer for "not there", "not yours" and "not a draft": nothing tells a tenant
        # which of another tenant's objects exist.
        if tenant_of(key, t.DRAFTS_PREFIX) != body.tenant or (
            ports.objects.etag(config.audience_bucket, key) is None
        ):
            raise RequestInvalid(
                f"audience.key: there is no draft {key!r} of tenant {body.tenant!r}; upload "
                f"drafts under {drafts} (files under {config.audience_prefix} are sent as "
                "soon as they land)"
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
                lambda: ports.objects.open(config.audience_bucket, aud.key, pinned),
                config.endpoint_policy,
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
    notify_requester(
        req.id, ports, "refused", f"Your request was refused before approval: {reason}."
    )
    return "refused"


def notify_requester(request_id: str, ports: ApprovalPorts, what: str, detail: str) -> None:
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


# --- expiry, release, sweep ---------------------------------------------------------------
def expire_request(req: ApprovalRequest, ports: ApprovalPorts) -> bool:
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
    notify_requester(
        req.id, ports, "expired", "Your request expired without enough approvals. Nothing was sent."
    )
    return True


def release(request_id: str, ports: ApprovalPorts, config: ApprovalConfig) -> str:
    """Write the approved audience under the audience prefix, once. Idempotent."""
    req = ports.store.get(request_id, decisions=False)
    if req.state != State.APPROVED:
        return f"not-approved ({req.state.value})"
    key = audience_key_for(config, req)
    header = req.request.campaign_header(req.campaign)
    aud = req.request.audience
    body = None
    try:
        if isinstance(aud, FileAudience):
            body = ports.objects.open(config.audience_bucket, aud.key, req.source_etag or "")
            recipients = Counter(file_recipients(body, config.endpoint_policy))
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
        notify_requester(
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
    notify_requester(
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
            done["expired"] += int(expire_request(req, ports))
        elif req.state == State.APPROVED:
            done["released"] += int(release(request_id, ports, config) == "released")
    return done
