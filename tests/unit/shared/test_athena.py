"""The Athena adapter against the local cloud's Athena API (DuckDB behind Athena's wire
protocol): parameters, paging, failures and the time limit."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from pushpipe.shared.athena import AthenaQueries, QueryFailed, literal
from pushpipe_local.cloud.athena import LocalAthena
from pushpipe_local.cloud.athena_api import LocalAthenaApi, athena_api_handler
from pushpipe_local.runtime.http_base import serve

REGION = "us-east-1"


@pytest.fixture
def athena(tmp_path):
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="archive")
        server = serve(athena_api_handler(LocalAthenaApi(LocalAthena(s3, "archive", tmp_path))),
                       "127.0.0.1", 0)  # fmt: skip
        client = boto3.client(
            "athena",
            region_name=REGION,
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        yield AthenaQueries("wg", "db", client=client, sleep=lambda s: None)
        server.shutdown()
        server.server_close()


def test_parameters_are_literals_and_rows_come_back_as_strings(athena):
    rows = athena.rows("SELECT ? AS s, ? AS n, NULL AS nothing", ["it's; DROP TABLE x", 5])
    assert rows == [{"s": "it's; DROP TABLE x", "n": "5", "nothing": None}]
    assert literal("a'b") == "'a''b'" and literal(3) == "3"
    with pytest.raises(TypeError):
        literal(True)


def test_every_page_of_a_large_result_is_read(athena):
    rows = athena.rows("SELECT range AS n FROM range(2500) ORDER BY n")
    assert [int(r["n"]) for r in rows] == list(range(2500))


def test_the_archive_tables_exist_even_before_anything_was_archived(athena):
    assert athena.rows("SELECT count(*) AS n FROM sends") == [{"n": "0"}]


def test_a_failing_query_raises_with_the_engine_s_reason(athena):
    with pytest.raises(QueryFailed, match=r"FAILED.*no_such_table"):
        athena.rows("SELECT * FROM no_such_table")


def test_a_query_that_runs_too_long_is_stopped_and_reported():
    client = boto3.client("athena", region_name=REGION, aws_access_key_id="x",
                          aws_secret_access_key="x")  # fmt: skip
    running = {"QueryExecution": {"QueryExecutionId": "q1", "Status": {"State": "RUNNING"}}}
    with Stubber(client) as stub:
        stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
        stub.add_response("get_query_execution", running, {"QueryExecutionId": "q1"})
        stub.add_response("stop_query_execution", {}, {"QueryExecutionId": "q1"})
        queries = AthenaQueries("wg", "db", client=client, timeout_s=0.0)
        with pytest.raises(QueryFailed, match=r"Timeout.*still RUNNING"):
            queries.rows("SELECT 1")
        stub.assert_no_pending_responses()
