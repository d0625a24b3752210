"""The one place where the AWS tests depart from the deployed definition and from AWS (moto's gaps).

moto executes state machines but does not implement the `.sync` integrations of EMR Serverless
(`startJobRun.sync`) and Athena (`startQueryExecution.sync`): such an execution ends in
States.Runtime, which no Catch can catch. So, for the tests only:

1. `rewrite_for_moto` turns those Task states, and the functions' `lambda:invoke` (Report,
   PublishRun), into `sqs:sendMessage.waitForTaskToken` tasks. Each message carries the state name and the
   parameters the engine evaluated from the real definition; Retry, Catch, ResultSelector and
   ResultPath are kept as they are.
2. `StandIn` plays the services behind those tasks, like a `.sync` poller would: it calls moto's
   EMR Serverless `start_job_run` (parameter names and shapes are checked by botocore) and
   `get_job_run`, moto's Athena `start_query_execution` and `get_query_execution`, and the
   real function handlers in-process, then reports success or failure with SendTaskSuccess or
   SendTaskFailure. A test scripts which attempts of which states fail, with which error (moto
   never fails a job or query), and what a Spark job leaves behind (`before_success`: EMR does
   not run here, so no job writes its tables); an error a handler raises fails its task the way
   Lambda reports an unhandled error.
3. `correct_moto_crawl_status`: moto's GetCrawler shows the current crawl as LastCrawl, with
   crawl states (RUNNING, COMPLETED, STOPPED); Glue shows the latest finished crawl with
   SUCCEEDED, CANCELLED or FAILED, which the definition checks. The patch makes moto say it
   Glue's way.
4. `emr_application_for_moto`: moto's EMR Serverless accepts only `emr-X.Y.0` release labels,
   not the `emr-spark-8.0.0` of the template (test_template.py checks that label).
5. `athena_applies_the_workgroup_output_location`: Athena writes a query's results to its
   workgroup's output location when the query names none (and always, when the workgroup
   enforces its settings); moto keeps results only for queries that name one themselves, so the
   summary query the workflow starts (WorkGroup only) would have no results to read.
6. `CRAWLER_POLL_SECONDS`: the template polls a crawler every 10 s at least (Glue may not show
   RUNNING right after StartCrawler); moto's crawler changes state on a timer the test sets, so
   the tests poll every second to keep the crawler loop quick.
7. Retry intervals become 1 s (and backoff 1.0): the definition's real intervals (up to a
   minute) are checked in test_state_machine_definition.py; here each Retry is exercised.
8. `aws_sdk_errors_named_as_step_functions_does`: moto spells Glue's aws-sdk errors "glue.X".
9. `task_failures_keep_their_cause`: moto's SendTaskFailure drops the cause.
10. `each_attempt_gets_its_task_token`: moto reuses a retried task's token.

What only a real deploy proves: the `.sync` integrations themselves, IAM, EMR running the jobs,
Glue inferring the schemas, Athena running the SQL (README, "Deploy to AWS").
"""

from __future__ import annotations

import copy
import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto.athena.models import AthenaBackend
from moto.core.responses import EmptyResult
from moto.glue.models import FakeCrawler
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk_task,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (
    StateTaskServiceCallback,
)
from moto.stepfunctions.responses import StepFunctionResponse

from tests.aws.template import iter_states

EMR_SYNC = "arn:aws:states:::emr-serverless:startJobRun.sync"
ATHENA_SYNC = "arn:aws:states:::athena:startQueryExecution.sync"
LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
STOOD_IN = (EMR_SYNC, ATHENA_SYNC, LAMBDA_INVOKE)
CALLBACK = "arn:aws:states:::sqs:sendMessage.waitForTaskToken"

_GLUE_LAST_CRAWL_STATUS = {"COMPLETED": "SUCCEEDED", "STOPPED": "CANCELLED", "FAILED": "FAILED"}
_MOTO_RELEASE_LABEL = "emr-7.0.0"
CRAWLER_POLL_SECONDS = 1


def rewrite_for_moto(definition: Mapping[str, Any], queue_url: str) -> dict[str, Any]:
    rewritten = copy.deepcopy(dict(definition))
    for _, name, state in iter_states(rewritten):
        if state.get("Type") == "Task" and state["Resource"] in STOOD_IN:
            state["Parameters"] = {
                "QueueUrl": queue_url,
                "MessageBody": {
                    "state": name,
                    "resource": state["Resource"],
                    "task_token.$": "$$.Task.Token",
                    "parameters": state["Parameters"],
                },
            }
            state["Resource"] = CALLBACK
        for retrier in state.get("Retry", []):
            retrier.update(IntervalSeconds=1, BackoffRate=1.0)
    return rewritten


def correct_moto_crawl_status(monkeypatch: pytest.MonkeyPatch) -> None:
    as_dict = FakeCrawler.as_dict

    def as_glue_reports_it(crawler: FakeCrawler) -> dict[str, Any]:
        # Glue's LastCrawl is the latest *finished* crawl; moto shows the current one.
        data = as_dict(crawler)
        data.pop("LastCrawl", None)
        finished = [c for c in crawler.crawls if c.status in _GLUE_LAST_CRAWL_STATUS]
        if finished:
            crawl = finished[-1]
            data["LastCrawl"] = {
                "LogGroup": crawl.log_group,
                "LogStream": crawl.log_stream,
                "MessagePrefix": crawl.message_prefix,
                "StartTime": crawl.start_time,
                "Status": _GLUE_LAST_CRAWL_STATUS[crawl.status],
            }
        return data

    monkeypatch.setattr(FakeCrawler, "as_dict", as_glue_reports_it)


def athena_applies_the_workgroup_output_location(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "If a query runs in a workgroup and the workgroup overrides client-side settings, the
    workgroup's query results location is used"; without a client-side location it is used too:
    https://docs.aws.amazon.com/athena/latest/ug/workgroups-settings-override.html"""
    start = AthenaBackend.start_query_execution

    def as_athena_does(backend, query, context, config, workgroup, execution_parameters):
        settings = getattr(backend.work_groups.get(workgroup), "configuration", {})
        location = settings.get("ResultConfiguration", {}).get("OutputLocation")
        config = dict(config or {})
        if location and (settings.get("EnforceWorkGroupConfiguration") or not config):
            config["OutputLocation"] = location
        return start(backend, query, context, config, workgroup, execution_parameters)

    monkeypatch.setattr(AthenaBackend, "start_query_execution", as_athena_does)


def aws_sdk_errors_named_as_step_functions_does(monkeypatch: pytest.MonkeyPatch) -> None:
    """An aws-sdk task's error is "<Service>.<Exception>" with the service as Step Functions
    spells it ("Glue.CrawlerRunningException"); moto lower-cases services it has no spelling
    for ("glue."), so a Retry or Catch on the documented name would never match:
    https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html"""
    monkeypatch.setitem(aws_sdk_task._SERVICE_ERROR_NAMES, "glue", "Glue")


def task_failures_keep_their_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """SendTaskFailure takes an error and a cause; moto's responder drops the cause, which the
    workflow's alert and Fail states pass on."""

    def send_task_failure(responder: StepFunctionResponse) -> EmptyResult:
        responder.stepfunction_backend.send_task_failure(
            responder._get_param("taskToken"),
            error=responder._get_param("error"),
            cause=responder._get_param("cause"),
        )
        return EmptyResult()

    monkeypatch.setattr(StepFunctionResponse, "send_task_failure", send_task_failure)


def each_attempt_gets_its_task_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Step Functions hands every attempt of a waitForTaskToken task a token of its own; moto
    keeps the first attempt's, whose callback already holds the failure that caused the retry,
    so a retried task could end with a stale answer."""
    attempt = StateTaskServiceCallback._eval_execution

    def with_a_fresh_token(task: StateTaskServiceCallback, env) -> None:
        if (
            task._is_integration_pattern()
            and ResourceCondition.WaitForTaskToken in task._supported_integration_patterns
        ):
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        attempt(task, env)

    monkeypatch.setattr(StateTaskServiceCallback, "_eval_execution", with_a_fresh_token)


def emr_application_for_moto(properties: Mapping[str, Any]) -> dict[str, Any]:
    """CreateApplication arguments from the template's properties, with a label moto knows."""
    return camel_case_keys({**properties, "ReleaseLabel": _MOTO_RELEASE_LABEL})


def camel_case_keys(value: Any) -> Any:
    """Step Functions' optimized integrations spell API fields in PascalCase, boto3 in camelCase."""
    if isinstance(value, dict):
        return {key[0].lower() + key[1:]: camel_case_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [camel_case_keys(item) for item in value]
    return value


@dataclass
class StandIn:
    """Answers the rewritten tasks until the execution ends; records what each state asked for.

    `failures` scripts what the service answers: state name -> an error name (every attempt
    fails with it) or a list of error names (the first attempts fail with them in turn, later
    ones are served). A failing attempt is not served: the call never reached the service.
    `functions` maps each function ARN the workflow invokes to its handler; a handler that
    raises fails its task the way Lambda reports an unhandled error."""

    queue_url: str
    functions: Mapping[str, Callable[[dict], dict]]
    failures: Mapping[str, str | Sequence[str]] = field(default_factory=dict)
    on_tick: Callable[[], None] = lambda: None
    before_success: Callable[[str], None] = lambda state: None
    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sqs = boto3.client("sqs")
        self.sfn = boto3.client("stepfunctions")
        self.emr = boto3.client("emr-serverless")
        self.athena = boto3.client("athena")

    def run(self, execution_arn: str, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.sqs.receive_message(QueueUrl=self.queue_url).get("Messages", []):
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                self._answer(json.loads(message["Body"]))
            self.on_tick()
            execution = self.sfn.describe_execution(executionArn=execution_arn)
            if execution["status"] != "RUNNING":
                return execution
            time.sleep(0.05)
        raise TimeoutError(f"{execution_arn} still running after {timeout_s} s")

    def _scripted_error(self, state: str) -> str | None:
        scripted = self.failures.get(state)
        if isinstance(scripted, str):
            return scripted
        attempt = len(self.calls[state]) - 1
        return scripted[attempt] if scripted and attempt < len(scripted) else None

    def _answer(self, task: dict[str, Any]) -> None:
        state, token, params = task["state"], task["task_token"], task["parameters"]
        self.calls.setdefault(state, []).append(params)
        error = self._scripted_error(state)
        if error:
            self._report(token, failure=(error, f"{state} made to fail with {error}"))
            return
        serve = {EMR_SYNC: self._spark_job, ATHENA_SYNC: self._query, LAMBDA_INVOKE: self._invoke}
        try:
            output = serve[task["resource"]](params)
        except FunctionError as exc:
            self._report(token, failure=(exc.error_type, exc.cause))
            return
        self.before_success(state)
        self._report(token, output=output)

    def _report(
        self, token: str, output: Any = None, failure: tuple[str, str] | None = None
    ) -> None:
        try:
            if failure:
                self.sfn.send_task_failure(taskToken=token, error=failure[0], cause=failure[1])
            else:
                self.sfn.send_task_success(taskToken=token, output=json.dumps(output, default=str))
        except (self.sfn.exceptions.InvalidToken, self.sfn.exceptions.TaskDoesNotExist):
            # The other branch of a Parallel failed first and the task was cancelled: nobody
            # waits for this answer any more, as with a real service.
            pass

    def _spark_job(self, params: dict[str, Any]) -> dict[str, Any]:
        started = self.emr.start_job_run(**camel_case_keys(params))
        run = self.emr.get_job_run(
            applicationId=started["applicationId"], jobRunId=started["jobRunId"]
        )
        return {"JobRun": run["jobRun"]}

    def _query(self, params: dict[str, Any]) -> dict[str, Any]:
        query_id = self.athena.start_query_execution(**params)["QueryExecutionId"]
        return self.athena.get_query_execution(QueryExecutionId=query_id)

    def _invoke(self, params: dict[str, Any]) -> dict[str, Any]:
        try:
            payload = self.functions[params["FunctionName"]](params["Payload"])
        except Exception as exc:
            raise FunctionError(exc) from exc
        return {"StatusCode": 200, "Payload": payload}


class FunctionError(Exception):
    """An unhandled error of a Lambda function, as Lambda reports it: the error is its
    errorType (the exception's class name), the cause the JSON of errorMessage, errorType and
    stackTrace. https://docs.aws.amazon.com/lambda/latest/dg/python-exceptions.html
    https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html"""

    def __init__(self, raised: Exception) -> None:
        self.error_type = type(raised).__name__
        self.cause = json.dumps(
            {
                "errorMessage": str(raised),
                "errorType": self.error_type,
                "stackTrace": traceback.format_tb(raised.__traceback__),
            }
        )
        super().__init__(self.error_type)
