"""The audit SQL over archived objects, run by DuckDB as ``pushpipe query`` does."""

from __future__ import annotations

import gzip
import json

import boto3
import pytest
from moto import mock_aws

from pushpipe.pings.audit import NAMED_QUERIES, PINGS, SENDS, named_query
from pushpipe_local.cloud.athena import LocalAthena, QueryError

BUCKET = "archive"


def send(sub, variant="a", outcome="sent", campaign="spring", status=201):
    nid = f"{campaign}-{sub}"
    return {
        "ts": "2026-05-28T20:00:01Z",
        "tenant": "acme",
        "campaign": campaign,
        "variant": variant,
        "notification": nid,
        "subscriber": sub,
        "run": "r1",
        "chain": 0,
        "outcome": outcome,
        "status": status,
        "reason": None,
        "attempts": 1,
        "payload": json.dumps({"nid": nid, "title": "Hi"}),
    }


def ping(sub, type_, campaign="spring", variant="a", ts="2026-05-28T20:00:05.000Z"):
    return {
        "v": 1,
        "ts": ts,
        "seen_at": None,
        "type": type_,
        "tenant": "acme",
        "campaign": campaign,
        "variant": variant,
        "notification": f"{campaign}-{sub}",
        "subscriber": sub,
        "exp": 1_790_000_000,
    }


def lines(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


@pytest.fixture
def athena(tmp_path):
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        sends = [send(f"s{i}", variant="ab"[i % 2]) for i in range(10)]
        sends += [send("gone", outcome="pruned", status=410)]
        s3.put_object(
            Bucket=BUCKET, Key=f"{SENDS.prefix}2026/05/28/20/sends-1", Body=lines(sends[:6])
        )
        # Firehose with GZIP compression writes .gz objects: read them the same
        s3.put_object(
            Bucket=BUCKET,
            Key=f"{SENDS.prefix}2026/05/28/21/sends-2.gz",
            Body=gzip.compress(lines(sends[6:])),
        )
        failed = send("broken", campaign="autumn", outcome="failed", status=400)
        s3.put_object(
            Bucket=BUCKET, Key=f"{SENDS.prefix}2026/05/28/22/sends-3", Body=lines([failed])
        )
        pings = [ping(f"s{i}", "delivered", variant="ab"[i % 2]) for i in range(6)]
        pings += [ping("s0", "clicked"), ping("s0", "delivered")]  # a retried delivery ping
        pings += [ping("stranger", "delivered", campaign="ghost")]
        s3.put_object(Bucket=BUCKET, Key=f"{PINGS.prefix}2026/05/28/20/pings-1", Body=lines(pings))
        s3.put_object(Bucket=BUCKET, Key="unrelated/readme.txt", Body=b"not a table")
        yield LocalAthena(s3, BUCKET, tmp_path / "cache")


def test_campaign_funnel(athena):
    result = athena.run_query(named_query("campaign-funnel").sql, ["acme", "spring"])
    rows = {r[0]: dict(zip(result.columns, r, strict=True)) for r in result.rows}
    assert rows["a"]["recipients"] == 6 and rows["a"]["sent"] == 5 and rows["a"]["pruned"] == 1
    assert (rows["a"]["delivered"], rows["a"]["clicked"]) == (3, 1)
    assert (rows["b"]["sent"], rows["b"]["delivered"], rows["b"]["clicked"]) == (5, 3, 0)


def test_everything_sent_to_one_subscriber(athena):
    result = athena.run_query(named_query("subscriber-history").sql, ["acme", "s0"])
    [row] = result.rows
    got = dict(zip(result.columns, row, strict=True))
    assert got["outcome"] == "sent" and json.loads(got["payload"])["title"] == "Hi"
    assert got["delivered_at"] and got["clicked_at"]


def test_pings_with_no_matching_send(athena):
    result = athena.run_query(named_query("orphan-pings").sql, ["acme"])
    assert [(r[2], r[3], r[6]) for r in result.rows] == [("acme", "ghost", "stranger")]


def test_partitions_come_from_the_hour_path(athena):
    rows = athena.run_query("SELECT dt, count(*) FROM sends GROUP BY dt ORDER BY dt").rows
    assert rows == [("2026/05/28/20", 6), ("2026/05/28/21", 5), ("2026/05/28/22", 1)]


@pytest.mark.parametrize("query", NAMED_QUERIES, ids=lambda q: q.name)
def test_every_named_query_runs_in_duckdb_and_shows_one_tenant_only(athena, query):
    """Every named query is scoped to the tenant it is run for: the archive holds only
    acme's rows, so run for acme it finds them and run for globex it finds nothing."""
    rest = {"campaign": "spring", "subscriber": "s0"}
    params = [rest.get(p, p) for p in query.params]
    assert athena.run_query(query.sql, ["acme", *params[1:]]).rows
    assert athena.run_query(query.sql, ["globex", *params[1:]]).rows == []


def test_sync_copies_only_new_objects_and_an_empty_archive_has_empty_tables(athena, tmp_path):
    assert athena.sync() == 4  # three sends objects, one pings object
    assert athena.sync() == 0
    empty = LocalAthena(athena.s3, BUCKET, tmp_path / "other")
    athena.s3.create_bucket(Bucket="empty")
    empty.bucket = "empty"
    assert empty.run_query("SELECT count(*) FROM pings").rows == [(0,)]


def test_bad_sql_says_why(athena):
    with pytest.raises(QueryError, match="nope"):
        athena.run_query("SELECT nope FROM pings")


def test_the_cli_refuses_a_named_query_without_its_tenant(capsys):
    import argparse

    from pushpipe_local.cli.pings import cmd_query

    args = argparse.Namespace(list=False, sql=None, named="sends-by-outcome", param=None)
    assert cmd_query(args) == 2
    assert "--param TENANT" in capsys.readouterr().out
