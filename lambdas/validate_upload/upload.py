"""What ValidateUpload does with one uploaded object, as plain functions over boto3 clients.

Each object created under ``raw/<dataset>/…`` (one S3 "Object Created" event through
EventBridge) is handled once per version:

1. read exactly the version the event names (GetObject with its ``version-id``: the bucket is
   versioned, so a key overwritten while the event waits is still validated as uploaded);
2. skip what the ledger (carrental.aws.ledger) already knows: this version recorded, or a later
   upload of the key (a late event); a replayed rejection, whose evidence is in quarantine;
3. mark the upload as being validated (the run scheduler waits while any upload is), validate
   it as a stream with the shared validation core and, as it goes, stage it as typed Parquet in
   the function's /tmp (carrental.staging);
4. accepted: store ``staged/v1/<dataset>/<sha256>.parquet`` unless that content is staged
   already, then record the file in the ledger (a conditional write: an upload superseded while
   it was validated changes nothing); rejected: copy the version to quarantine with its error
   report, under a stamp unique to this upload (event time and version id), and alert;
5. end the mark, stamp the activity, and ask for a run after the settle window (an SQS message
   with DelaySeconds): the scheduler starts one run once uploads have been quiet that long.

A replayed event (EventBridge delivers at least once) validates nothing but still asks for a
run (harmless: the scheduler starts nothing new for known inputs). A Lambda retry after a
crash validates again: its mark takes over the crashed attempt's.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Tracer
from botocore.exceptions import ClientError

from carrental import lake
from carrental.aws.lake_bucket import alert, exists, is_not_there, keep_evidence, put_staged
from carrental.aws.ledger import Arrival, Ledger, request_run
from carrental.contracts import DATASETS
from carrental.inputs import InputFile
from carrental.staging import StagedWriter
from carrental.validation import (
    DEFAULT_REJECT_THRESHOLD,
    FileVerdict,
    validate_stream,
)

logger = Logger(child=True)
# The handler's Tracer, shared: each step below is a subsegment of the invocation's trace. A step
# that returns the open upload or a verdict keeps it out of the trace (capture_response=False:
# serialising would read the stream, and a verdict can be long):
# https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/#reusing-tracer-across-your-code
tracer = Tracer()

# Measured on `carrental generate --scale 25 --seed 1` (validate_stream with a StagedWriter sink,
# 2026-12-01): a rentals file's staged Parquet is 0.65 of its CSV's size (typed values and the text of every column that is not a
# string), the duplicate-key check spills about 0.2 of it past 32 MB of keys; both live in /tmp
# until the function ends. With a margin, a file needs 0.9 of its size in /tmp.
STAGING_DISK_PER_FILE_BYTE = 0.9
# What the runtime and the layers' own temporary files may use of /tmp.
RESERVED_TMP_BYTES = 256 * 1024 * 1024
# A mark lives in the table this long after it starts (DynamoDB's time to live deletes it).
MARK_LIFETIME = timedelta(days=1)


def max_upload_bytes(ephemeral_storage_mb: int) -> int:
    """The largest upload the function can stage in an /tmp of this size."""
    usable = ephemeral_storage_mb * 1024 * 1024 - RESERVED_TMP_BYTES
    return int(usable / STAGING_DISK_PER_FILE_BYTE)


@dataclass(frozen=True)
class Settings:
    alert_topic_arn: str
    ledger_table: str
    run_request_queue_url: str
    settle_seconds: int
    staging_dir: Path
    max_upload_bytes: int
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            alert_topic_arn=env["ALERT_TOPIC_ARN"],
            ledger_table=env["LEDGER_TABLE_NAME"],
            run_request_queue_url=env["RUN_REQUEST_QUEUE_URL"],
            settle_seconds=int(env["SETTLE_SECONDS"]),
            staging_dir=Path(env.get("STAGING_DIR", "/tmp/carrental-staging")),
            max_upload_bytes=max_upload_bytes(int(env["EPHEMERAL_STORAGE_MB"])),
            reject_threshold=float(env.get("REJECT_THRESHOLD", DEFAULT_REJECT_THRESHOLD)),
        )


@dataclass(frozen=True)
class Aws:
    s3: object
    sns: object
    dynamodb: object
    sqs: object


@dataclass(frozen=True)
class Upload:
    """One S3 "Object Created" event (detail.object: key, version-id, etag, sequencer):
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html. `key_as_sent` may
    be URL-encoded (spaces as '+', unicode as %XX) or not, depending on the sender: both
    readings are tried."""

    bucket: str
    key_as_sent: str
    version_id: str | None
    etag: str
    sequencer: str
    event_time: datetime

    @property
    def key_candidates(self) -> tuple[str, ...]:
        decoded = unquote_plus(self.key_as_sent)
        return (decoded,) if decoded == self.key_as_sent else (decoded, self.key_as_sent)


@dataclass(frozen=True)
class UploadedObject:
    """The uploaded version, open for streaming."""

    upload: Upload
    key: str
    size: int
    body: object  # botocore StreamingBody

    @property
    def arrival(self) -> Arrival:
        u = self.upload
        return Arrival(self.key, u.version_id, u.sequencer, u.event_time)

    @property
    def stamp(self) -> str:
        """Unique to this upload: its quarantine evidence never overwrites another's."""
        return f"{lake.time_stamp(self.upload.event_time)}-{self.upload.version_id or self.upload.etag}"


@dataclass
class Outcome:
    status: str  # ignored | refused | missing | duplicate | superseded | accepted | rejected
    key: str
    version_id: str | None = None
    dataset: str | None = None
    reason: str = ""
    verdict: FileVerdict | None = None
    change: str | None = None  # what an accepted file changed: added | replaced | unchanged
    staged_key: str | None = None
    quarantine_key: str | None = None
    run_requested_in: int | None = None  # seconds until the requested run check

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "key": self.key,
            "version_id": self.version_id,
            "dataset": self.dataset,
            "reason": self.reason,
            "rows": self.verdict.rows if self.verdict else None,
            "change": self.change,
            "staged_key": self.staged_key,
            "quarantine_key": self.quarantine_key,
            "run_requested_in": self.run_requested_in,
        }


def ignore_reason(key: str) -> str | None:
    if not key.startswith(f"{lake.RAW}/"):
        return "not under raw/"
    if key.endswith("/"):
        return "a folder marker"
    if not key.lower().endswith(".csv"):
        return "not a .csv file"
    return None


@tracer.capture_method(capture_response=False)
def process_upload(
    upload: Upload, settings: Settings, aws: Aws, clock: Callable[[], datetime], attempt: str
) -> Outcome:
    """Handle one upload event; `attempt` names this invocation (its request id)."""
    key = upload.key_candidates[0]
    reason = ignore_reason(key)
    if reason:
        logger.info("upload ignored", extra={"reason": reason})
        return Outcome("ignored", key, upload.version_id, reason=reason)
    unreadable = lake.hadoop_unreadable(key)
    if unreadable:
        return refuse(aws, settings, upload, key, unreadable)
    uploaded = open_upload(aws.s3, upload)
    if uploaded is None:
        return Outcome("missing", key, upload.version_id, reason="this version no longer exists")
    with closing(uploaded.body):
        return handle(uploaded, settings, aws, clock, attempt)


@tracer.capture_method(capture_response=False)
def open_upload(s3, upload: Upload) -> UploadedObject | None:
    """The event's version, trying the key as decoded and as sent; None if it is gone (deleted
    since the event). A version id needs s3:GetObjectVersion; a missing one is NoSuchVersion:
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html"""
    version = {"VersionId": upload.version_id} if upload.version_id else {}
    for key in upload.key_candidates:
        try:
            response = s3.get_object(Bucket=upload.bucket, Key=key, **version)
        except ClientError as exc:
            if not is_not_there(exc):
                raise
            continue
        return UploadedObject(upload, key, response["ContentLength"], response["Body"])
    logger.warning("the uploaded version no longer exists")
    return None


def handle(
    uploaded: UploadedObject,
    settings: Settings,
    aws: Aws,
    clock: Callable[[], datetime],
    attempt: str,
) -> Outcome:
    key, version_id = uploaded.key, uploaded.upload.version_id
    try:
        dataset, known = lake.infer_dataset(key), True
    except ValueError:
        dataset, known = key.split("/")[1], False  # ignore_reason: key is raw/<folder>/…
    if uploaded.size > settings.max_upload_bytes:
        return refuse(
            aws,
            settings,
            uploaded.upload,
            key,
            f"the file has {uploaded.size:,} bytes; ValidateUpload stages files of up to "
            f"{settings.max_upload_bytes:,} bytes (its /tmp): split it into smaller files "
            "(every rentals file joins the history)",
        )
    ledger = Ledger(aws.dynamodb, settings.ledger_table)
    if known:
        entry = ledger.entry(dataset, key)
        if entry and uploaded.arrival.is_same_upload(entry.arrival):
            return asked_for_run(
                Outcome("duplicate", key, version_id, dataset, "this version is recorded"),
                settings,
                aws,
            )
        if entry and not uploaded.arrival.is_later_than(entry.arrival):
            logger.info("a later upload is recorded: this late event changes nothing")
            return Outcome("superseded", key, version_id, dataset, "a later upload is recorded")
    report_key = lake.quarantine_keys(dataset, key.rsplit("/", 1)[-1], uploaded.stamp)[1]
    if exists(aws.s3, uploaded.upload.bucket, report_key):
        outcome = Outcome("duplicate", key, version_id, dataset, "this version was rejected")
        outcome.quarantine_key = report_key.removesuffix(".errors.json")
        return asked_for_run(outcome, settings, aws) if known else outcome
    if not known:
        return validate(uploaded, dataset, settings, aws, clock, ledger=None)
    ledger.begin_validating(key, version_id, attempt, clock(), MARK_LIFETIME)
    try:
        outcome = validate(uploaded, dataset, settings, aws, clock, ledger)
    finally:
        ledger.end_validating(key, version_id, attempt, clock())
    return asked_for_run(outcome, settings, aws)


@tracer.capture_method(capture_response=False)
def validate(
    uploaded: UploadedObject,
    dataset: str,
    settings: Settings,
    aws: Aws,
    clock: Callable[[], datetime],
    ledger: Ledger | None,
) -> Outcome:
    bucket, key, version_id = uploaded.upload.bucket, uploaded.key, uploaded.upload.version_id
    writer = StagedWriter(DATASETS[dataset], settings.staging_dir) if ledger else None
    try:
        verdict = validate_stream(
            uploaded.body,
            dataset=dataset,
            source=f"s3://{bucket}/{key}",
            reject_threshold=settings.reject_threshold,
            sink=writer,
        )
        outcome = Outcome(
            "accepted" if verdict.accepted else "rejected",
            key,
            version_id,
            dataset,
            verdict.reason,
            verdict,
        )
        if not verdict.accepted or ledger is None:  # an unknown dataset is never accepted
            outcome.quarantine_key = quarantine(aws, settings, uploaded, verdict)
            return outcome
        accepted_at = clock().isoformat()
        staged = InputFile(
            dataset,
            key,
            verdict.sha256,
            verdict.rows,
            accepted_at,
            # a file's place in the history: when S3 received it, so that files uploaded
            # together keep their upload order whichever is validated first
            uploaded.upload.event_time.isoformat(),
            version_id,
        )
        local = writer.commit(settings.staging_dir / f"{verdict.sha256}.parquet")
        writer = None
        try:
            put_staged(aws.s3, bucket, staged.staged, local)
        finally:
            local.unlink(missing_ok=True)
        outcome.staged_key = staged.staged
        outcome.change = ledger.accept(staged, uploaded.arrival)
        if outcome.change == "superseded":
            outcome.status = "superseded"
            outcome.reason += "; superseded by a later upload while validating: not recorded"
        logger.info(
            "upload accepted", extra={"change": outcome.change, "staged_key": staged.staged}
        )
        return outcome
    finally:
        if writer is not None:
            writer.discard()
        shutil.rmtree(settings.staging_dir, ignore_errors=True)


@tracer.capture_method(capture_response=False)
def asked_for_run(outcome: Outcome, settings: Settings, aws: Aws) -> Outcome:
    outcome.run_requested_in = request_run(
        aws.sqs,
        settings.run_request_queue_url,
        delay_seconds=settings.settle_seconds,
        reason=f"upload {outcome.status}",
        key=outcome.key,
        version_id=outcome.version_id,
    )
    return outcome


@tracer.capture_method
def quarantine(aws: Aws, settings: Settings, uploaded: UploadedObject, verdict: FileVerdict) -> str:
    """Copy the rejected version to quarantine/, write its error report beside it, alert."""
    bucket, key = uploaded.upload.bucket, uploaded.key
    report = {
        **verdict.to_dict(),
        "version_id": uploaded.upload.version_id,
        "uploaded_at": uploaded.upload.event_time.isoformat(),
    }
    kept = keep_evidence(
        aws.s3,
        bucket,
        key=key,
        version_id=uploaded.upload.version_id,
        dataset=verdict.dataset,
        stamp=uploaded.stamp,
        report=report,
    )
    target, report_key = kept or lake.quarantine_keys(
        verdict.dataset, key.rsplit("/", 1)[-1], uploaded.stamp
    )
    alert(
        aws.sns,
        settings.alert_topic_arn,
        f"carrental: rejected {verdict.dataset} upload {key.rsplit('/', 1)[-1]}",
        [
            "carrental rejected an upload; the raw object is unchanged.",
            f"file: s3://{bucket}/{key} (version {uploaded.upload.version_id})",
            f"dataset: {verdict.dataset}",
            f"reason: {verdict.reason}",
            f"quarantined copy: s3://{bucket}/{target}",
            f"error report: s3://{bucket}/{report_key}",
            "",
            verdict.render(),
        ],
    )
    logger.warning("upload rejected", extra={"reason": verdict.reason, "quarantine_key": target})
    return target


@tracer.capture_method
def refuse(aws: Aws, settings: Settings, upload: Upload, key: str, reason: str) -> Outcome:
    """A file the pipeline cannot take (its name, its size): never part of a run; the uploader
    is told why."""
    logger.warning("upload refused", extra={"reason": reason})
    alert(
        aws.sns,
        settings.alert_topic_arn,
        "carrental: refused an upload",
        [
            f"carrental cannot use s3://{upload.bucket}/{key} (version {upload.version_id}): "
            f"{reason}. The object is unchanged and is not part of any run; upload it again "
            "as the message says."
        ],
    )
    return Outcome("refused", key, upload.version_id, reason=reason)
