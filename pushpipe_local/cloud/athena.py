"""Athena, locally: the audit SQL run by DuckDB over the objects Firehose archived.

The tables and their columns come from ``pushpipe.pings.audit`` (the same declaration
the CDK stack turns into Glue tables). Objects are copied from the archive bucket of the
local cloud into a cache folder (only new ones; gzip is undone as Firehose's GZIP
objects need), and each table becomes a DuckDB view with the partition column ``dt``
taken from the hour path, as Athena's partition projection does.

DuckDB's ``httpfs`` extension would download itself from the internet; copying the
objects keeps this offline.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from pushpipe.pings.audit import PARTITION, TABLES, AuditTable

DUCK_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
}
_HOUR = re.compile(r"(\d{4}/\d{2}/\d{2}/\d{2})/")


class QueryError(Exception):
    """The SQL could not run; carries DuckDB's message."""


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple]


class LocalAthena:
    def __init__(self, s3_client: Any, bucket: str, cache_dir: Path | str | None = None) -> None:
        self.s3 = s3_client
        self.bucket = bucket
        self.cache = Path(cache_dir or tempfile.mkdtemp(prefix="pushpipe-athena-"))
        self.cache.mkdir(parents=True, exist_ok=True)

    # --- copying the archive ------------------------------------------------------------
    def sync(self) -> int:
        """Copy archived objects not copied yet. Returns how many were new."""
        new = 0
        paginator = self.s3.get_paginator("list_objects_v2")
        for table in TABLES:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=table.prefix):
                for obj in page.get("Contents", ()):
                    key = obj["Key"]
                    hour = _HOUR.search(key[len(table.prefix) :] + "/")
                    if not hour:
                        continue
                    tag = hashlib.sha1(f"{key}{obj.get('ETag')}".encode()).hexdigest()[:16]
                    dest = self.cache / table.name / hour.group(1) / f"{tag}.json"
                    if dest.exists():
                        continue
                    body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
                    if body[:2] == b"\x1f\x8b":
                        body = gzip.decompress(body)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    tmp = dest.with_suffix(".tmp")
                    tmp.write_bytes(body)
                    tmp.rename(dest)
                    new += 1
        return new

    # --- querying -----------------------------------------------------------------------
    def connect(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(":memory:")
        for table in TABLES:
            con.execute(self._view_sql(table))
        return con

    def _view_sql(self, table: AuditTable) -> str:
        cols = ", ".join(f"{name}: '{DUCK_TYPES[type_]}'" for name, type_ in table.columns)
        names = ", ".join(name for name, _ in table.columns)
        files = sorted((self.cache / table.name).glob("*/*/*/*/*.json"))
        if not files:
            empty = ", ".join(
                f"CAST(NULL AS {DUCK_TYPES[type_]}) AS {name}" for name, type_ in table.columns
            )
            return (
                f"CREATE VIEW {table.name} AS SELECT {empty}, CAST(NULL AS VARCHAR) AS {PARTITION}"
                " WHERE false"
            )
        pattern = str(self.cache / table.name / "*" / "*" / "*" / "*" / "*.json")
        return (
            f"CREATE VIEW {table.name} AS SELECT {names}, "
            f"regexp_extract(filename, '(\\d{{4}}/\\d{{2}}/\\d{{2}}/\\d{{2}})/[^/]*$', 1) "
            f"AS {PARTITION} FROM read_json('{pattern}', format='newline_delimited', "
            f"columns={{{cols}}}, filename=true, ignore_errors=true)"
        )

    def run_query(self, sql: str, params: Sequence[Any] | None = None) -> QueryResult:
        """Sync the archive, then run ``sql`` (``?`` parameters) over ``sends`` and ``pings``."""
        self.sync()
        con = self.connect()
        try:
            cur = con.execute(sql, list(params) if params else None)
            columns = [d[0] for d in cur.description or ()]
            return QueryResult(columns, cur.fetchall())
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from exc
        finally:
            con.close()

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """``run_query`` as {column: value} rows (``ArchiveQueries`` of the engagement job)."""
        result = self.run_query(sql, params)
        return [dict(zip(result.columns, row, strict=True)) for row in result.rows]
