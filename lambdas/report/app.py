"""Report Lambda: one pipeline run's report (CSVs and report.html), written to reports/<run_id>/.

Called by the state machine's WriteReport state with
`{"run_id": ..., "bucket": ..., "summary_query_execution_id": ...}` once the Athena summary query
(carrental/sql/summary_report.sql) has succeeded. It reads that query's results by execution id,
runs the other report queries of `carrental.report.REPORTS` (carrental/sql/, package data of the
carrental layer), shapes every result with the formatting `carrental run` uses and writes the
same CSV files, then the same report.html (carrental.report_html). Returns
`{"bucket": ..., "keys": [...]}`: the CSVs in REPORTS order, then the page.

A report is all of its files or none of this invocation's: every result is read before the
first file is written, so a failed or cancelled query (ReportQueryFailed, naming the report and
Athena's reason) writes nothing and stops the report queries still running; a write that fails
midway deletes the files this invocation already wrote. The error reaches the workflow's Catch,
which alerts and fails the run.

Needs carrental (layer), awswrangler/pandas (AWS SDK for pandas layer), Powertools (layer).
Every log line carries the run id as the correlation id; the function counts the reports it
writes (ReportsWritten) in the stack's metrics namespace.
"""

from __future__ import annotations

import os

import awswrangler as wr
import boto3
import pandas as pd
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from carrental.lake import check_run_id, report_prefix
from carrental.report import REPORTS, load_sql, query_params, shape_report
from carrental.report_html import REPORT_PAGE, render_report

SUMMARY_REPORT = "summary.csv"
EVENT_FIELDS = ("run_id", "bucket", "summary_query_execution_id")

logger = Logger()
tracer = Tracer()
metrics = Metrics()


def athena_parameters(sql: str, run_id: str) -> list[str]:
    """Athena reads each execution parameter as a SQL literal, so a string goes quoted."""
    return ["'" + value.replace("'", "''") + "'" for value in query_params(sql, run_id)]


class ReportQueryFailed(RuntimeError):
    """A report query ended FAILED or CANCELLED; no file of the report was written."""


@tracer.capture_method
def write_report(
    run_id: str,
    bucket: str,
    summary_query_execution_id: str,
    *,
    database: str,
    workgroup: str,
    boto3_session: boto3.Session | None = None,
) -> list[str]:
    """Write every report of REPORTS for one run, then its page; return the S3 keys."""
    check_run_id(run_id)
    # Start all report queries first: Athena runs them side by side while we wait on the first.
    execution_ids = {SUMMARY_REPORT: summary_query_execution_id}
    for report_name, sql_file in REPORTS.items():
        if report_name == SUMMARY_REPORT:
            continue
        sql = load_sql(sql_file)
        execution_ids[report_name] = wr.athena.start_query_execution(
            sql=sql,
            database=database,
            workgroup=workgroup,
            params=athena_parameters(sql, run_id),
            paramstyle="qmark",
            boto3_session=boto3_session,
        )
    frames = read_results(execution_ids, boto3_session)
    root = f"s3://{bucket}"
    shaped = {name: shape_report(name, frames[name]) for name in REPORTS}
    paths = [f"{report_prefix(root, run_id)}/{report_name}" for report_name in REPORTS]
    page_path = f"{report_prefix(root, run_id)}/{REPORT_PAGE}"
    written: list[str] = []
    try:
        for report_name, path in zip(REPORTS, paths, strict=True):
            wr.s3.to_csv(shaped[report_name], path, index=False, boto3_session=boto3_session)
            written.append(path)
            logger.info(
                "report written",
                extra={"report": report_name, "rows": len(frames[report_name]), "path": path},
            )
        # S3 keeps ContentType with the object and returns it on GET, so a browser opening the
        # object (e.g. by a pre-signed URL) renders the page
        # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html). The role's
        # WriteReports statement (s3:PutObject on reports/*) covers this key as it covers the
        # CSVs.
        (boto3_session or boto3.Session()).client("s3").put_object(
            Bucket=bucket,
            Key=page_path.removeprefix(f"{root}/"),
            Body=render_report(shaped, run_id).encode("utf-8"),
            ContentType="text/html; charset=utf-8",
        )
        written.append(page_path)
        logger.info("report page written", extra={"path": page_path})
    except BaseException:
        if written:  # a report missing files must not look like a smaller complete one
            wr.s3.delete_objects(written, boto3_session=boto3_session)
        raise
    return [path.removeprefix(f"{root}/") for path in [*paths, page_path]]


# The reports' frames stay out of the trace:
# https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/#disabling-response-auto-capture
@tracer.capture_method(capture_response=False)
def read_results(
    execution_ids: dict[str, str], boto3_session: boto3.Session | None
) -> dict[str, pd.DataFrame]:
    """Every report's result, or ReportQueryFailed after stopping the queries not read yet."""
    frames = {}
    for report_name, execution_id in execution_ids.items():
        try:
            frames[report_name] = wr.athena.get_query_results(
                execution_id, boto3_session=boto3_session
            )
        except (wr.exceptions.QueryFailed, wr.exceptions.QueryCancelled) as exc:
            for pending in list(execution_ids.values())[len(frames) + 1 :]:
                wr.athena.stop_query_execution(pending, boto3_session=boto3_session)
            raise ReportQueryFailed(
                f"report query for {report_name} (execution {execution_id}) did not succeed: "
                f"{exc}; no report file was written"
            ) from exc
    return frames


def parse_event(event: dict) -> dict[str, str]:
    missing = [field for field in EVENT_FIELDS if not event.get(field)]
    if missing:
        raise ValueError(f"report event lacks {', '.join(missing)}: {event}")
    return {field: str(event[field]) for field in EVENT_FIELDS}


@logger.inject_lambda_context(log_event=True, clear_state=True, correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = parse_event(event)
    keys = write_report(
        **request,
        database=os.environ["GLUE_DATABASE"],
        workgroup=os.environ["ATHENA_WORKGROUP"],
    )
    metrics.add_metric(name="ReportsWritten", unit=MetricUnit.Count, value=1)
    return {"bucket": request["bucket"], "keys": keys}
