"""The requests table: requests, their decisions, used links and approvers' test devices
(those in ``DeviceStore``, in ``devices``).

Items (single table, ``pk``/``sk``)::

    REQ#<id>              REQUEST                 the request and its state
    REQ#<id>              DEC#<time>#<action>#<who> every decision: who, when, why
    REQ#<id>              VOTE#<approver>         one approval per approver
    REQ#<id>              USED#<jti>              a link that was used (single use)
    CAMPAIGN#<tenant>     <campaign>              campaign ids are never reused
    APPROVER#<email>      DEVICE#<id>             an approver's test push subscription

Every state change is a conditional write, so two clicks, two approvers or a click and
the expiry sweep racing each other cannot both win: approving a request is one
transaction (link used + vote + approval count + decision, conditional on the request
still pending and unexpired), and the switch to ``approved`` — after which the audience
is released — happens once, for the approval that completes the quorum.

Pending and approved requests carry ``open``/``open_until`` (a sparse index), so the
sweeper finds the ones to expire or to finish releasing without a scan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.approval.items import (
    Cancelled,
    cancellation_reasons,
    error_code,
    from_item,
    iso_time,
    item_key,
    request_pk,
    to_item,
)
from pushpipe.approval.links import LinkClaims
from pushpipe.approval.models import (
    AlreadyDecided,
    ApprovalRequest,
    Decision,
    LinkUsed,
    RequestClosed,
    RequestIn,
    RequestInvalid,
    RequestNotFound,
    Stage,
    State,
)
from pushpipe.shared.errors import StoreError

OPEN = "OPEN"
OPEN_INDEX = "open"
REQUEST_RETENTION_S = 400 * 24 * 3600  # the audit trail outlives a year of reporting
SYSTEM = "pushpipe"


class RequestStore:
    def __init__(self, table: str, client: Any = None) -> None:
        self.table = table
        self.client = client or boto3.client("dynamodb")

    # --- plumbing -------------------------------------------------------------------------
    def _transact(self, operation: str, items: list[dict]) -> None:
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise Cancelled(cancellation_reasons(exc)) from exc
            raise StoreError(operation, error_code(exc), str(exc)) from exc

    def _update(self, operation: str, **kwargs: Any) -> bool:
        """An UpdateItem; False if its condition failed."""
        try:
            self.client.update_item(TableName=self.table, **kwargs)
            return True
        except ClientError as exc:
            if error_code(exc) == "ConditionalCheckFailedException":
                return False
            raise StoreError(operation, error_code(exc), str(exc)) from exc

    def _decision_put(self, request_id: str, at: float, who: str, action: str, why: str) -> dict:
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": request_pk(request_id),
                        "sk": f"DEC#{iso_time(at)}#{action}#{who}",
                        "at": iso_time(at),
                        "who": who,
                        "action": action,
                        "why": why,
                        "purge_at": int(at) + REQUEST_RETENTION_S,
                    }
                ),
            }
        }

    def _used_put(self, claims: LinkClaims, at: float) -> dict:
        return {
            "Put": {
                "TableName": self.table,
                "Item": to_item(
                    {
                        "pk": request_pk(claims.request),
                        "sk": f"USED#{claims.jti}",
                        "approver": claims.approver,
                        "action": claims.action,
                        "at": iso_time(at),
                        "purge_at": int(at) + REQUEST_RETENTION_S,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    # --- requests -------------------------------------------------------------------------
    def create(self, req: ApprovalRequest) -> None:
        """Store a new pending request; its campaign id must be new for the tenant."""
        item = {
            "pk": request_pk(req.id),
            "sk": "REQUEST",
            "id": req.id,
            "tenant": req.tenant,
            "campaign": req.campaign,
            "requester": req.requester,
            "request": req.request.model_dump_json(),
            "state": req.state.value,
            "stage": req.stage.value,
            "created_at": req.created_at,
            "expires_at": req.expires_at,
            "approvals_required": req.approvals_required,
            "approvers": list(req.approvers),
            "approvals": 0,
            "open": OPEN,
            "open_until": f"{req.expires_at:012d}#{req.id}",
            "purge_at": req.created_at + REQUEST_RETENTION_S,
        }
        items = [
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": f"CAMPAIGN#{req.tenant}",
                            "sk": req.campaign,
                            "request": req.id,
                            "purge_at": req.created_at + REQUEST_RETENTION_S,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            self._decision_put(
                req.id, req.created_at, req.requester, "request", req.request.note or ""
            ),
        ]
        try:
            self._transact("TransactWriteItems create request", items)
        except Cancelled as exc:
            if exc.failed(1):
                raise RequestInvalid(
                    f"campaign id {req.campaign!r} is already used by another request of "
                    f"tenant {req.tenant!r}: choose a new one"
                ) from None
            raise StoreError("create request", "Conflict", f"request id {req.id} exists") from None

    def get(self, request_id: str, decisions: bool = True) -> ApprovalRequest:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": request_pk(request_id)}},
            "ConsistentRead": True,
        }
        if not decisions:
            kwargs["KeyConditionExpression"] += " AND sk = :sk"
            kwargs["ExpressionAttributeValues"][":sk"] = {"S": "REQUEST"}
        head: dict | None = None
        found: list[Decision] = []
        while True:
            try:
                page = self.client.query(**kwargs)
            except ClientError as exc:
                raise StoreError("Query requests", error_code(exc), str(exc)) from exc
            for raw in page.get("Items", ()):
                d = from_item(raw)
                if d["sk"] == "REQUEST":
                    head = d
                elif d["sk"].startswith("DEC#"):
                    found.append(Decision(d["at"], d["who"], d["action"], d.get("why", "")))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        if head is None:
            raise RequestNotFound(f"there is no request {request_id!r}")
        return ApprovalRequest(
            id=head["id"],
            tenant=head["tenant"],
            campaign=head["campaign"],
            requester=head["requester"],
            request=RequestIn.model_validate(json.loads(head["request"])),
            state=State(head["state"]),
            stage=Stage(head["stage"]),
            created_at=head["created_at"],
            expires_at=head["expires_at"],
            approvals_required=head["approvals_required"],
            approvers=tuple(head.get("approvers", ())),
            approvals=head.get("approvals", 0),
            audience_total=head.get("audience_total"),
            audience_malformed=head.get("audience_malformed", 0),
            source_etag=head.get("source_etag"),
            audience_key=head.get("audience_key"),
            released=head.get("released"),
            reason=head.get("reason"),
            decisions=sorted(found, key=lambda x: x.at),
        )

    def counted(
        self, request_id: str, total: int, malformed: int, source_etag: str | None, at: float
    ) -> bool:
        """The audience was counted: the request now waits for approvals."""
        values: dict[str, Any] = {
            ":t": total,
            ":m": malformed,
            ":aw": Stage.AWAITING.value,
            ":p": State.PENDING.value,
            ":c": Stage.COUNTING.value,
        }
        sets = "audience_total = :t, audience_malformed = :m, #st = :aw"
        if source_etag:
            values[":e"] = source_etag
            sets += ", source_etag = :e"
        try:
            self._transact(
                "TransactWriteItems counted",
                [
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": item_key(request_pk(request_id), "REQUEST"),
                            "UpdateExpression": "SET " + sets,
                            "ConditionExpression": "#s = :p AND #st = :c",
                            "ExpressionAttributeNames": {"#s": "state", "#st": "stage"},
                            "ExpressionAttributeValues": to_item(values),
                        }
                    },
                    self._decision_put(
                        request_id,
                        at,
                        SYSTEM,
                        "count",
                        f"{total} recipients" + (f", {malformed} malformed" if malformed else ""),
                    ),
                ],
            )
            return True
        except Cancelled:
            return False

    def close(
        self,
        request_id: str,
        to: State,
        who: str,
        action: str,
        why: str,
        at: float,
        claims: LinkClaims | None = None,
        expect: State = State.PENDING,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Move the request from ``expect`` to ``to`` (rejected, expired, sent, failed),
        recording the decision and, if a link carried it, using the link.

        ``LinkUsed`` if the link was used already, ``RequestClosed`` if the request is
        not in ``expect`` any more."""
        values: dict[str, Any] = {":to": to.value, ":from": expect.value, ":why": why}
        sets = ["#s = :to", "#r = :why"]
        names = {"#s": "state", "#r": "reason", "#o": "open"}
        for i, (name, value) in enumerate((extra or {}).items()):
            sets.append(f"#x{i} = :x{i}")
            names[f"#x{i}"] = name
            values[f":x{i}"] = value
        condition = "#s = :from"
        if to == State.EXPIRED:
            condition += " AND expires_at <= :now"
            values[":now"] = int(at)
        update = {
            "Update": {
                "TableName": self.table,
                "Key": item_key(request_pk(request_id), "REQUEST"),
                "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE #o, open_until",
                "ConditionExpression": condition,
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": to_item(values),
            }
        }
        items = [update, self._decision_put(request_id, at, who, action, why)]
        if claims is not None:
            items.insert(0, self._used_put(claims, at))
        try:
            self._transact(f"close request ({to.value})", items)
        except Cancelled as exc:
            if claims is not None and exc.failed(0):
                raise LinkUsed("This link was already used. Each link works once.") from None
            raise RequestClosed(self.closed_message(request_id)) from None

    def approve(self, claims: LinkClaims, at: float) -> int:
        """Record ``claims.approver``'s approval; returns the approvals so far.

        One transaction: the link is used, the approver's vote is new, the request is
        still pending, counted and unexpired, the count goes up, the decision is kept."""
        items = [
            self._used_put(claims, at),
            {
                "Put": {
                    "TableName": self.table,
                    "Item": to_item(
                        {
                            "pk": request_pk(claims.request),
                            "sk": f"VOTE#{claims.approver}",
                            "at": iso_time(at),
                            "purge_at": int(at) + REQUEST_RETENTION_S,
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": self.table,
                    "Key": item_key(request_pk(claims.request), "REQUEST"),
                    "UpdateExpression": "SET approvals = approvals + :one",
                    "ConditionExpression": "#s = :p AND #st = :aw AND expires_at > :now",
                    "ExpressionAttributeNames": {"#s": "state", "#st": "stage"},
                    "ExpressionAttributeValues": to_item(
                        {
                            ":one": 1,
                            ":p": State.PENDING.value,
                            ":aw": Stage.AWAITING.value,
                            ":now": int(at),
                        }
                    ),
                }
            },
            self._decision_put(claims.request, at, claims.approver, "approve", ""),
        ]
        try:
            self._transact("approve request", items)
        except Cancelled as exc:
            if exc.failed(0):
                raise LinkUsed("This link was already used. Each link works once.") from None
            if exc.failed(1):
                raise AlreadyDecided(
                    "You have already approved this request; your approval counts once."
                ) from None
            raise RequestClosed(self.closed_message(claims.request)) from None
        return self.get(claims.request, decisions=False).approvals

    def mark_approved(self, request_id: str, at: float, retry_at: float) -> bool:
        """pending → approved once the quorum is reached. True for exactly one caller.

        The sweeper releases it again after ``retry_at`` if it is not sent by then."""
        return self._update(
            "UpdateItem approved",
            Key=item_key(request_pk(request_id), "REQUEST"),
            UpdateExpression="SET #s = :a, approved_at = :at, open_until = :ou",
            ConditionExpression="#s = :p AND approvals >= approvals_required",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues=to_item(
                {
                    ":a": State.APPROVED.value,
                    ":p": State.PENDING.value,
                    ":at": int(at),
                    # an approved request is swept until its release is complete
                    ":ou": f"{int(retry_at):012d}#{request_id}",
                }
            ),
        )

    def use_link(self, claims: LinkClaims, at: float, why: str) -> None:
        """Use a link that changes no state (test push, device registration)."""
        try:
            self._transact(
                "use link",
                [
                    self._used_put(claims, at),
                    self._decision_put(claims.request, at, claims.approver, claims.action, why),
                ],
            )
        except Cancelled as exc:
            if exc.failed(0):
                raise LinkUsed("This link was already used. Each link works once.") from None
            raise

    def link_used(self, claims: LinkClaims) -> bool:
        try:
            got = self.client.get_item(
                TableName=self.table,
                Key=item_key(request_pk(claims.request), f"USED#{claims.jti}"),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise StoreError("GetItem link", error_code(exc), str(exc)) from exc
        return "Item" in got

    def has_voted(self, request_id: str, approver: str) -> bool:
        try:
            got = self.client.get_item(
                TableName=self.table,
                Key=item_key(request_pk(request_id), f"VOTE#{approver}"),
                ConsistentRead=True,
            )
        except ClientError as exc:
            raise StoreError("GetItem vote", error_code(exc), str(exc)) from exc
        return "Item" in got

    def record(self, request_id: str, at: float, who: str, action: str, why: str) -> None:
        """A decision that changes no state (e.g. a notice that an e-mail failed)."""
        self._transact("record decision", [self._decision_put(request_id, at, who, action, why)])

    def closed_message(self, request_id: str) -> str:
        req = self.get(request_id, decisions=False)
        if req.state == State.PENDING and req.stage == Stage.COUNTING:
            return "This request is still being counted; approve it from the e-mail."
        if req.state == State.PENDING:
            return "This request has expired: nobody can approve it any more."
        return {
            State.APPROVED: "This request has already been approved; it is being sent.",
            State.SENT: "This request has already been approved and sent.",
            State.REJECTED: f"This request was rejected{_because(req.reason)}.",
            State.EXPIRED: "This request has expired: nobody can approve it any more.",
            State.FAILED: f"This request was approved but could not be sent{_because(req.reason)}.",
        }[req.state]

    def open_until(self, until: float, limit: int = 100) -> Iterator[str]:
        """Ids of pending/approved requests whose ``open_until`` is before ``until``."""
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": OPEN_INDEX,
            "KeyConditionExpression": "#o = :o AND open_until < :u",
            "ExpressionAttributeNames": {"#o": "open"},
            "ExpressionAttributeValues": {":o": {"S": OPEN}, ":u": {"S": f"{int(until):012d}~"}},
            "Limit": limit,
        }
        while True:
            try:
                page = self.client.query(**kwargs)
            except ClientError as exc:
                raise StoreError("Query open requests", error_code(exc), str(exc)) from exc
            for item in page.get("Items", ()):
                yield item["open_until"]["S"].split("#", 1)[1]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _because(reason: str | None) -> str:
    return f": {reason}" if reason else ""
