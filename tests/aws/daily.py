"""A moto stack for the daily-operation tests: the data lake bucket (versioned), the ledger
table and the run-request queue made from the template's own properties, the alert topic (read
through an SQS subscription), and a state machine whose executions run until the test ends them
(a waitForTaskToken task). The real handlers run in-process: ValidateUpload on S3 events, the
scheduler's start on the queue's messages (as Lambda's SQS poller hands them over), its finish
on the execution-ended events (as EventBridge delivers them).

Time is a `Clock` the handlers read (their modules' `clock`) and moto's SQS reads too, so the
settle window passes when a test says so, not by sleeping. Resources have the names and ARNs a
stack named carrental-test gets (tests/aws/template.py, example_names), so that the calls the
functions make can be checked against the template's policies (test_iam_coverage.py).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import moto.sqs.models
import pytest
from moto import mock_aws

from carrental import lake
from carrental.inputs import Manifest
from tests.aws.conftest import REGION, use_environment
from tests.aws.lambda_runtime import LambdaContext
from tests.aws.sync_stand_in import task_failures_keep_their_cause
from tests.aws.template import (
    ACCOUNT,
    REPO_ROOT,
    example_names,
    function_environment,
    load_template,
)

NAMES = example_names(load_template())
BUCKET = NAMES["DataLakeBucket"]
EVENTS = REPO_ROOT / "events"
SAMPLE = REPO_ROOT / "data" / "sample"
DATASETS = ("vehicles", "locations", "users", "rental_transactions")


@dataclass
class Clock:
    """UTC now, moved on by the test; moto's SQS delays and visibility timeouts follow it."""

    now: datetime = field(default_factory=lambda: datetime(2026, 12, 1, 8, 0, tzinfo=UTC))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def patch_moto(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(moto.sqs.models, "unix_time", lambda *_: self.now.timestamp())
        monkeypatch.setattr(
            moto.sqs.models, "unix_time_millis", lambda *_: self.now.timestamp() * 1000
        )


def table_properties(template: dict, logical_id: str) -> dict:
    props = template["Resources"][logical_id]["Properties"]
    return {k: props[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode")}


@dataclass
class DailyStack:
    clock: Clock
    validate_app: ModuleType
    scheduler_app: ModuleType
    environments: dict[str, dict[str, str]]  # function logical id -> its environment
    alerts_queue: str
    control_queue: str
    machine_arn: str
    s3: Any = field(default_factory=lambda: boto3.client("s3"))
    sqs: Any = field(default_factory=lambda: boto3.client("sqs"))
    dynamodb: Any = field(default_factory=lambda: boto3.client("dynamodb"))
    sfn: Any = field(default_factory=lambda: boto3.client("stepfunctions"))
    requests: itertools.count = field(default_factory=itertools.count)
    sequencers: itertools.count = field(default_factory=lambda: itertools.count(0x665AE1D1E7A1B000))
    _tokens: dict[str, str] = field(default_factory=dict)  # run id -> its waiting task's token

    @property
    def settle_seconds(self) -> int:
        return int(self.environments["ValidateUploadFunction"]["SETTLE_SECONDS"])

    @property
    def run_request_queue(self) -> str:
        return self.environments["ValidateUploadFunction"]["RUN_REQUEST_QUEUE_URL"]

    @property
    def table(self) -> str:
        return self.environments["ValidateUploadFunction"]["LEDGER_TABLE_NAME"]

    def context(self, function: str) -> LambdaContext:
        return LambdaContext(
            function_name=function, aws_request_id=f"request-{next(self.requests)}"
        )

    def use_environment(self, logical_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
        use_environment(monkeypatch, self.environments[logical_id])

    # ------------------------------------------------------------------ uploads

    def upload(self, key: str, body: bytes) -> dict:
        """Put an object under `key` now; its "Object Created" event (not delivered yet)."""
        put = self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        event = json.loads((EVENTS / "users_created.json").read_text(encoding="utf-8"))
        event["time"] = self.clock.now.strftime("%Y-%m-%dT%H:%M:%SZ")
        event["detail"]["bucket"]["name"] = BUCKET
        event["detail"]["object"].update(
            key=key,
            size=len(body),
            etag=put["ETag"].strip('"'),
            sequencer=f"{next(self.sequencers):018X}",
            **{"version-id": put["VersionId"]},
        )
        return event

    def upload_file(self, dataset: str, path: Path, name: str | None = None) -> dict:
        return self.upload(lake.raw_key(dataset, name or path.name), path.read_bytes())

    def validate(self, event: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
        self.use_environment("ValidateUploadFunction", monkeypatch)
        self.clock.advance(1)  # validating takes a moment
        return self.validate_app.lambda_handler(
            json.loads(json.dumps(event)), self.context("validate-upload")
        )

    def upload_and_validate(self, dataset: str, path: Path, monkeypatch, name: str | None = None):
        return self.validate(self.upload_file(dataset, path, name), monkeypatch)

    # ------------------------------------------------------------------ the scheduler

    def pump(self, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
        """Hand every visible run request to the start function, ten at a time, as Lambda's
        SQS poller does (deleting a batch once the function succeeded); its decisions."""
        self.use_environment("RunSchedulerStartFunction", monkeypatch)
        queue_arn = self.sqs.get_queue_attributes(
            QueueUrl=self.run_request_queue, AttributeNames=["QueueArn"]
        )["Attributes"]["QueueArn"]
        decisions = []
        for _ in range(100):
            messages = self.sqs.receive_message(
                QueueUrl=self.run_request_queue, MaxNumberOfMessages=10
            ).get("Messages", [])
            if not messages:
                return decisions
            event = {
                "Records": [
                    {
                        "messageId": m["MessageId"],
                        "receiptHandle": m["ReceiptHandle"],
                        "body": m["Body"],
                        "attributes": {"ApproximateReceiveCount": "1"},
                        "messageAttributes": {},
                        "md5OfBody": m["MD5OfBody"],
                        "eventSource": "aws:sqs",
                        "eventSourceARN": queue_arn,
                        "awsRegion": REGION,
                    }
                    for m in messages
                ]
            }
            decisions.append(
                self.scheduler_app.start_handler(event, self.context("run-scheduler-start"))
            )
            for m in messages:
                self.sqs.delete_message(
                    QueueUrl=self.run_request_queue, ReceiptHandle=m["ReceiptHandle"]
                )
        raise AssertionError("the run requests never ran out")

    def settle(self, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
        """Let the settle window pass, then answer the run requests."""
        self.clock.advance(self.settle_seconds + 1)
        return self.pump(monkeypatch)

    # ------------------------------------------------------------------ executions

    def executions(self) -> list[dict]:
        listed = self.sfn.list_executions(stateMachineArn=self.machine_arn)["executions"]
        described = [self.sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]
        return sorted(described, key=lambda e: e["startDate"])

    def manifest(self, execution: dict) -> Manifest:
        key = json.loads(execution["input"])["manifest_key"]
        return Manifest.from_json(
            self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
        )

    def _task_token(self, run_id: str) -> str:
        for _ in range(200):
            for m in self.sqs.receive_message(
                QueueUrl=self.control_queue, MaxNumberOfMessages=10
            ).get("Messages", []):
                body = json.loads(m["Body"])
                self.sqs.delete_message(
                    QueueUrl=self.control_queue, ReceiptHandle=m["ReceiptHandle"]
                )
                self._tokens[body["run_id"]] = body["token"]
            if run_id in self._tokens:
                return self._tokens.pop(run_id)
            time.sleep(0.02)
        raise TimeoutError(f"execution {run_id} never reached its task")

    def stop(self, execution: dict, status: str, cause: str = "") -> dict:
        """End an execution with `status` (SUCCEEDED, FAILED or ABORTED); it, described."""
        arn = execution["executionArn"]
        token = self._task_token(execution["name"])
        if status == "ABORTED":
            self.sfn.stop_execution(executionArn=arn)
            # Step Functions ends a stopped execution at once; moto only once the task it
            # waits in is answered
            self.sfn.send_task_success(taskToken=token, output="{}")
        elif status == "SUCCEEDED":
            self.sfn.send_task_success(taskToken=token, output="{}")
        else:
            self.sfn.send_task_failure(taskToken=token, error="TaskFailed", cause=cause)
        for _ in range(200):
            ended = self.sfn.describe_execution(executionArn=arn)
            if ended["status"] != "RUNNING":
                break
            time.sleep(0.02)
        assert ended["status"] == status, ended
        return ended

    def end(self, execution: dict, status: str, monkeypatch, cause: str = "") -> dict:
        """End an execution, then deliver its status-change event to the finish function; what
        that returned."""
        return self.deliver_end_event(self.stop(execution, status, cause), monkeypatch)

    def deliver_end_event(self, ended: dict, monkeypatch) -> dict:
        event = json.loads((EVENTS / "execution_ended.json").read_text(encoding="utf-8"))
        event["resources"] = [ended["executionArn"]]
        event["detail"].update(
            executionArn=ended["executionArn"],
            stateMachineArn=self.machine_arn,
            name=ended["name"],
            status=ended["status"],
            input=ended["input"],
        )
        self.use_environment("RunSchedulerFinishFunction", monkeypatch)
        return self.scheduler_app.finish_handler(event, self.context("run-scheduler-finish"))

    # ------------------------------------------------------------------ what is there

    def lock(self) -> dict:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"pk": {"S": "pipeline"}, "sk": {"S": "lock"}}
        ).get("Item", {})
        return {k: next(iter(v.values())) for k, v in item.items()}

    def ledger_items(self, pk: str) -> list[dict]:
        items = self.dynamodb.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
        )["Items"]
        return [{k: next(iter(v.values())) for k, v in item.items()} for item in items]

    def alerts(self) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=self.alerts_queue, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]

    def body(self, key: str, version_id: str | None = None) -> bytes:
        version = {"VersionId": version_id} if version_id else {}
        return self.s3.get_object(Bucket=BUCKET, Key=key, **version)["Body"].read()

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))


@contextmanager
def daily_stack(
    validate_app: ModuleType,
    scheduler_app: ModuleType,
    monkeypatch: pytest.MonkeyPatch,
    staging_dir: Path,
    *,
    executions: bool = False,
) -> Iterator[DailyStack]:
    """The stack in moto for the length of the block (its executions run if `executions`); the
    handlers' AWS clients are forgotten after it (a test may have replaced `aws_clients`)."""
    config = {"stepfunctions": {"execute_state_machine": True}} if executions else None
    forget_clients = [app.aws_clients.cache_clear for app in (validate_app, scheduler_app)]
    try:
        with mock_aws(config=config):
            yield create_daily_stack(validate_app, scheduler_app, Clock(), monkeypatch, staging_dir)
    finally:
        for forget in forget_clients:
            forget()


def create_daily_stack(
    validate_app: ModuleType,
    scheduler_app: ModuleType,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    staging_dir: Path,
) -> DailyStack:
    """The stack's upload-to-run path in moto (call inside mock_aws)."""
    template = load_template()
    resources = template["Resources"]
    clock.patch_moto(monkeypatch)
    task_failures_keep_their_cause(monkeypatch)
    for app in (validate_app, scheduler_app):
        monkeypatch.setattr(app, "clock", clock)
        app.aws_clients.cache_clear()
    s3, sqs, sns = boto3.client("s3"), boto3.client("sqs"), boto3.client("sns")
    s3.create_bucket(Bucket=BUCKET)
    versioning = resources["DataLakeBucket"]["Properties"]["VersioningConfiguration"]
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration=versioning)
    dynamodb = boto3.client("dynamodb")
    table = NAMES["LedgerTable"]
    dynamodb.create_table(TableName=table, **table_properties(template, "LedgerTable"))
    ttl = resources["LedgerTable"]["Properties"]["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(TableName=table, TimeToLiveSpecification=ttl)
    queue_props = resources["RunRequestQueue"]["Properties"]
    queue = sqs.create_queue(
        QueueName=NAMES["RunRequestQueue.QueueName"],
        Attributes={"VisibilityTimeout": str(queue_props["VisibilityTimeout"])},
    )["QueueUrl"]
    topic = sns.create_topic(Name=NAMES["AlertTopic"].rsplit(":", 1)[1])["TopicArn"]
    alerts = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alerts_arn["Attributes"]["QueueArn"])
    control = sqs.create_queue(QueueName="executions-waiting")["QueueUrl"]
    machine = boto3.client("stepfunctions").create_state_machine(
        name=NAMES["CarRentalPipeline.Name"],
        definition=json.dumps(
            {
                "StartAt": "Run",
                "States": {
                    "Run": {
                        "Type": "Task",
                        "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                        "Parameters": {
                            "QueueUrl": control,
                            "MessageBody": {"token.$": "$$.Task.Token", "run_id.$": "$.run_id"},
                        },
                        "End": True,
                    }
                },
            }
        ),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/pipeline",
    )["stateMachineArn"]
    assert (topic, machine) == (NAMES["AlertTopic"], NAMES["CarRentalPipeline"])
    names = {**NAMES, "RunRequestQueue": queue}
    environments = {
        logical_id: function_environment(template, logical_id, names)
        for logical_id in (
            "ValidateUploadFunction",
            "RunSchedulerStartFunction",
            "RunSchedulerFinishFunction",
        )
    }
    environments["ValidateUploadFunction"]["STAGING_DIR"] = str(staging_dir)
    return DailyStack(clock, validate_app, scheduler_app, environments, alerts, control, machine)


class InterleavedClient:
    """A boto3 client whose first call of `operation` first runs `meanwhile` (another
    invocation, start to end): deterministic interleaving, no threads (moto is not thread-safe
    for conditional writes)."""

    def __init__(self, client, operation: str, meanwhile) -> None:
        self._client, self._operation, self._meanwhile = client, operation, meanwhile

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if name != self._operation or self._meanwhile is None:
            return attribute

        def interleaved(**kwargs):
            meanwhile, self._meanwhile = self._meanwhile, None
            meanwhile()
            return attribute(**kwargs)

        return interleaved
