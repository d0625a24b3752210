"""The run scheduler: when a run starts, and that only one runs at a time (docs/architecture.md).

`start` answers the run requests of the queue (ValidateUpload sends one after each upload,
delayed by the settle window; `finish` sends one when a run ends). It starts a run once

1. no upload is being validated (a fresh ``validating`` mark: ask again after the window),
2. uploads have been quiet for the settle window (ask again when it would end),
3. the run lock is free, or held by a run that ended (whose end event is still on its way) or
   that never started (its starter died before StartExecution, a few minutes ago at least),
4. the ledger's inputs make a complete manifest that differs from the last run's (identical
   re-uploads start nothing),

by writing ``runs/<run_id>/manifest.json`` and starting the workflow with the run id as the
execution name. Runs never overlap: the lock is one conditional write, so two requests handled
at once start one run; a burst of uploads starts one run once it has settled; an upload during a
run leads to one follow-up run after it.

`finish` handles the end of an execution (EventBridge's "Step Functions Execution Status
Change"): it frees the lock, removes the folders and the report of a run that did not succeed
(nothing of a failed run may look like a real one), and asks for a run, for the uploads that
arrived meanwhile.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger, Tracer
from botocore.exceptions import ClientError

from carrental import lake
from carrental.aws.lake_bucket import delete_runs, read_record
from carrental.aws.ledger import Ledger, Lock, request_run
from carrental.contracts import DEFAULT_REJECT_THRESHOLD
from carrental.inputs import MissingInputs

logger = Logger(child=True)
# The handlers' Tracer, shared: each step below is a subsegment of the invocation's trace; a
# decision lists the manifest's files, which stay out of the trace (capture_response=False):
# https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/#reusing-tracer-across-your-code
tracer = Tracer()

RUNNING, SUCCEEDED = "RUNNING", "SUCCEEDED"
# While an upload is being validated, look again this often at least (its own request comes when
# it ends; this one is for a validation that dies), even with a settle window of 0.
MIN_RECHECK_SECONDS = 30
# The workflow's PipelineFailed state says "<state> failed: <cause>"
# (stepfunctions/car_rental_pipeline.asl.json).
_FAILED_STATE = re.compile(r"^(\w+) failed: ")


@dataclass(frozen=True)
class Settings:
    state_machine_arn: str
    ledger_table: str
    run_request_queue_url: str
    bucket: str
    settle_seconds: int
    validation_timeout_seconds: int  # ValidateUpload's timeout: older marks are stale
    start_grace_seconds: int  # a lock whose execution does not exist this long is abandoned
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            state_machine_arn=env["STATE_MACHINE_ARN"],
            ledger_table=env["LEDGER_TABLE_NAME"],
            run_request_queue_url=env["RUN_REQUEST_QUEUE_URL"],
            bucket=env["DATA_LAKE_BUCKET"],
            settle_seconds=int(env["SETTLE_SECONDS"]),
            validation_timeout_seconds=int(env["VALIDATION_TIMEOUT_SECONDS"]),
            start_grace_seconds=int(env["START_GRACE_SECONDS"]),
            reject_threshold=float(env.get("REJECT_THRESHOLD", DEFAULT_REJECT_THRESHOLD)),
        )


@dataclass(frozen=True)
class Aws:
    s3: object
    sqs: object
    dynamodb: object
    stepfunctions: object


@dataclass
class Decision:
    """What `start` decided, and why."""

    status: str  # validating | settling | running | starting | busy | missing_inputs | nothing_new | started
    reason: str
    run_id: str | None = None
    execution_arn: str | None = None
    manifest_key: str | None = None
    inputs: list[dict] = field(default_factory=list)  # the manifest's files, for the log
    recheck_in: int | None = None  # seconds until the run request it sent

    def to_dict(self) -> dict:
        return asdict(self)


def execution_arn(state_machine_arn: str, name: str) -> str:
    """An execution's ARN, arn:…:states:<region>:<account>:execution:<state machine>:<name>
    (the "execution" resource type of
    https://docs.aws.amazon.com/service-authorization/latest/reference/list_awsstepfunctions.html):
    known before the execution exists, so a lock needs only the run id."""
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{name}"


def execution_status(stepfunctions, arn: str) -> str | None:
    """RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED…, or None if there is no such execution.
    DescribeExecution "is eventually consistent": an execution started moments ago may not
    show yet: https://docs.aws.amazon.com/step-functions/latest/apireference/API_DescribeExecution.html"""
    try:
        return stepfunctions.describe_execution(executionArn=arn)["status"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        return None


def _ask_again(settings: Settings, aws: Aws, seconds: float, reason: str) -> int:
    return request_run(
        aws.sqs, settings.run_request_queue_url, delay_seconds=seconds, reason=reason
    )


@tracer.capture_method(capture_response=False)
def start(settings: Settings, aws: Aws, now: datetime) -> Decision:
    ledger = Ledger(aws.dynamodb, settings.ledger_table)
    marks = ledger.validating(now, timedelta(seconds=settings.validation_timeout_seconds))
    if marks:
        keys = ", ".join(m["key"] for m in marks[:5])
        decision = Decision("validating", f"{len(marks)} upload(s) being validated: {keys}")
        decision.recheck_in = _ask_again(
            settings, aws, max(settings.settle_seconds, MIN_RECHECK_SECONDS), "validating"
        )
        return decision
    last = ledger.last_activity()
    quiet = (now - last).total_seconds() if last else None
    if quiet is not None and quiet < settings.settle_seconds:
        decision = Decision("settling", f"the last upload ended {quiet:.0f} s ago")
        decision.recheck_in = _ask_again(settings, aws, settings.settle_seconds - quiet, "settling")
        return decision
    lock = ledger.lock()
    holder_ran = False
    if lock.run_id:
        status = execution_status(
            aws.stepfunctions, execution_arn(settings.state_machine_arn, lock.run_id)
        )
        if status == RUNNING:
            return Decision("running", f"run {lock.run_id} is running", lock.run_id)
        abandoned_at = lock.acquired_at + timedelta(seconds=settings.start_grace_seconds)
        if status is None and now < abandoned_at:
            decision = Decision(
                "starting", f"run {lock.run_id} holds the lock and is being started", lock.run_id
            )
            decision.recheck_in = _ask_again(
                settings, aws, (abandoned_at - now).total_seconds(), "starting"
            )
            return decision
        holder_ran = status is not None
        # its end, if any, is handled by its end event
        logger.info(
            "taking the lock over",
            extra={"lock_run_id": lock.run_id, "lock_run_status": status or "never started"},
        )
    return _start_run(settings, aws, ledger, lock, holder_ran, now)


@tracer.capture_method(capture_response=False)
def _start_run(
    settings: Settings, aws: Aws, ledger: Ledger, seen: Lock, holder_ran: bool, now: datetime
) -> Decision:
    run_id = lake.time_stamp(now)
    held = ledger.acquire(run_id, now, seen, holder_ran=holder_ran)
    if held is None:
        return Decision("busy", "another request took the lock first")
    logger.set_correlation_id(run_id)
    try:
        manifest = ledger.inputs().manifest(run_id, now.isoformat(), settings.reject_threshold)
    except MissingInputs as exc:
        ledger.release(run_id, ran=False)
        return Decision("missing_inputs", str(exc))
    if manifest.fingerprint == held.last_fingerprint:
        ledger.release(run_id, ran=False)
        return Decision("nothing_new", "the inputs are those of the last run")
    # Before the execution exists: a run that starts is always one whose inputs are known.
    ledger.set_fingerprint(run_id, manifest.fingerprint)
    manifest_key = lake.manifest_key(run_id)
    aws.s3.put_object(
        Bucket=settings.bucket,
        Key=manifest_key,
        Body=manifest.to_json().encode("utf-8"),
        ContentType="application/json",
    )
    execution_input = json.dumps(
        {"run_id": run_id, "bucket": settings.bucket, "manifest_key": manifest_key},
        sort_keys=True,
        separators=(",", ":"),
    )
    try:
        # "Executions with the same name and input are considered idempotent": the SDK's own
        # retry of this call starts nothing twice:
        # https://docs.aws.amazon.com/step-functions/latest/apireference/API_StartExecution.html
        arn = aws.stepfunctions.start_execution(
            stateMachineArn=settings.state_machine_arn, name=run_id, input=execution_input
        )["executionArn"]
    except ClientError as exc:
        ledger.release(run_id, ran=False)
        if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
            # a name is taken for 90 days after its execution closes (an execution started
            # by hand under this name): this request fails and its retry takes a later second
            raise RuntimeError(
                f"an execution named {run_id} exists already; the request is retried"
            ) from exc
        raise
    ledger.record_execution(run_id, arn)
    inputs = [
        {"dataset": f.dataset, "key": f.key, "version_id": f.version_id, "sha256": f.sha256}
        for f in manifest.inputs
    ]
    return Decision("started", f"run {run_id} started", run_id, arn, manifest_key, inputs)


@dataclass
class Ending:
    """What `finish` did at the end of an execution."""

    run_id: str
    status: str
    released: bool
    failed_state: str | None = None
    deleted_objects: int = 0
    recheck_in: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def failed_state(stepfunctions, arn: str, status: str) -> str:
    """The workflow state a run failed in, from the execution's cause (DescribeExecution's
    `cause`: "The cause string if the state machine execution failed")."""
    if status != "FAILED":
        return status.lower()  # timed_out or aborted: no state of ours reported it
    cause = stepfunctions.describe_execution(executionArn=arn).get("cause") or ""
    match = _FAILED_STATE.match(cause)
    return match[1] if match else "unknown"


@tracer.capture_method
def finish(detail: Mapping, settings: Settings, aws: Aws) -> Ending:
    """The end of one execution of the workflow (the event's `detail`: name, status,
    executionArn): https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html"""
    run_id, status = detail["name"], detail["status"]
    ledger = Ledger(aws.dynamodb, settings.ledger_table)
    ending = Ending(run_id, status, ledger.release(run_id, ran=True))
    if status != SUCCEEDED:
        ending.failed_state = failed_state(aws.stepfunctions, detail["executionArn"], status)
        published = {run.run_id for run in read_record(aws.s3, settings.bucket)}
        if lake.RUN_ID_PATTERN.match(run_id) and run_id not in published:
            ending.deleted_objects = delete_runs(aws.s3, settings.bucket, [run_id])
    ending.recheck_in = request_run(
        aws.sqs,
        settings.run_request_queue_url,
        delay_seconds=0,
        reason=f"run {status.lower()}",
        run_id=run_id,
    )
    return ending
