"""The runs table: runs, chain cursors and the campaign index, in DynamoDB.

The protocol (claim, acquire, commit, fencing) is described in ``pushpipe.sending.runs``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import boto3
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from pushpipe.sending.runs import (
    ABORTED,
    ADMITTING,
    COUNT_FIELDS,
    DONE,
    FAILED,
    REJECTED,
    RUN_TTL_S,
    RUNNING,
    ChainState,
    Cursor,
    RunView,
)
from pushpipe.shared.errors import Fenced, StoreError

_ser = TypeSerializer()
_des = TypeDeserializer()


def _item(d: Mapping[str, Any]) -> dict:
    return {k: _ser.serialize(v) for k, v in d.items() if v is not None}


def _plain(item: Mapping[str, Any]) -> dict:
    out = {k: _des.deserialize(v) for k, v in item.items()}
    return {k: int(v) if isinstance(v, Decimal) and v == int(v) else v for k, v in out.items()}


def _assignments(fields: Mapping[str, Any], tag: str = "f") -> tuple[str, dict, dict]:
    """``#f0 = :f0, ...`` with every attribute name aliased (DynamoDB reserves hundreds of
    words, ``total``, ``position`` and ``key`` among them)."""
    parts, names, values = [], {}, {}
    for i, (name, value) in enumerate(fields.items()):
        names[f"#{tag}{i}"] = name
        values[f":{tag}{i}"] = value
        parts.append(f"#{tag}{i} = :{tag}{i}")
    return ", ".join(parts), names, values


class RunStore:
    """DynamoDB adapter for runs and chain cursors (table keys ``pk``/``sk``)."""

    def __init__(self, table: str, client: Any = None, clock=time.time) -> None:
        self.table = table
        self.client = client or boto3.client("dynamodb")
        self.clock = clock

    # -- helpers ---------------------------------------------------------------------
    @staticmethod
    def _run_key(run_id: str, sk: str = "HEADER") -> dict:
        return {"pk": {"S": f"RUN#{run_id}"}, "sk": {"S": sk}}

    @staticmethod
    def _chain_sk(chain: int) -> str:
        return f"CHAIN#{chain:04d}"

    def _call(self, op: str, **kwargs):
        try:
            return getattr(self.client, op)(**kwargs)
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise StoreError(op, err.get("Code", "?"), err.get("Message", str(exc))) from exc

    def _conditional(self, op: str, **kwargs) -> dict | None:
        """A conditional write: its response, or None when the condition did not hold."""
        try:
            return self._call(op, **kwargs)
        except StoreError as exc:
            if exc.code == "ConditionalCheckFailedException":
                return None
            raise

    # -- runs ------------------------------------------------------------------------
    def claim_run(self, run_id: str, bucket: str, key: str, etag: str, lease_ms: int) -> bool:
        """Claim the run for admission. False if it exists and is not a lapsed admission."""
        now = int(self.clock() * 1000)
        claimed = self._conditional(
            "put_item",
            TableName=self.table,
            Item=_item(
                {
                    **_plain(self._run_key(run_id)),
                    "run_id": run_id,
                    "bucket": bucket,
                    "key": key,
                    "etag": etag,
                    "state": ADMITTING,
                    "lease_until": now + lease_ms,
                    "created_at": now,
                    "expires_at": int(self.clock()) + RUN_TTL_S,
                }
            ),
            ConditionExpression=("attribute_not_exists(pk) OR (#s = :adm AND lease_until < :now)"),
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":adm": {"S": ADMITTING}, ":now": {"N": str(now)}},
        )
        return claimed is not None

    def reject_run(
        self,
        run_id: str,
        reason: str,
        campaign: str | None = None,
        tenant: str | None = None,
        total: int = 0,
        malformed: int = 0,
    ) -> None:
        fields: dict[str, Any] = {
            "state": REJECTED,
            "reason": reason[:1000],
            "updated_at": int(self.clock() * 1000),
            "total": total,
            "malformed": malformed,
        }
        if campaign:
            fields |= {"campaign": campaign, "tenant": tenant or ""}
        sets, names, values = _assignments(fields)
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression=f"SET {sets}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_item(values),
        )
        if campaign:
            self._index_campaign(campaign, run_id)

    def start_run(
        self,
        run_id: str,
        *,
        campaign: str,
        tenant: str,
        header_json: str,
        chains: int,
        total: int,
        malformed: int,
        cursor_base: Cursor,
    ) -> None:
        """Admission passed: write every chain cursor, then mark the run running."""
        now = int(self.clock() * 1000)
        expires = int(self.clock()) + RUN_TTL_S
        for chain in range(chains):
            assigned = total // chains + (1 if chain < total % chains else 0)
            # already there if an earlier admission of this run died after writing it
            self._conditional(
                "put_item",
                TableName=self.table,
                Item=_item(
                    {
                        **_plain(self._run_key(run_id, self._chain_sk(chain))),
                        "run_id": run_id,
                        "chain": chain,
                        "chains": chains,
                        "campaign": campaign,
                        "bucket": cursor_base.bucket,
                        "key": cursor_base.key,
                        "etag": cursor_base.etag,
                        "position": chain,
                        "epoch": 0,
                        "lease_until": now,
                        "state": RUNNING,
                        "assigned": assigned,
                        "active": "1",
                        **dict.fromkeys(COUNT_FIELDS, 0),
                        "expires_at": expires,
                    }
                ),
                ConditionExpression="attribute_not_exists(pk)",
            )
        sets, names, values = _assignments(
            {
                "state": RUNNING,
                "campaign": campaign,
                "tenant": tenant,
                "header": header_json,
                "chains": chains,
                "total": total,
                "malformed": malformed,
                "updated_at": now,
            }
        )
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression=f"SET {sets}",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=_item(values),
        )
        self._index_campaign(campaign, run_id)

    def _index_campaign(self, campaign: str, run_id: str) -> None:
        self._call(
            "put_item",
            TableName=self.table,
            Item=_item(
                {
                    "pk": f"CAMPAIGN#{campaign}",
                    "sk": f"RUN#{run_id}",
                    "run_id": run_id,
                    "created_at": int(self.clock() * 1000),
                    "expires_at": int(self.clock()) + RUN_TTL_S,
                }
            ),
        )

    def run_header(self, run_id: str) -> dict | None:
        got = self._call(
            "get_item", TableName=self.table, Key=self._run_key(run_id), ConsistentRead=True
        )
        return _plain(got["Item"]) if "Item" in got else None

    def finish_run_if_done(self, run_id: str) -> str | None:
        """Mark the run done once every chain is; returns the run's state."""
        view = self.view(run_id)
        if view is None:
            return None
        if (
            view.state == RUNNING
            and view.chain_states
            and all(c.state == DONE for c in view.chain_states)
        ):
            # a concurrent finisher may have marked it done already: either way it is done
            self._conditional(
                "update_item",
                TableName=self.table,
                Key=self._run_key(run_id),
                UpdateExpression="SET #s = :d, updated_at = :u",
                ConditionExpression="#s = :r",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues=_item(
                    {":d": DONE, ":r": RUNNING, ":u": int(self.clock() * 1000)}
                ),
            )
            return DONE
        return view.state

    def abort_run(self, run_id: str, reason: str, state: str = ABORTED) -> None:
        """Stop every chain of the run with ``reason`` (e.g. the file changed)."""
        now = int(self.clock() * 1000)
        # a run that already ended keeps its state and reason
        self._conditional(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression="SET #s = :s, #r = :r, updated_at = :u",
            ConditionExpression="#s IN (:run, :adm)",
            ExpressionAttributeNames={"#s": "state", "#r": "reason"},
            ExpressionAttributeValues=_item(
                {":s": state, ":r": reason, ":u": now, ":run": RUNNING, ":adm": ADMITTING}
            ),
        )
        view = self.view(run_id)
        for c in view.chain_states if view else ():
            if c.state == RUNNING:
                self._call(
                    "update_item",
                    TableName=self.table,
                    Key=self._run_key(run_id, self._chain_sk(c.chain)),
                    UpdateExpression="SET #s = :s, #r = :r REMOVE active",
                    ExpressionAttributeNames={"#s": "state", "#r": "reason"},
                    ExpressionAttributeValues=_item({":s": state, ":r": reason}),
                )

    # -- chains ----------------------------------------------------------------------
    def acquire(
        self, run_id: str, chain: int, deadline_ms: int, owner: str = ""
    ) -> ChainState | None:
        """Own the chain until ``deadline_ms`` if its lease is free; None otherwise.

        ``owner`` is the invocation's request id. Lambda retries a failed async
        invocation with the same request id, and only after the failed attempt ended,
        so a retry may take over its own lease at once instead of waiting for it to lapse.
        """
        now = int(self.clock() * 1000)
        condition = "#s = :run AND (lease_until <= :now"
        values: dict[str, Any] = {
            ":one": 1,
            ":d": deadline_ms,
            ":run": RUNNING,
            ":now": now,
            ":me": owner or "-",
        }
        condition += " OR #o = :me)" if owner else ")"
        got = self._conditional(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id, self._chain_sk(chain)),
            UpdateExpression="SET epoch = epoch + :one, lease_until = :d, #o = :me",
            ConditionExpression=condition,
            ExpressionAttributeNames={"#s": "state", "#o": "owner"},
            ExpressionAttributeValues=_item(values),
            ReturnValues="ALL_NEW",
        )
        return None if got is None else self._chain_state(_plain(got["Attributes"]))

    @staticmethod
    def _chain_state(item: Mapping[str, Any]) -> ChainState:
        return ChainState(
            chain=int(item["chain"]),
            position=int(item["position"]),
            epoch=int(item["epoch"]),
            state=item["state"],
            assigned=int(item.get("assigned", 0)),
            counts={k: int(item.get(k, 0)) for k in COUNT_FIELDS},
            lease_until=int(item.get("lease_until", 0)),
        )

    def commit(
        self,
        run_id: str,
        state: ChainState,
        new_position: int,
        counts: Mapping[str, int],
        *,
        done: bool = False,
        release: bool = False,
        extra_items: Iterable[dict] = (),
    ) -> None:
        """Advance the cursor and add ``counts`` atomically, fenced on ``epoch``.

        ``extra_items`` are further TransactWriteItems entries (campaign counters) that
        must commit together with the cursor, exactly once.
        """
        fields: dict[str, Any] = {"position": new_position}
        if done:
            fields["state"] = DONE
        if release or done:
            # a released lease is free at once; its time tells the sweeper how long the
            # hand-off has been waiting for its invocation
            fields["lease_until"] = int(self.clock() * 1000)
        sets, names, values = _assignments(fields)
        expr = f"SET {sets}"
        adds = [(k, v) for k, v in sorted(counts.items()) if v]
        if adds:
            expr += " ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(adds)))
            names |= {f"#c{i}": k for i, (k, _) in enumerate(adds)}
            values |= {f":c{i}": v for i, (_, v) in enumerate(adds)}
        if done:
            expr += " REMOVE #active"
            names["#active"] = "active"
        names |= {"#epoch": "epoch", "#state": "state"}
        values |= {":epoch": state.epoch, ":running": RUNNING}
        update = {
            "Update": {
                "TableName": self.table,
                "Key": self._run_key(run_id, self._chain_sk(state.chain)),
                "UpdateExpression": expr,
                "ConditionExpression": "#epoch = :epoch AND #state = :running",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _item(values),
            }
        }
        try:
            self.client.transact_write_items(TransactItems=[update, *extra_items])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            reasons = exc.response.get("CancellationReasons") or []
            if (
                code == "TransactionCanceledException"
                and reasons
                and (reasons[0].get("Code") == "ConditionalCheckFailed")
            ):
                raise Fenced(
                    f"chain {state.chain} of run {run_id} is owned by a newer "
                    f"invocation (epoch {state.epoch} lost)"
                ) from exc
            raise StoreError("TransactWriteItems", code, str(exc)) from exc
        state.position = new_position
        for k, v in counts.items():
            state.counts[k] = state.counts.get(k, 0) + v
        if done:
            state.state = DONE

    def fail_chain(self, run_id: str, state: ChainState, reason: str) -> None:
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id, self._chain_sk(state.chain)),
            UpdateExpression="SET #s = :f, #r = :r, lease_until = :z REMOVE active",
            ConditionExpression="epoch = :e",
            ExpressionAttributeNames={"#s": "state", "#r": "reason"},
            ExpressionAttributeValues=_item(
                {":f": FAILED, ":r": reason, ":z": 0, ":e": state.epoch}
            ),
        )

    def stalled_chains(self, grace_ms: int, index: str = "active") -> list[Cursor]:
        """Running chains whose lease lapsed more than ``grace_ms`` ago: their invocation
        died, or the hand-off to the next one was lost."""
        now = int(self.clock() * 1000) - grace_ms
        out: list[Cursor] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "IndexName": index,
            "KeyConditionExpression": "active = :a",
            "ExpressionAttributeValues": {":a": {"S": "1"}},
        }
        while True:
            page = self._call("query", **kwargs)
            for raw in page.get("Items", []):
                item = _plain(raw)
                full = self._call(
                    "get_item",
                    TableName=self.table,
                    Key={"pk": raw["pk"], "sk": raw["sk"]},
                    ConsistentRead=True,
                )
                if "Item" not in full:
                    continue
                item = _plain(full["Item"])
                if item.get("state") == RUNNING and int(item.get("lease_until", 0)) < now:
                    out.append(
                        Cursor(
                            item["run_id"],
                            item.get("campaign", ""),
                            item["bucket"],
                            item["key"],
                            item["etag"],
                            int(item["chain"]),
                            int(item["chains"]),
                            int(item["position"]),
                        )
                    )
            if "LastEvaluatedKey" not in page:
                return out
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- views -----------------------------------------------------------------------
    def view(self, run_id: str) -> RunView | None:
        items: list[dict] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"RUN#{run_id}"}},
            "ConsistentRead": True,
        }
        while True:
            page = self._call("query", **kwargs)
            items.extend(_plain(i) for i in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        head = next((i for i in items if i["sk"] == "HEADER"), None)
        if head is None:
            return None
        return RunView(
            run_id=run_id,
            campaign=head.get("campaign", ""),
            tenant=head.get("tenant", ""),
            bucket=head["bucket"],
            key=head["key"],
            etag=head["etag"],
            state=head["state"],
            reason=head.get("reason"),
            chains=int(head.get("chains", 0)),
            total=int(head.get("total", 0)),
            malformed=int(head.get("malformed", 0)),
            created_at=int(head.get("created_at", 0)),
            header=head.get("header"),
            chain_states=[self._chain_state(i) for i in items if i["sk"].startswith("CHAIN#")],
        )

    def runs_of_campaign(self, campaign: str) -> list[RunView]:
        page = self._call(
            "query",
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CAMPAIGN#{campaign}"}},
        )
        ids = [_plain(i)["run_id"] for i in page.get("Items", [])]
        views = [v for v in (self.view(i) for i in ids) if v is not None]
        return sorted(views, key=lambda v: v.created_at)
