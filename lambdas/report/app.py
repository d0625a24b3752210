"""Report Lambda: one pipeline run's report (CSVs and report.html), written to reports/<run_id>/.

Called by the state machine's WriteReport state with
`{"run_id": ..., "bucket": ..., "summary_query_execution_id": ...}` once the Athena summary query
(sql/summary_report.sql) has succeeded. It reads that query's results by execution id, runs the
other report queries of `carrental.report.REPORTS` (the sql/ files packaged beside this handler,
found through CARRENTAL_SQL_DIR), shapes every result with the formatting `carrental run` uses and
writes the same CSV files, then the same report.html (carrental.report_html). Returns
`{"bucket": ..., "keys": [...]}`: the CSVs in REPORTS order, then the page.

Needs carrental (layer), awswrangler/pandas (AWS SDK for pandas layer), Powertools (layer).
"""

from __future__ import annotations

import os

import awswrangler as wr
import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from carrental.lake import check_run_id, report_prefix
from carrental.report import REPORTS, load_sql, query_params, shape_report
from carrental.report_html import REPORT_PAGE, render_report

SUMMARY_REPORT = "summary.csv"
EVENT_FIELDS = ("run_id", "bucket", "summary_query_execution_id")

logger = Logger()
tracer = Tracer()


def athena_parameters(sql: str, run_id: str) -> list[str]:
    """Athena reads each execution parameter as a SQL literal, so a string goes quoted."""
    return ["'" + value.replace("'", "''") + "'" for value in query_params(sql, run_id)]


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
    root = f"s3://{bucket}"
    keys = []
    shaped = {}
    for report_name in REPORTS:
        frame = wr.athena.get_query_results(execution_ids[report_name], boto3_session=boto3_session)
        path = f"{report_prefix(root, run_id)}/{report_name}"
        shaped[report_name] = shape_report(report_name, frame)
        wr.s3.to_csv(shaped[report_name], path, index=False, boto3_session=boto3_session)
        keys.append(path.removeprefix(f"{root}/"))
        logger.info(
            "report written", extra={"report": report_name, "rows": len(frame), "path": path}
        )
    # S3 keeps ContentType with the object and returns it on GET, so a browser opening the
    # object (e.g. by a pre-signed URL) renders the page
    # (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html). The role's
    # WriteReports statement (s3:PutObject on reports/*) covers this key as it covers the CSVs.
    page_path = f"{report_prefix(root, run_id)}/{REPORT_PAGE}"
    page_key = page_path.removeprefix(f"{root}/")
    (boto3_session or boto3.Session()).client("s3").put_object(
        Bucket=bucket,
        Key=page_key,
        Body=render_report(shaped, run_id).encode("utf-8"),
        ContentType="text/html; charset=utf-8",
    )
    keys.append(page_key)
    logger.info("report page written", extra={"path": page_path})
    return keys


def parse_event(event: dict) -> dict[str, str]:
    missing = [field for field in EVENT_FIELDS if not event.get(field)]
    if missing:
        raise ValueError(f"report event lacks {', '.join(missing)}: {event}")
    return {field: str(event[field]) for field in EVENT_FIELDS}


@logger.inject_lambda_context(log_event=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    request = parse_event(event)
    keys = write_report(
        **request,
        database=os.environ["GLUE_DATABASE"],
        workgroup=os.environ["ATHENA_WORKGROUP"],
    )
    return {"bucket": request["bucket"], "keys": keys}
