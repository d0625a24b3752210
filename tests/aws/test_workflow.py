"""The state machine of template.yaml executed by moto, end to end, on each path that matters.

The moto resources are created from the template's own properties (bucket, crawlers, workgroup,
EMR application, database), so botocore checks that those properties are valid API input. The
definition is the deployed one with the template's substitutions; only the `.sync` tasks and the
Report invocation are answered by the stand-in of tests/aws/sync_stand_in.py (see there why).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from carrental.contracts import DATASETS
from carrental.deploy import ARCHIVE_NAME, JOBS_PREFIX, job_names
from carrental.report import REPORTS, load_sql
from carrental.report_html import REPORT_PAGE
from carrental.spark.entrypoint import build_parser
from tests.aws.conftest import REGION
from tests.aws.report_data import (
    RUN_ID,
    athena_ends_query,
    placeholder_count,
    queue_athena_results,
    report_results,
)
from tests.aws.sync_stand_in import (
    CRAWLER_POLL_SECONDS,
    StandIn,
    athena_applies_the_workgroup_output_location,
    aws_sdk_errors_named_as_step_functions_does,
    correct_moto_crawl_status,
    each_attempt_gets_its_task_token,
    emr_application_for_moto,
    rewrite_for_moto,
    task_failures_keep_their_cause,
)
from tests.aws.template import (
    definition_substitutions,
    iter_states,
    load_template,
    parameter_defaults,
    render_definition,
    resolve,
)

ACCOUNT = "123456789012"
STACK = "carrental-test"
JOB_STATE = {
    "vehicle_location_performance": "RunVehicleLocationPerformanceJob",
    "user_transaction_analysis": "RunUserTransactionAnalysisJob",
}


@dataclass
class Pipeline:
    names: dict[str, Any]
    state_machine_arn: str
    tasks_queue: str
    alerts_queue: str
    report_handler: Callable[[dict], dict]

    @property
    def lake(self) -> str:
        return self.names["DataLakeBucket"]

    def crawler(self, logical_id: str) -> str:
        return self.names[logical_id]

    def execute(
        self,
        failures: dict[str, Any] | None = None,
        on_tick: Callable[[], None] = lambda: None,
        before_success: Callable[[str], None] = lambda state: None,
    ) -> tuple[dict[str, Any], StandIn]:
        batch = {
            "run_id": RUN_ID,
            "bucket": self.lake,
            "inputs": {dataset: f"raw/{dataset}/{dataset}.csv" for dataset in DATASETS},
            "etags": {dataset: f'"etag-{dataset}"' for dataset in DATASETS},
        }
        execution_arn = boto3.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn, name=RUN_ID, input=json.dumps(batch)
        )["executionArn"]
        stand_in = StandIn(
            self.tasks_queue, self.report_handler, failures or {}, on_tick, before_success
        )
        return stand_in.run(execution_arn), stand_in

    def alerts(self) -> list[str]:
        messages = boto3.client("sqs").receive_message(
            QueueUrl=self.alerts_queue, MaxNumberOfMessages=10
        )
        return [json.loads(m["Body"])["Message"] for m in messages.get("Messages", [])]

    def report_objects(self) -> list[str]:
        listing = boto3.client("s3").list_objects_v2(Bucket=self.lake, Prefix="reports/")
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def athena_queries(self) -> list[str]:
        workgroup = self.names["AthenaWorkGroup"]
        return boto3.client("athena").list_query_executions(WorkGroup=workgroup)[
            "QueryExecutionIds"
        ]

    def entered(self, execution_arn: str, state: str) -> int:
        """How many times the execution entered `state`."""
        events = boto3.client("stepfunctions").get_execution_history(executionArn=execution_arn)
        return sum(
            1
            for event in events["events"]
            if event.get("stateEnteredEventDetails", {}).get("name") == state
        )

    def last_crawl(self, logical_id: str) -> dict[str, Any] | None:
        crawler = boto3.client("glue").get_crawler(Name=self.crawler(logical_id))["Crawler"]
        return crawler.get("LastCrawl")


def _create_stack(template: dict[str, Any], report_handler: Callable[[dict], dict]) -> Pipeline:
    """The stack's resources in moto, from the template's properties."""
    resources = template["Resources"]
    names: dict[str, Any] = {
        **parameter_defaults(template),
        "CrawlerPollSeconds": CRAWLER_POLL_SECONDS,
        "AWS::StackName": STACK,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "Condition:HasPreInitializedCapacity": False,
        "DataLakeBucket": f"{STACK}-data-lake",
        "ArtifactsBucket": f"{STACK}-artifacts",
        "PipelineKey.Arn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/test",
        "CrawlerRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/{STACK}-crawler",
        "SparkJobRole.Arn": f"arn:aws:iam::{ACCOUNT}:role/{STACK}-spark-job",
        "ReportFunction.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-report",
    }
    props = {
        logical_id: resource.get("Properties", {}) for logical_id, resource in resources.items()
    }

    s3 = boto3.client("s3")
    for bucket in ("DataLakeBucket", "ArtifactsBucket"):
        s3.create_bucket(Bucket=names[bucket])

    glue = boto3.client("glue")
    database = resolve(props["GlueDatabase"]["DatabaseInput"], names)
    glue.create_database(DatabaseInput=database)
    names["GlueDatabase"] = database["Name"]
    security = resolve(props["CrawlerSecurityConfiguration"], names)
    encryption = security["EncryptionConfiguration"]
    encryption["S3Encryption"] = encryption.pop("S3Encryptions")  # CloudFormation's name for it
    glue.create_security_configuration(**security)
    names["CrawlerSecurityConfiguration"] = security["Name"]
    for crawler in ("VehicleLocationPerformanceCrawler", "UserTransactionAnalysisCrawler"):
        spec = resolve(props[crawler], names)
        glue.create_crawler(**spec)
        names[crawler] = spec["Name"]

    workgroup = resolve(props["AthenaWorkGroup"], names)
    boto3.client("athena").create_work_group(
        Name=workgroup["Name"],
        Description=workgroup["Description"],
        Configuration=workgroup["WorkGroupConfiguration"],
    )
    names["AthenaWorkGroup"] = workgroup["Name"]

    application = emr_application_for_moto(resolve(props["SparkApplication"], names))
    names["SparkApplication"] = boto3.client("emr-serverless").create_application(**application)[
        "applicationId"
    ]
    names["EmrLogGroup"] = resolve(props["EmrLogGroup"]["LogGroupName"], names)

    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    names["AlertTopic"] = sns.create_topic(Name=f"{STACK}-alerts")["TopicArn"]
    alerts_queue = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts_queue, AttributeNames=["QueueArn"])
    sns.subscribe(
        TopicArn=names["AlertTopic"],
        Protocol="sqs",
        Endpoint=alerts_arn["Attributes"]["QueueArn"],
    )
    tasks_queue = sqs.create_queue(QueueName="stand-in-tasks")["QueueUrl"]

    substitutions = resolve(definition_substitutions(template), names)
    definition = rewrite_for_moto(render_definition(substitutions), tasks_queue)
    state_machine_arn = boto3.client("stepfunctions").create_state_machine(
        name=resolve(props["CarRentalPipeline"]["Name"], names),
        definition=json.dumps(definition),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/{STACK}-state-machine",
    )["stateMachineArn"]
    return Pipeline(names, state_machine_arn, tasks_queue, alerts_queue, report_handler)


@pytest.fixture
def pipeline(monkeypatch, report_app, lambda_context) -> Iterator[Pipeline]:
    correct_moto_crawl_status(monkeypatch)
    athena_applies_the_workgroup_output_location(monkeypatch)
    aws_sdk_errors_named_as_step_functions_does(monkeypatch)
    task_failures_keep_their_cause(monkeypatch)
    each_attempt_gets_its_task_token(monkeypatch)
    template = load_template()
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        # A crawl lasts two seconds and the workflow polls every second: the loop turns.
        state_manager.set_transition(
            model_name="glue::crawl", transition={"progression": "time", "seconds": 2}
        )
        try:
            stack = _create_stack(
                template, lambda payload: report_app.lambda_handler(payload, lambda_context)
            )
            report_environment = template["Resources"]["ReportFunction"]["Properties"][
                "Environment"
            ]["Variables"]
            for name in ("GLUE_DATABASE", "ATHENA_WORKGROUP"):
                monkeypatch.setenv(name, resolve(report_environment[name], stack.names))
            yield stack
        finally:
            state_manager.unset_transition("glue::crawl")


def test_a_batch_becomes_tables_and_a_report(pipeline: Pipeline) -> None:
    expected_reports = report_results()
    queue_athena_results(list(expected_reports.values()))  # the summary query starts first

    execution, stand_in = pipeline.execute()

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    keys = [f"reports/{RUN_ID}/{name}" for name in [*REPORTS, REPORT_PAGE]]
    assert json.loads(execution["output"])["report"] == {"bucket": pipeline.lake, "keys": keys}
    assert pipeline.report_objects() == sorted(keys)
    body = boto3.client("s3").get_object(Bucket=pipeline.lake, Key=keys[0])["Body"].read()
    assert body.decode() == expected_reports["summary.csv"].expected_csv
    assert pipeline.alerts() == []
    for crawler in ("VehicleLocationPerformanceCrawler", "UserTransactionAnalysisCrawler"):
        assert pipeline.last_crawl(crawler)["Status"] == "SUCCEEDED"
        polls = pipeline.entered(execution["executionArn"], f"Get{crawler}")
        assert polls >= 2, f"{crawler}: the wait-and-poll loop never turned"
    athena = boto3.client("athena")
    (summary_id,) = [
        query_id
        for query_id in pipeline.athena_queries()
        if athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Query"]
        == load_sql(REPORTS["summary.csv"])
    ]
    assert stand_in.calls["WriteReport"] == [
        {
            "FunctionName": pipeline.names["ReportFunction.Arn"],
            "Payload": {
                "run_id": RUN_ID,
                "bucket": pipeline.lake,
                "summary_query_execution_id": summary_id,
            },
        }
    ]


def test_spark_jobs_get_the_batch_and_the_shipped_code(pipeline: Pipeline) -> None:
    queue_athena_results(list(report_results().values()))
    execution, stand_in = pipeline.execute()
    assert execution["status"] == "SUCCEEDED", execution.get("cause")

    artifacts = pipeline.names["ArtifactsBucket"]
    assert sorted(JOB_STATE) == job_names()
    for job, state in JOB_STATE.items():
        (params,) = stand_in.calls[state]
        submit = params["JobDriver"]["SparkSubmit"]
        assert submit["EntryPoint"] == f"s3://{artifacts}/{JOBS_PREFIX}{job}.py"
        assert (
            f"--py-files s3://{artifacts}/{JOBS_PREFIX}{ARCHIVE_NAME}"
            in (submit["SparkSubmitParameters"])
        )
        args = build_parser(job).parse_args(submit["EntryPointArguments"])
        assert args.vehicles == f"s3://{pipeline.lake}/raw/vehicles/vehicles.csv"
        assert args.rentals == (
            f"s3://{pipeline.lake}/raw/rental_transactions/rental_transactions.csv"
        )
        assert args.output == f"s3://{pipeline.lake}/processed"
        assert args.run_id == RUN_ID
        assert params["ExecutionTimeoutMinutes"] == 120
        assert params["ApplicationId"] == pipeline.names["SparkApplication"]
        assert params["ExecutionRoleArn"] == pipeline.names["SparkJobRole.Arn"]
        logging = params["ConfigurationOverrides"]["MonitoringConfiguration"]
        assert logging["S3MonitoringConfiguration"]["LogUri"] == f"s3://{artifacts}/emr-logs/"
        assert (
            logging["CloudWatchLoggingConfiguration"]["LogGroupName"]
            == (pipeline.names["EmrLogGroup"])
        )


def test_the_summary_query_filters_this_run(pipeline: Pipeline) -> None:
    queue_athena_results(list(report_results().values()))
    execution, stand_in = pipeline.execute()
    assert execution["status"] == "SUCCEEDED", execution.get("cause")

    (params,) = stand_in.calls["RunSummaryQuery"]
    sql = load_sql(REPORTS["summary.csv"])
    assert params == {
        "QueryString": sql,
        "WorkGroup": pipeline.names["AthenaWorkGroup"],
        "QueryExecutionContext": {"Database": pipeline.names["GlueDatabase"]},
        "ExecutionParameters": [f"'{RUN_ID}'"] * placeholder_count(sql),
    }


def _assert_alerted_and_failed(
    pipeline: Pipeline, execution: dict[str, Any], error: str, *states: str
) -> str:
    assert execution["status"] == "FAILED"
    # moto spells aws-sdk errors with the service in lower case ("glue.X"); AWS says "Glue.X".
    assert execution["error"].casefold() == error.casefold()
    (alert,) = pipeline.alerts()
    assert execution["error"] in alert, alert
    for text in (RUN_ID, *states):
        assert text in alert, f"{text!r} missing from the alert: {alert}"
    assert states[0] in execution["cause"]
    return alert


def test_a_failed_spark_job_alerts_and_stops_the_run(pipeline: Pipeline) -> None:
    execution, stand_in = pipeline.execute(failures={"RunUserTransactionAnalysisJob": "JobFailed"})

    _assert_alerted_and_failed(
        pipeline, execution, "JobFailed", "RunSparkJobs", "RunUserTransactionAnalysisJob"
    )
    assert pipeline.last_crawl("VehicleLocationPerformanceCrawler") is None
    assert pipeline.athena_queries() == []
    assert pipeline.report_objects() == []
    assert "WriteReport" not in stand_in.calls


def test_a_cancelled_crawl_alerts_and_stops_the_run(pipeline: Pipeline) -> None:
    glue = boto3.client("glue")
    crawler = pipeline.crawler("UserTransactionAnalysisCrawler")
    stopped = []

    def cancel_the_crawl() -> None:
        if not stopped and glue.get_crawler(Name=crawler)["Crawler"]["State"] == "RUNNING":
            glue.stop_crawler(Name=crawler)
            stopped.append(crawler)

    execution, _ = pipeline.execute(on_tick=cancel_the_crawl)

    assert stopped, "the crawl was never seen running"
    alert = _assert_alerted_and_failed(
        pipeline, execution, "CrawlNotSucceeded", "CrawlTables", "CheckUserTransactionAnalysisCrawl"
    )
    assert crawler in alert and "CANCELLED" in alert
    assert pipeline.athena_queries() == []
    assert pipeline.report_objects() == []


def test_a_crawler_that_cannot_start_alerts_and_stops_the_run(pipeline: Pipeline) -> None:
    boto3.client("glue").delete_crawler(Name=pipeline.crawler("VehicleLocationPerformanceCrawler"))

    execution, _ = pipeline.execute()

    _assert_alerted_and_failed(
        pipeline,
        execution,
        "Glue.EntityNotFoundException",
        "CrawlTables",
        "StartVehicleLocationPerformanceCrawler",
    )
    assert pipeline.athena_queries() == []


def test_a_failed_summary_query_alerts_and_writes_no_report(pipeline: Pipeline) -> None:
    execution, stand_in = pipeline.execute(failures={"RunSummaryQuery": "QueryFailed"})

    _assert_alerted_and_failed(pipeline, execution, "QueryFailed", "RunSummaryQuery")
    assert "WriteReport" not in stand_in.calls
    assert pipeline.report_objects() == []


def test_an_error_the_report_function_raises_alerts_and_fails_the_run(
    pipeline: Pipeline, monkeypatch
) -> None:
    """A real raise in the handler (a report query Athena ends FAILED) reaches the Catch."""
    failing = "top_users.csv"
    athena_ends_query(monkeypatch, REPORTS[failing], "FAILED")
    queue_athena_results(list(report_results().values()))

    execution, stand_in = pipeline.execute()

    alert = _assert_alerted_and_failed(pipeline, execution, "ReportQueryFailed", "WriteReport")
    assert failing in alert and "no report file was written" in alert
    assert len(stand_in.calls["WriteReport"]) == 1  # a function error is not retried
    assert pipeline.report_objects() == []


def _retried_tasks() -> dict[str, dict[str, Any]]:
    template = load_template()
    definition = render_definition(
        {k: v if isinstance(v, str) else "x" for k, v in definition_substitutions(template).items()}
    )
    return {
        name: state
        for _, name, state in iter_states(definition)
        if state["Type"] == "Task" and state.get("Retry")
    }


RETRIED = _retried_tasks()
STARTS_CRAWLER = "arn:aws:states:::aws-sdk:glue:startCrawler"
MOST_NAMES = max(len(r["ErrorEquals"]) for s in RETRIED.values() for r in s["Retry"])


@pytest.mark.parametrize("which", range(MOST_NAMES))
def test_each_retry_policy_recovers_from_an_error_it_names(pipeline: Pipeline, which: int) -> None:
    """Every Task with a Retry fails once with one of the errors its policy names (run `which`
    picks the error), and the run still succeeds. The stood-in services fail on script; the
    crawlers are really running when the workflow starts them (Glue.CrawlerRunningException)."""
    queue_athena_results(list(report_results().values()))
    scripted, crawler_starts = {}, []
    for name, state in RETRIED.items():
        (retrier,) = state["Retry"]
        error = retrier["ErrorEquals"][which % len(retrier["ErrorEquals"])]
        if state["Resource"] == STARTS_CRAWLER:
            assert error == "Glue.CrawlerRunningException"
            crawler_starts.append(name)
        else:
            scripted[name] = [error]
    spark_jobs_done = set()
    glue = boto3.client("glue")

    def crawlers_already_running(state: str) -> None:
        if state in JOB_STATE.values():
            spark_jobs_done.add(state)
            if spark_jobs_done == set(JOB_STATE.values()):  # the workflow crawls next
                for crawler in (
                    "VehicleLocationPerformanceCrawler",
                    "UserTransactionAnalysisCrawler",
                ):
                    glue.start_crawler(Name=pipeline.crawler(crawler))

    execution, stand_in = pipeline.execute(
        failures=scripted, before_success=crawlers_already_running
    )

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    for name in scripted:
        assert len(stand_in.calls[name]) == 2, name  # failed once, retried once
    history = boto3.client("stepfunctions").get_execution_history(
        executionArn=execution["executionArn"]
    )["events"]
    crawl_errors = [
        e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"
    ]
    assert crawl_errors.count("Glue.CrawlerRunningException") >= len(crawler_starts)
    assert len(crawler_starts) == 2 and len(scripted) == len(RETRIED) - 2
