"""Ad-hoc campaign requests: what a marketer asks for, and what the store keeps.

A request is a message (title, body, URL, icon, TTL), an audience (an audience file in
the audience bucket, outside the audience prefix so that dropping it sends nothing, or a
segment query over the subscriptions) and optionally A/B variants with a control group.
It becomes a campaign header of the documented audience format (``campaign_header``),
validated by the same JSON Schema and rules as every audience file, so a request that
validates here is one the send path accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pushpipe.audience.format import CampaignHeader
from pushpipe.shared.errors import AudienceRejected, PushpipeError

EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_IDENTIFIER = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_TOPIC = r"^[a-z0-9_.:-]{1,64}$"
MAX_VARIANTS = 10


class State(StrEnum):
    PENDING = "pending"  # counting the audience, then waiting for approvals
    APPROVED = "approved"  # enough approvals; the audience is being released
    REJECTED = "rejected"  # an approver (or the system, for a bad audience) said no
    EXPIRED = "expired"  # nobody decided in time
    SENT = "sent"  # the audience object was written under the audience prefix, once
    FAILED = "failed"  # approved, but the audience could not be released (file changed)


FINAL_STATES = frozenset({State.REJECTED, State.EXPIRED, State.SENT, State.FAILED})


class Stage(StrEnum):
    """Where a pending request is."""

    COUNTING = "counting"
    AWAITING = "awaiting"  # counted; approvers were mailed


class Action(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    TEST = "test"  # send the push to the approver's own test devices
    DEVICE = "device"  # register a browser as the approver's test device


# --- errors (the handler maps each to a page / status) ----------------------------------
class RequestInvalid(PushpipeError):
    """The request cannot be accepted as it is; the message says why."""


class RequestNotFound(PushpipeError):
    pass


class LinkRefused(PushpipeError):
    """A link that changes nothing. ``kind`` names the reason for the page and metrics."""

    kind = "refused"
    status = 403

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class LinkInvalid(LinkRefused):
    kind, status = "invalid", 400


class LinkExpired(LinkRefused):
    kind, status = "expired", 410


class LinkUsed(LinkRefused):
    kind, status = "used", 409


class NotAnApprover(LinkRefused):
    kind, status = "not-an-approver", 403


class SelfApproval(LinkRefused):
    kind, status = "self-approval", 403


class RequestClosed(LinkRefused):
    """The request is no longer pending (already approved, rejected, expired, sent)."""

    kind, status = "closed", 409


class AlreadyDecided(LinkRefused):
    """This approver already approved this request (with another link)."""

    kind, status = "already-decided", 409


class NoTestDevice(LinkRefused):
    kind, status = "no-test-device", 409


# --- the request as submitted -------------------------------------------------------------
class VariantIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")]
    percent: Annotated[float, Field(gt=0, le=100)]
    title: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    body: Annotated[str | None, Field(max_length=1000)] = None
    url: Annotated[str | None, Field(pattern=r"^https?://", max_length=1024)] = None
    icon: Annotated[str | None, Field(pattern=r"^https?://", max_length=1024)] = None

    @field_validator("id")
    @classmethod
    def _not_control(cls, v: str) -> str:
        if v == "control":
            raise ValueError("'control' is the control group, not a variant id")
        return v

    def message(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("title", self.title), ("body", self.body), ("url", self.url))
            if v is not None
        } | ({"icon": self.icon} if self.icon else {})


class FileAudience(BaseModel):
    """An audience file (the documented format) already in the audience bucket.

    Its recipients are used; its campaign header is replaced by the request's."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["file"] = "file"
    key: Annotated[str, Field(min_length=1, max_length=1024)]


class SegmentAudience(BaseModel):
    """Every unmuted subscriber of the tenant following any of ``topics`` (everybody if
    empty), narrowed to ``countries`` and ``languages`` when given."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["segment"] = "segment"
    topics: list[Annotated[str, Field(pattern=_TOPIC)]] = Field(default_factory=list, max_length=20)
    countries: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]] = Field(
        default_factory=list, max_length=250
    )
    languages: list[Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]] = Field(
        default_factory=list, max_length=50
    )

    def describe(self) -> str:
        parts = [f"topics {', '.join(self.topics)}" if self.topics else "all subscribers"]
        if self.countries:
            parts.append(f"countries {', '.join(self.countries)}")
        if self.languages:
            parts.append(f"languages {', '.join(self.languages)}")
        return "segment: " + "; ".join(parts)


class RequestIn(BaseModel):
    """``POST /v1/requests``: what the marketer asks for."""

    model_config = ConfigDict(extra="forbid")

    tenant: Annotated[str, Field(pattern=_IDENTIFIER)]
    campaign: Annotated[str | None, Field(pattern=_IDENTIFIER)] = None
    requester: Annotated[str, Field(max_length=254)]
    title: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(max_length=1000)] = ""
    url: Annotated[str, Field(pattern=r"^https?://", max_length=1024)]
    icon: Annotated[str | None, Field(pattern=r"^https?://", max_length=1024)] = None
    ttl: Annotated[int, Field(ge=0, le=2_419_200)] = 86_400
    urgency: Literal["very-low", "low", "normal", "high"] = "normal"
    topic: Annotated[str | None, Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")] = None
    audience: Annotated[FileAudience | SegmentAudience, Field(discriminator="kind")]
    variants: list[VariantIn] = Field(default_factory=list, max_length=MAX_VARIANTS)
    control_percent: Annotated[float, Field(ge=0, le=50)] = 0
    note: Annotated[str, Field(max_length=1000)] = ""

    @field_validator("requester")
    @classmethod
    def _email(cls, v: str) -> str:
        v = v.strip()
        if not EMAIL.match(v):
            raise ValueError("must be an e-mail address")
        return v.lower()

    def message(self) -> dict[str, str]:
        msg = {"title": self.title, "url": self.url}
        if self.body:
            msg["body"] = self.body
        if self.icon:
            msg["icon"] = self.icon
        return msg

    def campaign_header(self, campaign: str) -> dict[str, Any]:
        """The audience file's campaign header for this request (schema-valid)."""
        header: dict[str, Any] = {
            "id": campaign,
            "tenant": self.tenant,
            "message": self.message(),
            "ttl": self.ttl,
            "urgency": self.urgency,
        }
        if self.topic:
            header["topic"] = self.topic
        if self.variants:
            header["variants"] = [
                {"id": v.id, "percent": v.percent, **({"message": m} if (m := v.message()) else {})}
                for v in self.variants
            ]
            header["control_percent"] = self.control_percent
        return header

    def parsed_header(self, campaign: str) -> CampaignHeader:
        """The header checked by the audience format's own rules (percent sums, unique
        variant ids, the JSON Schema): ``RequestInvalid`` with the reason if not."""
        try:
            return CampaignHeader.parse(self.campaign_header(campaign))
        except AudienceRejected as exc:
            raise RequestInvalid(exc.reason.replace("campaign header is invalid: ", "")) from exc


def parse_request(raw: Any) -> RequestIn:
    """``RequestIn`` from a JSON body, or ``RequestInvalid`` listing what is wrong."""
    try:
        return RequestIn.model_validate(raw)
    except ValidationError as exc:
        raise RequestInvalid(validation_message(exc)) from exc


def validation_message(exc: ValidationError, limit: int = 6) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err.get("loc", ()) if not str(p).startswith("function"))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{where or 'request'}: {msg}")
    more = len(exc.errors()) - limit
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


# --- the stored request -------------------------------------------------------------------
@dataclass(frozen=True)
class Decision:
    at: str  # ISO-8601 UTC
    who: str  # approver e-mail, or "pushpipe" for system decisions
    action: str  # approve | reject | test | device | expire | release | fail | count
    why: str = ""


@dataclass
class ApprovalRequest:
    id: str
    tenant: str
    campaign: str
    requester: str
    request: RequestIn
    state: State
    stage: Stage
    created_at: int  # unix seconds
    expires_at: int
    approvals_required: int
    approvers: tuple[str, ...]
    approvals: int = 0
    audience_total: int | None = None
    audience_malformed: int = 0
    source_etag: str | None = None
    audience_key: str | None = None
    released: int | None = None
    reason: str | None = None
    decisions: list[Decision] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.state == State.PENDING

    def eligible_approvers(self) -> tuple[str, ...]:
        return tuple(a for a in self.approvers if a != self.requester)
