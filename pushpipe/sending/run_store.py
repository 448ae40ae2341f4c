"""The runs table: runs, chain cursors and the campaign index, in DynamoDB.

The protocol (claim, acquire, commit, fencing) is described in ``pushpipe.sending.runs``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from botocore.exceptions import ClientError

from pushpipe.sending.run_reads import RunTable, assignments, item_of, plain_of
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
)
from pushpipe.shared.errors import Fenced, RunStopped, StoreError


def _add_counts(adds: list[tuple[str, int]], names: dict, values: dict) -> str:
    """`` ADD #c0 :c0, ...`` for the counts, aliased into ``names`` and ``values``."""
    if not adds:
        return ""
    names |= {f"#c{i}": k for i, (k, _) in enumerate(adds)}
    values |= {f":c{i}": v for i, (_, v) in enumerate(adds)}
    return " ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(adds)))


class RunStore(RunTable):
    """Runs and chain cursors: claim, start, commit (fenced), abort, and the reads of
    ``RunTable``."""

    def claim_run(self, run_id: str, bucket: str, key: str, etag: str, lease_ms: int) -> bool:
        """Claim the run for admission. False if it exists and is not a lapsed admission."""
        now = int(self.clock() * 1000)
        claimed = self._conditional(
            "put_item",
            TableName=self.table,
            Item=item_of(
                {
                    **plain_of(self._run_key(run_id)),
                    "run_id": run_id,
                    "bucket": bucket,
                    "key": key,
                    "etag": etag,
                    "state": ADMITTING,
                    "active": "1",  # the sweeper finds an admission that never ended
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
        sets, names, values = assignments(fields)
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression=f"SET {sets} REMOVE active",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=item_of(values),
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
        rejections: dict[str, int] | None = None,
    ) -> None:
        """Admission passed: write every chain cursor, then mark the run running.
        ``rejections``: why recipients were rejected (reason -> count, the top ones)."""
        now = int(self.clock() * 1000)
        expires = int(self.clock()) + RUN_TTL_S
        for chain in range(chains):
            assigned = total // chains + (1 if chain < total % chains else 0)
            # already there if an earlier admission of this run died after writing it
            self._conditional(
                "put_item",
                TableName=self.table,
                Item=item_of(
                    {
                        **plain_of(self._run_key(run_id, self._chain_sk(chain))),
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
        sets, names, values = assignments(
            {
                "state": RUNNING,
                "campaign": campaign,
                "tenant": tenant,
                "header": header_json,
                "chains": chains,
                "total": total,
                "malformed": malformed,
                "rejections": json.dumps(rejections or {}, ensure_ascii=False)[:20_000],
                "throttles": {},  # origin -> until (epoch s), shared by the chains
                "updated_at": now,
            }
        )
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression=f"SET {sets} REMOVE active",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=item_of(values),
        )
        self._index_campaign(campaign, run_id)

    def _index_campaign(self, campaign: str, run_id: str) -> None:
        self._call(
            "put_item",
            TableName=self.table,
            Item=item_of(
                {
                    "pk": f"CAMPAIGN#{campaign}",
                    "sk": f"RUN#{run_id}",
                    "run_id": run_id,
                    "created_at": int(self.clock() * 1000),
                    "expires_at": int(self.clock()) + RUN_TTL_S,
                }
            ),
        )

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
                ExpressionAttributeValues=item_of(
                    {":d": DONE, ":r": RUNNING, ":u": int(self.clock() * 1000)}
                ),
            )
            return DONE
        return view.state

    def note_throttles(self, run_id: str, throttles: dict[str, float]) -> None:
        """Tell the run's other chains which origins throttle, until when (latest wins)."""
        if not throttles:
            return
        names = {"#t": "throttles"} | {f"#o{i}": o for i, o in enumerate(throttles)}
        values = {f":u{i}": Decimal(str(u)) for i, u in enumerate(throttles.values())}
        self._conditional(  # a run admitted before throttles were shared has no map: skip
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression="SET " + ", ".join(f"#t.#o{i} = :u{i}" for i in range(len(throttles))),
            ConditionExpression="attribute_exists(#t)",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=item_of(values),
        )

    def abort_run(self, run_id: str, reason: str, state: str = ABORTED) -> None:
        """Stop every chain of the run with ``reason`` (e.g. the file changed)."""
        now = int(self.clock() * 1000)
        # a run that already ended keeps its state and reason
        self._conditional(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id),
            UpdateExpression="SET #s = :s, #r = :r, updated_at = :u REMOVE active",
            ConditionExpression="#s IN (:run, :adm)",
            ExpressionAttributeNames={"#s": "state", "#r": "reason"},
            ExpressionAttributeValues=item_of(
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
                    ExpressionAttributeValues=item_of({":s": state, ":r": reason}),
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
            ExpressionAttributeValues=item_of(values),
            ReturnValues="ALL_NEW",
        )
        return None if got is None else self._chain_state(plain_of(got["Attributes"]))

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
        carry: list[dict] | None = None,
    ) -> None:
        """Advance the cursor and add ``counts`` atomically, fenced on ``epoch``.

        ``carry``: the recipients behind the new position not delivered yet; stored with
        the cursor (replacing the previous carry), sent first by the next batch.

        ``extra_items`` are further TransactWriteItems entries (campaign counters) that
        must commit together with the cursor, exactly once.
        """
        fields: dict[str, Any] = {"position": new_position}
        if carry:
            fields["carry"] = json.dumps(carry, separators=(",", ":"), ensure_ascii=False)
        if done:
            fields["state"] = DONE
        if release or done:
            # a released lease is free at once; its time tells the sweeper how long the
            # hand-off has been waiting for its invocation
            fields["lease_until"] = int(self.clock() * 1000)
        sets, names, values = assignments(fields)
        adds = [(k, v) for k, v in sorted(counts.items()) if v]
        expr = f"SET {sets}" + _add_counts(adds, names, values)
        removes = [] if carry else ["#carry"]
        if done:
            removes.append("#active")
        if removes:
            expr += " REMOVE " + ", ".join(removes)
            names |= {n: n[1:] for n in removes}
        values[":running"] = RUNNING
        extra = list(extra_items)
        update = self._fenced_update(run_id, state, expr, ":running", names, values)
        try:
            self.client.transact_write_items(TransactItems=[update, *extra])
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            reasons = exc.response.get("CancellationReasons") or []
            if (
                code == "TransactionCanceledException"
                and reasons
                and (reasons[0].get("Code") == "ConditionalCheckFailed")
            ):
                self._record_after_stop(run_id, state, new_position, adds, extra)
                raise Fenced(
                    f"chain {state.chain} of run {run_id} is owned by a newer "
                    f"invocation (epoch {state.epoch} lost)"
                ) from exc
            raise StoreError("TransactWriteItems", code, str(exc)) from exc
        state.position = new_position
        state.carry = list(carry or [])
        for k, v in counts.items():
            state.counts[k] = state.counts.get(k, 0) + v
        if done:
            state.state = DONE

    def _fenced_update(
        self,
        run_id: str,
        state: ChainState,
        expr: str,
        state_value: str,
        names: dict[str, str],
        values: dict[str, Any],
    ) -> dict:
        """A TransactWriteItems update of the chain's cursor, conditional on this
        invocation's epoch and on the chain's state being ``values[state_value]``."""
        return {
            "Update": {
                "TableName": self.table,
                "Key": self._run_key(run_id, self._chain_sk(state.chain)),
                "UpdateExpression": expr,
                "ConditionExpression": f"#epoch = :epoch AND #state = {state_value}",
                "ExpressionAttributeNames": names | {"#epoch": "epoch", "#state": "state"},
                "ExpressionAttributeValues": item_of(values | {":epoch": state.epoch}),
            }
        }

    def _record_after_stop(
        self,
        run_id: str,
        state: ChainState,
        new_position: int,
        adds: list[tuple[str, int]],
        extra_items: Iterable[dict],
    ) -> None:
        """The commit of a batch that was sent while another chain stopped the run: if
        this invocation still owns the chain, its outcomes (and counters) are recorded
        all the same, the chain keeps its stopped state, and ``RunStopped`` stops it."""
        got = self._call(
            "get_item",
            TableName=self.table,
            Key=self._run_key(run_id, self._chain_sk(state.chain)),
            ConsistentRead=True,
        ).get("Item")
        item = plain_of(got) if got else {}
        stopped = item.get("state")
        if item.get("epoch") != state.epoch or stopped not in (ABORTED, FAILED):
            return
        names = {"#p": "position"}
        values: dict[str, Any] = {":p": new_position, ":stopped": stopped}
        expr = "SET #p = :p" + _add_counts(adds, names, values)
        update = self._fenced_update(run_id, state, expr, ":stopped", names, values)
        try:
            self.client.transact_write_items(TransactItems=[update, *extra_items])
        except ClientError:
            return  # the chain was lost after all: Fenced
        raise RunStopped(f"run {run_id} was {stopped} while chain {state.chain} was sending")

    def fail_chain(self, run_id: str, state: ChainState, reason: str) -> None:
        self._call(
            "update_item",
            TableName=self.table,
            Key=self._run_key(run_id, self._chain_sk(state.chain)),
            UpdateExpression="SET #s = :f, #r = :r, lease_until = :z REMOVE active",
            ConditionExpression="epoch = :e",
            ExpressionAttributeNames={"#s": "state", "#r": "reason"},
            ExpressionAttributeValues=item_of(
                {":f": FAILED, ":r": reason, ":z": 0, ":e": state.epoch}
            ),
        )
