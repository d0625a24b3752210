"""The state machine of template.yaml executed by moto, end to end, on each path that matters.

The moto resources are created from the template's own properties (bucket, crawlers, workgroup,
EMR application, database), so botocore checks that those properties are valid API input. The
definition is the deployed one with the template's substitutions; only the `.sync` tasks and the
functions' invocations are answered by the stand-in of tests/aws/sync_stand_in.py (see there why),
which runs the real Report and PublishRun handlers. A run's input is what the run scheduler
starts it with: its id, the bucket and its manifest (written here from a ledger, as the
scheduler does); the Spark jobs, which do not run here, leave a run_inputs table behind
(`JobOutputs`), the one table PublishRun reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.moto_api import state_manager

from carrental import lake
from carrental.aws.ledger import Arrival, Ledger
from carrental.contracts import DATASETS
from carrental.deploy import ARCHIVE_NAME, JOBS_PREFIX, job_names
from carrental.inputs import InputFile
from carrental.publishing import parse_record, view_sql
from carrental.report import REPORTS, load_sql
from carrental.report_html import REPORT_PAGE
from carrental.spark.entrypoint import build_parser
from tests.aws.conftest import REGION, use_environment
from tests.aws.daily import table_properties
from tests.aws.job_outputs import put_run_inputs
from tests.aws.lambda_runtime import LambdaContext
from tests.aws.report_data import (
    RUN_ID,
    athena_ends_query,
    placeholder_count,
    queue_athena_results,
    report_results,
    view_results,
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
    function_environment,
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
T0 = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)
EARLIER_RUN = "batch-20260104T101500-0c11aa"
EARLIER_RECORD = (
    json.dumps(
        {
            "run_id": EARLIER_RUN,
            "published_at": "2026-01-04T10:40:00+00:00",
            "manifest": lake.manifest_key(EARLIER_RUN),
            "is_current": True,
        }
    )
    + "\n"
).encode()
HELD_BACK_KEY = "raw/rental_transactions/rentals-2026-01-05.csv"


@dataclass
class JobOutputs:
    """What the Spark jobs leave in the lake (EMR does not run here): the run_inputs table of
    user_transaction_analysis, with the files `held_back` left out of the run."""

    bucket: str
    files: list[InputFile]
    held_back: dict[str, str] = field(default_factory=dict)  # key -> reason

    def __call__(self, state: str) -> None:
        if state == JOB_STATE["user_transaction_analysis"]:
            put_run_inputs(boto3.client("s3"), self.bucket, RUN_ID, self.files, self.held_back)


@dataclass
class Pipeline:
    names: dict[str, Any]
    state_machine_arn: str
    tasks_queue: str
    alerts_queue: str
    functions: dict[str, Callable[[dict], dict]]
    files: list[InputFile] = field(default_factory=list)

    @property
    def lake(self) -> str:
        return self.names["DataLakeBucket"]

    def crawler(self, logical_id: str) -> str:
        return self.names[logical_id]

    def execute(
        self,
        failures: dict[str, Any] | None = None,
        on_tick: Callable[[], None] = lambda: None,
        before_success: Callable[[str], None] | None = None,
        held_back: dict[str, str] | None = None,
    ) -> tuple[dict[str, Any], StandIn]:
        """Start a run as the scheduler does and answer its tasks until it ends."""
        outputs = JobOutputs(self.lake, self.files, held_back or {})
        run = {"run_id": RUN_ID, "bucket": self.lake, "manifest_key": lake.manifest_key(RUN_ID)}
        execution_arn = boto3.client("stepfunctions").start_execution(
            stateMachineArn=self.state_machine_arn,
            name=RUN_ID,
            input=json.dumps(run, sort_keys=True, separators=(",", ":")),
        )["executionArn"]
        stand_in = StandIn(
            self.tasks_queue, self.functions, failures or {}, on_tick, before_success or outputs
        )
        return stand_in.run(execution_arn), stand_in

    def record(self) -> bytes:
        return (
            boto3.client("s3")
            .get_object(Bucket=self.lake, Key=lake.PUBLISHED_RECORD)["Body"]
            .read()
        )

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


def _put_inputs(names: dict[str, Any]) -> list[InputFile]:
    """Four uploads in the ledger and the run's manifest over them, as the scheduler writes it."""
    s3 = boto3.client("s3")
    ledger = Ledger(boto3.client("dynamodb"), names["LedgerTable"])
    for index, dataset in enumerate(DATASETS):
        key = (
            HELD_BACK_KEY
            if dataset == "rental_transactions"
            else lake.raw_key(dataset, f"{dataset}.csv")
        )
        version = s3.put_object(
            Bucket=names["DataLakeBucket"], Key=key, Body=f"{dataset} as uploaded".encode()
        )["VersionId"]
        at = T0.replace(minute=index).isoformat()
        accepted = InputFile(dataset, key, f"{index + 1:064x}", 20, at, at, version)
        ledger.accept(accepted, Arrival(key, version, f"{index:02X}", T0))
    manifest = ledger.inputs().manifest(RUN_ID, T0.isoformat(), 0.05)
    s3.put_object(
        Bucket=names["DataLakeBucket"],
        Key=lake.manifest_key(RUN_ID),
        Body=manifest.to_json().encode(),
    )
    ledger.acquire(RUN_ID, T0, ledger.lock(), holder_ran=False)
    ledger.set_fingerprint(RUN_ID, manifest.fingerprint)
    s3.put_object(Bucket=names["DataLakeBucket"], Key=lake.PUBLISHED_RECORD, Body=EARLIER_RECORD)
    return manifest.inputs


def _create_stack(
    template: dict[str, Any], functions: dict[str, Callable[[dict], dict]]
) -> Pipeline:
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
        "PublishRunFunction.Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{STACK}-publish",
        "LedgerTable": f"{STACK}-ledger",
    }
    props = {
        logical_id: resource.get("Properties", {}) for logical_id, resource in resources.items()
    }

    s3 = boto3.client("s3")
    for bucket in ("DataLakeBucket", "ArtifactsBucket"):
        s3.create_bucket(Bucket=names[bucket])
        s3.put_bucket_versioning(
            Bucket=names[bucket],
            VersioningConfiguration=props[bucket]["VersioningConfiguration"],
        )
    boto3.client("dynamodb").create_table(
        TableName=names["LedgerTable"], **table_properties(template, "LedgerTable")
    )

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
    functions = {names[f"{logical_id}.Arn"]: handler for logical_id, handler in functions.items()}
    pipeline = Pipeline(names, state_machine_arn, tasks_queue, alerts_queue, functions)
    pipeline.files = _put_inputs(names)
    return pipeline


@pytest.fixture
def pipeline(monkeypatch, report_app, publish_module) -> Iterator[Pipeline]:
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
        publish_module.aws_clients.cache_clear()
        try:
            stack = _create_stack(
                template,
                {
                    "ReportFunction": lambda payload: report_app.lambda_handler(
                        payload, LambdaContext(function_name="report")
                    ),
                    "PublishRunFunction": lambda payload: publish_module.lambda_handler(
                        payload, LambdaContext(function_name="publish-run")
                    ),
                },
            )
            for function in ("ReportFunction", "PublishRunFunction"):
                environment = function_environment(template, function, stack.names)
                use_environment(  # Powertools read theirs on import (load_function)
                    monkeypatch,
                    {k: v for k, v in environment.items() if not k.startswith("POWERTOOLS_")},
                )
            yield stack
        finally:
            state_manager.unset_transition("glue::crawl")
            publish_module.aws_clients.cache_clear()


def queue_run_results() -> dict:
    """Athena's answers, in the order the run starts its queries: the views, the summary, the
    other reports."""
    expected = report_results()
    queue_athena_results([*view_results(), *expected.values()])
    return expected


def test_a_run_crawls_every_table_folder_then_writes_its_report_and_publishes(
    pipeline: Pipeline,
) -> None:
    """The success path as far as moto goes: the tables themselves are the Spark jobs' and the
    crawlers' work, which do not run here (test_emr_emulation.py runs the jobs)."""
    expected_reports = queue_run_results()

    execution, stand_in = pipeline.execute()

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    keys = [f"reports/{RUN_ID}/{name}" for name in [*REPORTS, REPORT_PAGE]]
    output = json.loads(execution["output"])
    assert output["report"] == {"bucket": pipeline.lake, "keys": keys}
    assert output["published"] == {"held_back": [], "pruned_runs": []}
    assert pipeline.report_objects() == sorted(keys)
    body = boto3.client("s3").get_object(Bucket=pipeline.lake, Key=keys[0])["Body"].read()
    assert body.decode() == expected_reports["summary.csv"].expected_csv
    record = parse_record(pipeline.record().decode())
    assert [(r.run_id, r.is_current) for r in record] == [(EARLIER_RUN, False), (RUN_ID, True)]
    assert record[-1].manifest == lake.manifest_key(RUN_ID)
    assert pipeline.alerts() == []
    crawled = set()
    for crawler in ("VehicleLocationPerformanceCrawler", "UserTransactionAnalysisCrawler"):
        assert pipeline.last_crawl(crawler)["Status"] == "SUCCEEDED"
        polls = pipeline.entered(execution["executionArn"], f"Get{crawler}")
        assert polls >= 2, f"{crawler}: the wait-and-poll loop never turned"
        targets = boto3.client("glue").get_crawler(Name=pipeline.crawler(crawler))["Crawler"]
        crawled |= {target["Path"] for target in targets["Targets"]["S3Targets"]}
    assert crawled == {f"s3://{pipeline.lake}/{lake.PROCESSED}/{table}/" for table in lake.TABLES}
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
    assert stand_in.calls["PublishRun"] == [
        {
            "FunctionName": pipeline.names["PublishRunFunction.Arn"],
            "Payload": {
                "run_id": RUN_ID,
                "bucket": pipeline.lake,
                "manifest_key": lake.manifest_key(RUN_ID),
            },
        }
    ]


def test_spark_jobs_get_the_manifest_and_the_shipped_code(pipeline: Pipeline) -> None:
    queue_run_results()
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
        assert args.manifest == f"s3://{pipeline.lake}/{lake.manifest_key(RUN_ID)}"
        assert args.lake == f"s3://{pipeline.lake}"
        assert params["ExecutionTimeoutMinutes"] == 120
        assert params["ApplicationId"] == pipeline.names["SparkApplication"]
        assert params["ExecutionRoleArn"] == pipeline.names["SparkJobRole.Arn"]
        logging = params["ConfigurationOverrides"]["MonitoringConfiguration"]
        assert logging["S3MonitoringConfiguration"]["LogUri"] == f"s3://{artifacts}/emr-logs/"
        cloudwatch = logging["CloudWatchLoggingConfiguration"]
        assert cloudwatch["LogGroupName"] == pipeline.names["EmrLogGroup"]
        assert cloudwatch["LogStreamNamePrefix"] == f"{RUN_ID}/{job}"  # found by run id


def test_the_current_views_are_replaced_between_the_crawl_and_the_queries(
    pipeline: Pipeline,
) -> None:
    queue_run_results()
    execution, stand_in = pipeline.execute()
    assert execution["status"] == "SUCCEEDED", execution.get("cause")

    calls = stand_in.calls["UpdateCurrentView"]
    assert sorted(c["QueryString"] for c in calls) == sorted(view_sql(t) for t in lake.TABLES)
    assert {c["WorkGroup"] for c in calls} == {pipeline.names["AthenaWorkGroup"]}
    assert {c["QueryExecutionContext"]["Database"] for c in calls} == {
        pipeline.names["GlueDatabase"]
    }
    history = boto3.client("stepfunctions").get_execution_history(
        executionArn=execution["executionArn"]
    )["events"]
    order = [
        e["stateEnteredEventDetails"]["name"]
        for e in history
        if e.get("stateEnteredEventDetails", {}).get("name")
        in ("CrawlTables", "UpdateCurrentViews", "RunSummaryQuery", "PublishRun")
    ]
    assert order == ["CrawlTables", "UpdateCurrentViews", "RunSummaryQuery", "PublishRun"]


def test_the_summary_query_filters_this_run(pipeline: Pipeline) -> None:
    queue_run_results()
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


def test_a_file_the_gate_held_back_is_quarantined_and_the_rest_published(
    pipeline: Pipeline,
) -> None:
    queue_run_results()
    reason = "held back: 20 of 20 rows (100.0%) break a reject rule at run time"
    execution, _ = pipeline.execute(held_back={HELD_BACK_KEY: reason})

    assert execution["status"] == "SUCCEEDED", execution.get("cause")
    assert json.loads(execution["output"])["published"]["held_back"] == [HELD_BACK_KEY]
    copy, report = lake.quarantine_keys(
        "rental_transactions", HELD_BACK_KEY.rsplit("/", 1)[-1], RUN_ID
    )
    s3 = boto3.client("s3")
    assert (
        s3.get_object(Bucket=pipeline.lake, Key=copy)["Body"].read()
        == b"rental_transactions as uploaded"
    )
    assert (
        json.loads(s3.get_object(Bucket=pipeline.lake, Key=report)["Body"].read())["reason"]
        == reason
    )
    (alert,) = pipeline.alerts()
    assert "held back" in alert and reason in alert
    assert parse_record(pipeline.record().decode())[-1].run_id == RUN_ID


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
    assert pipeline.record() == EARLIER_RECORD  # nothing published: analysts see the earlier run
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


def test_a_view_athena_cannot_replace_alerts_and_stops_the_run(pipeline: Pipeline) -> None:
    execution, stand_in = pipeline.execute(failures={"UpdateCurrentView": "QueryFailed"})

    alert = _assert_alerted_and_failed(
        pipeline, execution, "QueryFailed", "UpdateCurrentViews", "CREATE OR REPLACE VIEW"
    )
    assert "UpdateCurrentView failed on" in alert
    assert "RunSummaryQuery" not in stand_in.calls and pipeline.report_objects() == []


def test_a_failed_summary_query_alerts_and_writes_no_report(pipeline: Pipeline) -> None:
    queue_athena_results(view_results())
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
    queue_run_results()

    execution, stand_in = pipeline.execute()

    alert = _assert_alerted_and_failed(pipeline, execution, "ReportQueryFailed", "WriteReport")
    assert failing in alert and "no report file was written" in alert
    assert len(stand_in.calls["WriteReport"]) == 1  # a function error is not retried
    assert pipeline.report_objects() == []
    assert "PublishRun" not in stand_in.calls


def test_an_error_the_publish_function_raises_publishes_nothing(pipeline: Pipeline) -> None:
    """A real raise in PublishRun (the run's run_inputs table is not there) reaches the Catch
    before the one write that publishes."""
    queue_run_results()

    execution, stand_in = pipeline.execute(before_success=lambda state: None)

    alert = _assert_alerted_and_failed(pipeline, execution, "NoFilesFound", "PublishRun")
    assert "run_inputs" in alert
    assert len(stand_in.calls["PublishRun"]) == 1


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
# Tasks run once per item of their Map: one call each, plus the retried one.
CALLS_PER_RUN = {"UpdateCurrentView": len(lake.TABLES)}


@pytest.mark.parametrize("which", range(MOST_NAMES))
def test_each_retry_policy_recovers_from_an_error_it_names(pipeline: Pipeline, which: int) -> None:
    """Every Task with a Retry fails once with one of the errors its policy names (run `which`
    picks the error), and the run still succeeds. The stood-in services fail on script; the
    crawlers are really running when the workflow starts them (Glue.CrawlerRunningException)."""
    queue_run_results()
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
    outputs = JobOutputs(pipeline.lake, pipeline.files)

    def crawlers_already_running(state: str) -> None:
        outputs(state)
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
        # failed once, retried once
        assert len(stand_in.calls[name]) == CALLS_PER_RUN.get(name, 1) + 1, name
    history = boto3.client("stepfunctions").get_execution_history(
        executionArn=execution["executionArn"]
    )["events"]
    crawl_errors = [
        e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"
    ]
    assert crawl_errors.count("Glue.CrawlerRunningException") >= len(crawler_starts)
    assert len(crawler_starts) == 2 and len(scripted) == len(RETRIED) - 2
