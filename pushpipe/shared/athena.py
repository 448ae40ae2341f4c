"""Athena: run one SQL statement over the audit archive and read its rows.

``StartQueryExecution`` in the stack's workgroup (which fixes the result location,
its encryption and the per-query scan limit), ``GetQueryExecution`` until the query
ends, then ``GetQueryResults`` page by page. The local cloud answers the same three
calls from DuckDB (``pushpipe_local.cloud.athena_api``, reached through
``AWS_ENDPOINT_URL_ATHENA``), so this code runs unchanged in both.

Parameters fill the ``?`` placeholders (``ExecutionParameters``): Athena substitutes
them as SQL literals, so strings are quoted here and numbers are not.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.exceptions import ClientError

from pushpipe.shared.errors import StoreError

DONE_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")


def literal(value: str | int | float) -> str:
    """An ``ExecutionParameters`` entry: a SQL literal."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise TypeError(f"an Athena parameter is a string or a number, not {type(value).__name__}")
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


class QueryFailed(StoreError):
    """The query ran and failed (or was cancelled, or took too long)."""


class AthenaQueries:
    def __init__(
        self,
        workgroup: str,
        database: str,
        client: Any = None,
        timeout_s: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.workgroup, self.database = workgroup, database
        self.client = client or boto3.client("athena")
        self.timeout_s = timeout_s
        self.sleep = sleep

    def _call(self, operation: str, **kwargs: Any) -> dict:
        fn = getattr(self.client, operation)
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "?"))
            raise StoreError(operation, code, str(exc)) from exc

    def start(self, sql: str, params: Sequence[str | int | float] = ()) -> str:
        kwargs: dict[str, Any] = {
            "QueryString": sql,
            "WorkGroup": self.workgroup,
            "QueryExecutionContext": {"Database": self.database},
        }
        if params:
            kwargs["ExecutionParameters"] = [literal(p) for p in params]
        return self._call("start_query_execution", **kwargs)["QueryExecutionId"]

    def wait(self, query_id: str) -> dict:
        """The ended query's ``Status``; ``QueryFailed`` unless it succeeded in time."""
        deadline = time.monotonic() + self.timeout_s
        pause = 0.2
        while True:
            execution = self._call("get_query_execution", QueryExecutionId=query_id)
            status = execution["QueryExecution"]["Status"]
            state = status["State"]
            if state == "SUCCEEDED":
                return status
            if state in DONE_STATES:
                reason = status.get("StateChangeReason") or "no reason given"
                raise QueryFailed("Athena query", state, f"{query_id}: {reason}")
            if time.monotonic() >= deadline:
                self._call("stop_query_execution", QueryExecutionId=query_id)
                raise QueryFailed(
                    "Athena query", "Timeout", f"{query_id} still {state} after {self.timeout_s} s"
                )
            self.sleep(pause)
            pause = min(pause * 2, 5.0)

    def rows(self, sql: str, params: Sequence[str | int | float] = ()) -> list[dict[str, Any]]:
        """Every row of the query's result, as {column: string or None}."""
        query_id = self.start(sql, params)
        self.wait(query_id)
        out: list[dict[str, Any]] = []
        columns: list[str] | None = None
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"QueryExecutionId": query_id, "MaxResults": 1000}
            if token:
                kwargs["NextToken"] = token
            page = self._call("get_query_results", **kwargs)
            result = page["ResultSet"]
            values = [
                [d.get("VarCharValue") for d in row.get("Data", ())] for row in result["Rows"]
            ]
            if columns is None:
                columns = [c["Name"] for c in result["ResultSetMetadata"]["ColumnInfo"]]
                if values and values[0] == columns:  # a SELECT's first row is its header
                    values = values[1:]
            out.extend(dict(zip(columns, v, strict=False)) for v in values)
            token = page.get("NextToken")
            if not token:
                return out
