"""Athena's query API, locally: ``StartQueryExecution``, ``GetQueryExecution``,
``GetQueryResults`` and ``StopQueryExecution``, in both wire protocols botocore has used
for Athena (AWS JSON 1.1 with ``X-Amz-Target: AmazonAthena.<Operation>``, and REST-JSON
on ``/query-executions[/{id}[/results|/stop]]``), answered from DuckDB over the local
cloud's archive (``pushpipe_local.cloud.athena.LocalAthena``).

Functions reach it through ``AWS_ENDPOINT_URL_ATHENA``, so their boto3 Athena calls
(``pushpipe.shared.athena.AthenaQueries``) are the ones a deployed stack makes. moto's
Athena returns canned results only; this one runs the SQL.

A query runs when it is started (the local archive is small) and its outcome is kept
for the next calls, as Athena keeps it: ``SUCCEEDED`` with the rows, or ``FAILED``
with DuckDB's message as the ``StateChangeReason``.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from pushpipe_local.cloud.athena import LocalAthena, QueryError
from pushpipe_local.runtime.http_base import QuietHandler

TARGET_PREFIX = "AmazonAthena."
PAGE_MAX = 1000
KEEP_QUERIES = 200


def parameter(text: str) -> Any:
    """An ``ExecutionParameters`` entry (a SQL literal) as the value DuckDB binds."""
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1].replace("''", "'")
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError as exc:
        raise ValueError(f"parameter {text!r} is neither a quoted string nor a number") from exc


class InvalidRequest(Exception):
    pass


@dataclass
class Execution:
    id: str
    sql: str
    workgroup: str
    submitted: float
    state: str = "RUNNING"
    reason: str | None = None
    completed: float | None = None
    columns: list[str] = field(default_factory=list)
    rows: list[list[str | None]] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        status: dict[str, Any] = {"State": self.state, "SubmissionDateTime": self.submitted}
        if self.completed is not None:
            status["CompletionDateTime"] = self.completed
        if self.reason:
            status["StateChangeReason"] = self.reason
        return {
            "QueryExecution": {
                "QueryExecutionId": self.id,
                "Query": self.sql,
                "StatementType": "DML",
                "WorkGroup": self.workgroup,
                "Status": status,
            }
        }


def _cell(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class LocalAthenaApi:
    """The operations, over one ``LocalAthena``; thread-safe."""

    def __init__(self, athena: LocalAthena) -> None:
        self.athena = athena
        self._lock = threading.Lock()
        self._executions: OrderedDict[str, Execution] = OrderedDict()

    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        handler = getattr(self, f"_op_{operation}", None)
        if handler is None:
            raise InvalidRequest(f"operation {operation} is not served by the local Athena")
        return handler(body)

    def _execution(self, body: dict[str, Any]) -> Execution:
        query_id = body.get("QueryExecutionId")
        with self._lock:
            execution = self._executions.get(str(query_id))
        if execution is None:
            raise InvalidRequest(f"QueryExecution {query_id} was not found")
        return execution

    def _op_StartQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        sql = body.get("QueryString")
        if not isinstance(sql, str) or not sql.strip():
            raise InvalidRequest("QueryString is required")
        try:
            params = [parameter(str(p)) for p in body.get("ExecutionParameters") or ()]
        except ValueError as exc:
            raise InvalidRequest(str(exc)) from exc
        execution = Execution(
            str(uuid.uuid4()), sql, str(body.get("WorkGroup") or "primary"), time.time()
        )
        with self._lock:
            self._executions[execution.id] = execution
            while len(self._executions) > KEEP_QUERIES:
                self._executions.popitem(last=False)
        try:
            result = self.athena.run_query(sql, params)
            execution.columns = result.columns
            execution.rows = [[_cell(v) for v in row] for row in result.rows]
            execution.state = "SUCCEEDED"
        except QueryError as exc:
            execution.state, execution.reason = "FAILED", str(exc)
        execution.completed = time.time()
        return {"QueryExecutionId": execution.id}

    def _op_GetQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._execution(body).describe()

    def _op_StopQueryExecution(self, body: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(body)
        if execution.state == "RUNNING":
            execution.state = "CANCELLED"
        return {}

    def _op_GetQueryResults(self, body: dict[str, Any]) -> dict[str, Any]:
        execution = self._execution(body)
        if execution.state != "SUCCEEDED":
            raise InvalidRequest(f"Query has not yet finished. Current state: {execution.state}")
        size = min(int(body.get("MaxResults") or PAGE_MAX), PAGE_MAX)
        # Row 0 is the header row, as Athena returns it for a SELECT.
        table = [list(execution.columns), *execution.rows]
        start = int(body.get("NextToken") or 0)
        page = table[start : start + size]
        out: dict[str, Any] = {
            "ResultSet": {
                "Rows": [
                    {"Data": [{} if v is None else {"VarCharValue": v} for v in row]}
                    for row in page
                ],
                "ResultSetMetadata": {
                    "ColumnInfo": [{"Name": c, "Type": "varchar"} for c in execution.columns]
                },
            },
            "UpdateCount": 0,
        }
        if start + size < len(table):
            out["NextToken"] = str(start + size)
        return out


_REST = re.compile(r"^/query-executions(?:/(?P<id>[^/]+)(?P<tail>/results|/stop)?)?/?$")
_REST_OPS = {
    ("POST", None, None): "StartQueryExecution",
    ("GET", True, None): "GetQueryExecution",
    ("GET", True, "/results"): "GetQueryResults",
    ("POST", True, "/stop"): "StopQueryExecution",
}


def rest_operation(method: str, target: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The operation and its input of a REST-JSON Athena call (path and query carry the
    execution id and the paging parameters)."""
    url = urlsplit(target)
    match = _REST.match(url.path)
    if match is None:
        raise InvalidRequest(f"not an Athena call ({method} {url.path})")
    key = (method, True if match["id"] else None, match["tail"])
    operation = _REST_OPS.get(key)
    if operation is None:
        raise InvalidRequest(f"not an Athena call ({method} {url.path})")
    params = dict(body)
    if match["id"]:
        params["QueryExecutionId"] = match["id"]
    for name, values in parse_qs(url.query).items():
        params[name] = int(values[0]) if name == "MaxResults" else values[0]
    return operation, params


def athena_api_handler(api: LocalAthenaApi) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def _answer(self, method: str) -> None:
            target = self.headers.get("X-Amz-Target", "")
            rest = not target
            headers = {"Content-Type": "application/json" if rest else "application/x-amz-json-1.1"}
            try:
                body = json.loads(self._body() or b"{}")
                if not isinstance(body, dict):
                    raise InvalidRequest("the request body must be a JSON object")
                if rest:
                    operation, body = rest_operation(method, self.path, body)
                elif method != "POST" or not target.startswith(TARGET_PREFIX):
                    raise InvalidRequest(f"not an Athena call (X-Amz-Target {target!r})")
                else:
                    operation = target[len(TARGET_PREFIX) :]
                answer = api.call(operation, body)
            except (InvalidRequest, ValueError) as exc:
                error = {"__type": "InvalidRequestException", "Message": str(exc)}
                if rest:
                    headers["x-amzn-ErrorType"] = "InvalidRequestException"
                    error = {"message": str(exc)}
                return self._raw(400, json.dumps(error).encode(), headers)
            self._raw(200, json.dumps(answer).encode(), headers)

        def do_POST(self) -> None:
            self._answer("POST")

        def do_GET(self) -> None:
            self._answer("GET")

    return Handler
