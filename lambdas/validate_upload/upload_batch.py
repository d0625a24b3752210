"""What ValidateUpload does with one uploaded object, as plain functions over boto3 clients.

Each object created under ``raw/<dataset>/…`` is validated as a stream (never downloaded whole)
by the shared validation core. A rejected file is copied to ``quarantine/<dataset>/…`` with a
``.errors.json`` report beside it and an SNS alert; the raw object is never modified.

Batches live in the DynamoDB table BATCH_TABLE_NAME (keys pk/sk), one item per dataset,
``pk="dataset", sk=<dataset>``, describing that dataset's *current* file: ``object_key``,
``etag``, ``status`` (validating | accepted | rejected), ``rows``, ``reason``, ``event_time``
and, once a run has used the file, ``consumed_by`` (the run id).

1. begin: the upload becomes its dataset's current file, status ``validating``. A conditional
   write keeps an older event (delivered late) from overriding a newer upload, and recognises a
   replayed event for a file that already has a verdict (not validated again).
2. validate, then record the verdict, only if the file is still current (a newer upload may
   have superseded it meanwhile).
3. launch: a batch is complete when each of the four datasets has an *accepted* current file
   that no run has consumed; a file being validated or rejected blocks it. The workflow is
   started with execution name = run id = a hash of the four keys and ETags.
4. claim: one transaction marks the four files consumed by that run id, each on condition that
   it is still current and unconsumed. The invocation whose claim succeeds reports the start.

Why four files uploaded at once start exactly one run that sees all four: only an invocation
that finds all four accepted launches anything, and it launches the batch it read. Two
invocations finishing together compute the same name from the same content, and Step
Functions starts one execution for one name (the same name and input is idempotent while
running; ExecutionAlreadyExists afterwards); only one claim succeeds. A replayed event, a
Lambda retry after a crash between launch and claim, or re-uploading identical content all
lead to the same name, so nothing new starts. A run consumes its files: the next run waits
for four new files (uploading only a new rentals file does not re-run with the previous
dimensions; re-upload them too, or start an execution by hand). A file whose validation keeps
failing stays ``validating`` (its event ends in the dead-letter queue after the retries) and
blocks batches until its dataset gets a new upload: nothing unvalidated reaches a run.
Known limit: two uploads to the same dataset within one second (the event time's resolution)
are ordered by processing, not by upload.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from contextlib import closing
from dataclasses import dataclass
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from carrental.contracts import DATASETS
from carrental.lake import check_run_id, hadoop_unreadable
from carrental.validation import (
    DEFAULT_REJECT_THRESHOLD,
    FileVerdict,
    infer_dataset,
    quarantine_names,
    validate_stream,
)

logger = Logger(child=True)

DATASET_PK = "dataset"
# SNS subjects must be ASCII, at most 100 characters; the message carries the details.
_SUBJECT_LIMIT = 100
_MESSAGE_LIMIT = 200_000  # SNS accepts 256 KB
_CONFLICT_RETRIES = 4


@dataclass(frozen=True)
class Settings:
    state_machine_arn: str
    alert_topic_arn: str
    batch_table: str
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            state_machine_arn=env["STATE_MACHINE_ARN"],
            alert_topic_arn=env["ALERT_TOPIC_ARN"],
            batch_table=env["BATCH_TABLE_NAME"],
            reject_threshold=float(env.get("REJECT_THRESHOLD", DEFAULT_REJECT_THRESHOLD)),
        )


@dataclass(frozen=True)
class Aws:
    s3: object
    sns: object
    dynamodb: object
    stepfunctions: object


@dataclass(frozen=True)
class Upload:
    """One S3 "Object Created" event. `key_as_sent` may be URL-encoded (spaces as '+',
    unicode as %XX) or not, depending on the sender: both readings are tried."""

    bucket: str
    key_as_sent: str
    etag: str
    event_time: str

    @property
    def key_candidates(self) -> tuple[str, ...]:
        decoded = unquote_plus(self.key_as_sent)
        return (decoded,) if decoded == self.key_as_sent else (decoded, self.key_as_sent)


@dataclass(frozen=True)
class UploadedObject:
    """The uploaded version, open for streaming."""

    bucket: str
    key: str
    etag: str
    event_time: str
    body: object  # botocore StreamingBody


@dataclass
class Outcome:
    status: str  # ignored | refused | missing | duplicate | superseded | accepted | rejected
    key: str
    dataset: str | None = None
    reason: str = ""
    verdict: FileVerdict | None = None
    quarantine_key: str | None = None
    run_id: str | None = None
    execution_arn: str | None = None
    run_started: bool = False

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "key": self.key,
            "dataset": self.dataset,
            "reason": self.reason,
            "rows": self.verdict.rows if self.verdict else None,
            "quarantine_key": self.quarantine_key,
            "run_id": self.run_id,
            "execution_arn": self.execution_arn,
            "run_started": self.run_started,
        }

    def add_batch(self, start: BatchStart | None) -> None:
        if start:
            self.run_id = start.run_id
            self.execution_arn = start.execution_arn
            self.run_started = start.started


@dataclass(frozen=True)
class BatchStart:
    run_id: str
    execution_arn: str
    started: bool  # False: the execution already existed (a race or a replay)


def ignore_reason(key: str) -> str | None:
    if not key.startswith("raw/"):
        return "not under raw/"
    if key.endswith("/"):
        return "a folder marker"
    if not key.lower().endswith(".csv"):
        return "not a .csv file"
    return None


def process_upload(upload: Upload, settings: Settings, aws: Aws) -> Outcome:
    reason = ignore_reason(upload.key_candidates[0])
    if reason:
        logger.info(f"ignored: {reason}")
        return Outcome("ignored", upload.key_candidates[0], reason=reason)
    unreadable = hadoop_unreadable(upload.key_candidates[0])
    if unreadable:
        return refuse(aws, settings, upload.bucket, upload.key_candidates[0], unreadable)
    uploaded = open_upload(aws.s3, upload)
    if uploaded is None:
        return Outcome(
            "missing", upload.key_candidates[0], reason="gone or overwritten since the event"
        )
    with closing(uploaded.body):
        return validate_upload(uploaded, settings, aws)


def validate_upload(uploaded: UploadedObject, settings: Settings, aws: Aws) -> Outcome:
    key, table = uploaded.key, settings.batch_table
    try:
        dataset, known = infer_dataset(key), True
    except ValueError:
        dataset, known = key.split("/")[1], False  # ignore_reason: key is raw/<folder>/…
    if known:
        state = begin_validation(aws.dynamodb, table, dataset, uploaded)
        if state != "validate":
            logger.info(f"{state} event: not validated again")
            outcome = Outcome(state, key, dataset, reason=f"{state} event")
            if state == "duplicate":  # finish what a crashed earlier attempt may have left
                outcome.add_batch(start_batch_if_complete(aws, settings, uploaded.bucket))
            return outcome
    verdict = validate_stream(
        uploaded.body,
        dataset=dataset,
        source=f"s3://{uploaded.bucket}/{key}",
        reject_threshold=settings.reject_threshold,
    )
    status = "accepted" if verdict.accepted else "rejected"
    outcome = Outcome(status, key, dataset, reason=verdict.reason, verdict=verdict)
    if not verdict.accepted:
        outcome.quarantine_key = quarantine(aws, settings, uploaded, verdict)
    if not known:
        return outcome
    if not record_verdict(aws.dynamodb, table, dataset, uploaded, verdict):
        outcome.reason += "; superseded by a newer upload while validating"
    elif verdict.accepted:
        outcome.add_batch(start_batch_if_complete(aws, settings, uploaded.bucket))
    return outcome


def _dataset_key(dataset: str) -> dict:
    return {"pk": {"S": DATASET_PK}, "sk": {"S": dataset}}


def begin_validation(dynamodb, table: str, dataset: str, uploaded: UploadedObject) -> str:
    """Make the upload its dataset's current file, status validating. Returns ``validate``,
    ``duplicate`` (this file already has a verdict) or ``superseded`` (a newer upload is
    current)."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key=_dataset_key(dataset),
            UpdateExpression=(
                "SET object_key = :key, etag = :etag, #status = :validating, event_time = :time"
                " REMOVE consumed_by, #rows, reason"
            ),
            ConditionExpression=(
                "attribute_not_exists(event_time) OR (event_time <= :time AND NOT "
                "(object_key = :key AND etag = :etag AND #status <> :validating))"
            ),
            ExpressionAttributeNames={"#status": "status", "#rows": "rows"},
            ExpressionAttributeValues={
                ":key": {"S": uploaded.key},
                ":etag": {"S": uploaded.etag},
                ":validating": {"S": "validating"},
                ":time": {"S": uploaded.event_time},
            },
        )
        return "validate"
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
    current = dynamodb.get_item(TableName=table, Key=_dataset_key(dataset), ConsistentRead=True)
    item = current.get("Item", {})
    same = (item.get("object_key", {}).get("S"), item.get("etag", {}).get("S")) == (
        uploaded.key,
        uploaded.etag,
    )
    return "duplicate" if same else "superseded"


def record_verdict(
    dynamodb, table: str, dataset: str, uploaded: UploadedObject, verdict: FileVerdict
) -> bool:
    """Store the verdict if the upload is still its dataset's current file being validated."""
    try:
        dynamodb.update_item(
            TableName=table,
            Key=_dataset_key(dataset),
            UpdateExpression="SET #status = :status, #rows = :rows, reason = :reason",
            ConditionExpression="object_key = :key AND etag = :etag AND #status = :validating",
            ExpressionAttributeNames={"#status": "status", "#rows": "rows"},
            ExpressionAttributeValues={
                ":key": {"S": uploaded.key},
                ":etag": {"S": uploaded.etag},
                ":status": {"S": "accepted" if verdict.accepted else "rejected"},
                ":rows": {"N": str(verdict.rows)},
                ":reason": {"S": verdict.reason[:1000]},
                ":validating": {"S": "validating"},
            },
        )
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        logger.info("superseded by a newer upload while validating: verdict not recorded")
        return False


def open_upload(s3, upload: Upload) -> UploadedObject | None:
    """The uploaded version, trying the key as decoded and as sent; None if the object is gone
    or was overwritten since the event (the newer upload has its own event)."""
    condition = {"IfMatch": f'"{upload.etag}"'} if upload.etag else {}
    for key in upload.key_candidates:
        try:
            response = s3.get_object(Bucket=upload.bucket, Key=key, **condition)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "PreconditionFailed":
                logger.info("the object changed since the event: a newer event follows")
                return None
            if code not in ("NoSuchKey", "404"):
                raise
            continue
        etag = response["ETag"].strip('"')
        return UploadedObject(upload.bucket, key, etag, upload.event_time, response["Body"])
    logger.warning("the object no longer exists")
    return None


def quarantine(aws: Aws, settings: Settings, uploaded: UploadedObject, verdict: FileVerdict) -> str:
    """Copy the rejected object to quarantine/, write its error report beside it, alert."""
    bucket, key = uploaded.bucket, uploaded.key
    target, report = quarantine_names(key, verdict.dataset)
    aws.s3.copy(
        {"Bucket": bucket, "Key": key},
        bucket,
        target,
        ExtraArgs={"CopySourceIfMatch": f'"{uploaded.etag}"'},
    )
    aws.s3.put_object(
        Bucket=bucket,
        Key=report,
        Body=json.dumps(verdict.to_dict(), indent=2, ensure_ascii=False).encode(),
        ContentType="application/json",
    )
    message = "\n".join(
        [
            "carrental rejected an upload; the raw object is unchanged.",
            f"file: s3://{bucket}/{key}",
            f"dataset: {verdict.dataset}",
            f"reason: {verdict.reason}",
            f"quarantined copy: s3://{bucket}/{target}",
            f"error report: s3://{bucket}/{report}",
            "",
            verdict.render(),
        ]
    )
    subject = f"carrental: rejected {verdict.dataset} upload {key.rsplit('/', 1)[-1]}"
    aws.sns.publish(
        TopicArn=settings.alert_topic_arn,
        Subject=subject.encode("ascii", "replace").decode()[:_SUBJECT_LIMIT],
        Message=message[:_MESSAGE_LIMIT],
    )
    logger.warning(f"rejected: {verdict.reason}", extra={"quarantine_key": target})
    return target


def refuse(aws: Aws, settings: Settings, bucket: str, key: str, reason: str) -> Outcome:
    """A key the Spark jobs could not read: never part of a batch; the uploader is told why."""
    logger.warning(f"refused: {reason}")
    aws.sns.publish(
        TopicArn=settings.alert_topic_arn,
        Subject="carrental: refused an upload (file name)",
        Message=(
            f"carrental cannot use s3://{bucket}/{key}: {reason}. The object is unchanged and "
            "is not part of any run; upload it again under another name."
        )[:_MESSAGE_LIMIT],
    )
    return Outcome("refused", key, reason=reason)


def batch_run_id(inputs: dict[str, str], etags: dict[str, str]) -> str:
    """Deterministic from the batch's content: the same four files give the same run id."""
    content = "\n".join(f"{d}\0{inputs[d]}\0{etags[d]}" for d in sorted(inputs))
    return check_run_id(f"batch-{hashlib.sha256(content.encode()).hexdigest()[:40]}")


def complete_batch(dynamodb, table: str) -> tuple[dict[str, str], dict[str, str]] | None:
    """(keys, etags) per dataset if every dataset has an accepted, unconsumed current file."""
    items = dynamodb.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": DATASET_PK}},
        ConsistentRead=True,
    )["Items"]
    current = {item["sk"]["S"]: item for item in items}
    for dataset in DATASETS:
        item = current.get(dataset)
        if item is None or item["status"]["S"] != "accepted" or "consumed_by" in item:
            return None
    inputs = {d: current[d]["object_key"]["S"] for d in DATASETS}
    etags = {d: current[d]["etag"]["S"] for d in DATASETS}
    return inputs, etags


@dataclass(frozen=True)
class LaunchedBatch:
    run_id: str
    execution_arn: str
    inputs: dict[str, str]
    etags: dict[str, str]
    new_content: bool  # False: a run of these exact files had already finished


def start_batch_if_complete(aws: Aws, settings: Settings, bucket: str) -> BatchStart | None:
    launched = launch_batch(aws, settings, bucket)
    if launched is None:
        return None
    return claim_batch(aws.dynamodb, settings.batch_table, launched)


def launch_batch(aws: Aws, settings: Settings, bucket: str) -> LaunchedBatch | None:
    """Start the workflow on the complete batch, if there is one (idempotent by its name)."""
    batch = complete_batch(aws.dynamodb, settings.batch_table)
    if batch is None:
        logger.info("batch not complete yet")
        return None
    inputs, etags = batch
    run_id = batch_run_id(inputs, etags)
    logger.append_keys(batch=run_id)
    execution_input = json.dumps(
        {"run_id": run_id, "bucket": bucket, "inputs": inputs, "etags": etags},
        sort_keys=True,
        separators=(",", ":"),
    )
    try:
        # The same name and input while running returns the running execution.
        arn = aws.stepfunctions.start_execution(
            stateMachineArn=settings.state_machine_arn, name=run_id, input=execution_input
        )["executionArn"]
        return LaunchedBatch(run_id, arn, inputs, etags, new_content=True)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionAlreadyExists":
            raise
    logger.info("a run of these exact files already finished: nothing new to start")
    arn = execution_arn(settings.state_machine_arn, run_id)
    return LaunchedBatch(run_id, arn, inputs, etags, new_content=False)


def claim_batch(dynamodb, table: str, launched: LaunchedBatch) -> BatchStart:
    """Mark the batch's files consumed; the invocation that does it reports the start."""
    consumed = consume_batch(dynamodb, table, launched.inputs, launched.etags, launched.run_id)
    started = consumed and launched.new_content
    if started:
        logger.info(
            "batch complete: workflow started", extra={"execution_arn": launched.execution_arn}
        )
    return BatchStart(launched.run_id, launched.execution_arn, started)


def execution_arn(state_machine_arn: str, name: str) -> str:
    return f"{state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"


def consume_batch(dynamodb, table: str, inputs: dict, etags: dict, run_id: str) -> bool:
    """Mark the four files used by run_id, all or none. False: another invocation already
    did (a race on the same batch), or a file was replaced meanwhile (its new file then
    completes a batch of its own with the three others)."""
    updates = [
        {
            "Update": {
                "TableName": table,
                "Key": _dataset_key(dataset),
                "UpdateExpression": "SET consumed_by = :run",
                "ConditionExpression": (
                    "object_key = :key AND etag = :etag AND #status = :accepted AND "
                    "attribute_not_exists(consumed_by)"
                ),
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":key": {"S": inputs[dataset]},
                    ":etag": {"S": etags[dataset]},
                    ":accepted": {"S": "accepted"},
                    ":run": {"S": run_id},
                },
            }
        }
        for dataset in DATASETS
    ]
    attempt = 0
    while True:
        try:
            dynamodb.transact_write_items(TransactItems=updates)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            reasons = {r.get("Code") for r in exc.response.get("CancellationReasons", [])}
            if "TransactionConflict" not in reasons:
                logger.info("batch already consumed by another invocation, or a file replaced")
                return False
            # Two transactions on the same items at once can both be cancelled: try again.
            # Out of retries, fail: the Lambda's retry (same run id) finishes the job.
            if attempt == _CONFLICT_RETRIES:
                raise
            time.sleep(0.05 * 2**attempt)
            attempt += 1
