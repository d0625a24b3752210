"""The Report Lambda against moto's S3 and Athena, with the query results queued."""

from __future__ import annotations

import io
from collections.abc import Iterator

import boto3
import pandas as pd
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from carrental.report import REPORTS, load_sql
from carrental.report_html import REPORT_PAGE, render_report
from tests.aws.report_data import (
    RUN_ID,
    athena_ends_query,
    placeholder_count,
    queue_athena_results,
    report_results,
)
from tests.aws.sync_stand_in import athena_applies_the_workgroup_output_location

# The write-failure test abandons an awswrangler S3 writer, which repeats the refusal when it is
# garbage-collected, whenever that happens; it says nothing about the code under test.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Exception ignored in. <function _S3ObjectBase.__del__"
    ":pytest.PytestUnraisableExceptionWarning"
)

LAKE = "carrental-lake"
ARTIFACTS = "carrental-artifacts"
WORKGROUP = "carrental-analytics"
DATABASE = "car_rental_db"


@pytest.fixture
def athena(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("GLUE_DATABASE", DATABASE)
    monkeypatch.setenv("ATHENA_WORKGROUP", WORKGROUP)
    athena_applies_the_workgroup_output_location(monkeypatch)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=LAKE)
        s3.create_bucket(Bucket=ARTIFACTS)
        client = boto3.client("athena")
        client.create_work_group(
            Name=WORKGROUP,
            Configuration={
                "EnforceWorkGroupConfiguration": True,
                "ResultConfiguration": {"OutputLocation": f"s3://{ARTIFACTS}/athena-results/"},
            },
        )
        yield client


def start_summary_query(athena) -> str:
    """What the workflow's RunSummaryQuery state does before it invokes the Report function."""
    sql = load_sql(REPORTS["summary.csv"])
    return athena.start_query_execution(
        QueryString=sql,
        WorkGroup=WORKGROUP,
        QueryExecutionContext={"Database": DATABASE},
        ExecutionParameters=[f"'{RUN_ID}'"] * placeholder_count(sql),
    )["QueryExecutionId"]


def test_report_writes_every_csv_of_the_run(athena, report_app, report_context) -> None:
    expected = report_results()
    queue_athena_results(list(expected.values()))  # summary first: it starts first
    summary_id = start_summary_query(athena)

    result = report_app.lambda_handler(
        {"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id},
        report_context,
    )

    assert result == {
        "bucket": LAKE,
        "keys": [f"reports/{RUN_ID}/{name}" for name in [*REPORTS, REPORT_PAGE]],
    }
    s3 = boto3.client("s3")
    for name, result_set in expected.items():
        body = s3.get_object(Bucket=LAKE, Key=f"reports/{RUN_ID}/{name}")["Body"].read()
        assert body.decode() == result_set.expected_csv, name
    # the page of those CSVs, served as a web page (it opens in a browser from the console)
    page = s3.get_object(Bucket=LAKE, Key=f"reports/{RUN_ID}/{REPORT_PAGE}")
    assert page["ContentType"] == "text/html; charset=utf-8"
    csvs = {
        name: pd.read_csv(io.StringIO(result_set.expected_csv), dtype=str, keep_default_na=False)
        for name, result_set in expected.items()
    }
    assert page["Body"].read().decode() == render_report(csvs, RUN_ID)


def test_report_queries_run_in_the_workgroup_with_the_run_id_quoted(
    athena, report_app, report_context
) -> None:
    queue_athena_results(list(report_results().values()))
    summary_id = start_summary_query(athena)

    report_app.lambda_handler(
        {"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id},
        report_context,
    )

    started = {}
    for query_id in athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        started[execution["Query"]] = execution
    for name, sql_file in REPORTS.items():
        sql = load_sql(sql_file)
        assert sql in started, f"{name}: {sql_file} was not run"
        execution = started[sql]
        assert execution["ExecutionParameters"] == [f"'{RUN_ID}'"] * placeholder_count(sql)
        assert execution["QueryExecutionContext"]["Database"] == DATABASE
        assert execution["WorkGroup"] == WORKGROUP
    assert len(started) == len(REPORTS)


def _report_keys() -> list[str]:
    listing = boto3.client("s3").list_objects_v2(Bucket=LAKE, Prefix="reports/")
    return [o["Key"] for o in listing.get("Contents", [])]


@pytest.mark.parametrize("status", ["FAILED", "CANCELLED"])
def test_a_query_that_does_not_succeed_midway_writes_no_report(
    athena, report_app, report_context, monkeypatch, status
) -> None:
    reports = list(REPORTS)
    failing = reports[2]  # two reports before it have results that could have been written
    athena_ends_query(monkeypatch, REPORTS[failing], status)
    queue_athena_results(list(report_results().values()))
    summary_id = start_summary_query(athena)

    with pytest.raises(report_app.ReportQueryFailed, match=failing) as raised:
        report_app.lambda_handler(
            {"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id},
            report_context,
        )

    assert "no report file was written" in str(raised.value)
    assert _report_keys() == []
    states = {}
    for query_id in athena.list_query_executions(WorkGroup=WORKGROUP)["QueryExecutionIds"]:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        states[execution["Query"]] = execution["Status"]["State"]
    for name in reports[3:]:  # started, not read yet: stopped rather than left running
        assert states[load_sql(REPORTS[name])] == "CANCELLED", name


def test_a_write_that_fails_midway_leaves_no_report_files(
    athena, report_app, report_context
) -> None:
    queue_athena_results(list(report_results().values()))
    summary_id = start_summary_query(athena)
    failing = list(REPORTS)[3]

    def s3_refuses(params, **_):
        if params["Key"].endswith(failing):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce"}}, "PutObject")

    boto3.setup_default_session()  # awswrangler's clients come from the default session
    boto3.DEFAULT_SESSION.events.register("before-parameter-build.s3.PutObject", s3_refuses)
    error = None
    try:
        report_app.lambda_handler(
            {"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id},
            report_context,
        )
    except ClientError as exc:
        error = exc.response["Error"]["Code"]
    finally:
        boto3.DEFAULT_SESSION = None
    assert error == "SlowDown"
    assert _report_keys() == []


def test_an_incomplete_event_is_refused_by_name(report_app, report_context) -> None:
    with pytest.raises(ValueError, match="summary_query_execution_id"):
        report_app.lambda_handler({"run_id": RUN_ID, "bucket": LAKE}, report_context)


def test_an_unsafe_run_id_is_refused(report_app) -> None:
    with pytest.raises(ValueError, match="invalid run id"):
        report_app.write_report(
            "run'; DROP TABLE x", LAKE, "q-1", database=DATABASE, workgroup=WORKGROUP
        )


def test_string_parameters_are_sql_literals(report_app) -> None:
    assert report_app.athena_parameters("SELECT 1 WHERE a = ? AND b = ?", "r-1") == [
        "'r-1'",
        "'r-1'",
    ]
    assert report_app.athena_parameters("SELECT ?", "it's") == ["'it''s'"]
