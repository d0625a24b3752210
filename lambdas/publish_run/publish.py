"""What PublishRun does at the end of a run that got this far (tables crawled, current views
replaced, report written), as plain functions over boto3 clients:

1. read the run's ``run_inputs`` table (processed/run_inputs/run_id=<id>/): the rentals files
   its gate held back (carrental.spark.jobs);
2. quarantine each of them: a copy of the version its manifest names and an error report with
   the reason, under the run id as stamp, and an alert; then take it out of the ledger, unless
   the ledger holds other content under its key by now (a correction gets its own chance); the
   run lock then records the run's inputs without them, so withdrawing them starts no new run;
3. publish: one PutObject of published/runs.jsonl naming the run as current. This single write
   is the publish: the current views read the record at query time;
4. prune: the table folders and reports of published runs beyond the newest `kept_runs`, and of
   runs that never published. A failure here is logged and counted, and changes nothing the
   analysts see: the run is published, the next publish prunes again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime

import awswrangler as wr
import boto3
import pandas as pd
from aws_lambda_powertools import Logger, Tracer
from botocore.exceptions import BotoCoreError, ClientError

from carrental import lake
from carrental.aws.lake_bucket import (
    alert,
    delete_runs,
    keep_evidence,
    read_record,
    runs_with_folders,
    write_record,
)
from carrental.aws.ledger import Ledger, effective_fingerprint
from carrental.inputs import HELD_BACK, Manifest, held_back_report
from carrental.publishing import with_published

logger = Logger(child=True)
# The handler's Tracer, shared: each step below is a subsegment of the invocation's trace; the
# run_inputs table stays out of it (capture_response=False):
# https://docs.powertools.aws.dev/lambda/python/latest/core/tracer/#reusing-tracer-across-your-code
tracer = Tracer()

REQUEST_FIELDS = ("run_id", "bucket", "manifest_key")


@dataclass(frozen=True)
class Settings:
    alert_topic_arn: str
    ledger_table: str
    kept_runs: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            alert_topic_arn=env["ALERT_TOPIC_ARN"],
            ledger_table=env["LEDGER_TABLE_NAME"],
            kept_runs=int(env["KEPT_PUBLISHED_RUNS"]),
        )


@dataclass(frozen=True)
class Aws:
    s3: object
    sns: object
    dynamodb: object
    boto3_session: boto3.Session | None = None  # awswrangler's


@dataclass
class Published:
    run_id: str
    published_at: str
    held_back: list[str] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)
    pruned_runs: list[str] = field(default_factory=list)
    prune_error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def parse_request(event: Mapping) -> dict[str, str]:
    missing = [name for name in REQUEST_FIELDS if not event.get(name)]
    if missing:
        raise ValueError(f"publish request lacks {', '.join(missing)}: {dict(event)}")
    request = {name: str(event[name]) for name in REQUEST_FIELDS}
    lake.check_run_id(request["run_id"])
    if request["manifest_key"] != lake.manifest_key(request["run_id"]):
        raise ValueError(
            f"manifest_key {request['manifest_key']!r} is not run {request['run_id']}'s manifest "
            f"({lake.manifest_key(request['run_id'])})"
        )
    return request


@tracer.capture_method(capture_response=False)
def read_run_inputs(bucket: str, run_id: str, boto3_session: boto3.Session | None) -> pd.DataFrame:
    """The run's run_inputs rows (Spark's Parquet files; its _SUCCESS marker is no data)."""
    folder = lake.table_run_path(lake.PROCESSED, "run_inputs", run_id)
    return wr.s3.read_parquet(
        path=f"s3://{bucket}/{folder}/", path_suffix=".parquet", boto3_session=boto3_session
    )


@tracer.capture_method
def hold_back(
    request: Mapping[str, str],
    manifest: Manifest,
    run_inputs: pd.DataFrame,
    settings: Settings,
    aws: Aws,
    ledger: Ledger,
    published: Published,
) -> None:
    bucket, run_id = request["bucket"], request["run_id"]
    files = {f.key: f for f in manifest.inputs}
    for row in run_inputs[run_inputs["status"] == HELD_BACK].to_dict("records"):
        key = row["source_file"]
        version_id = files[key].version_id if key in files else None
        report = held_back_report(run_id, row, version_id)
        kept = keep_evidence(
            aws.s3,
            bucket,
            key=key,
            version_id=version_id,
            dataset=row["dataset"],
            stamp=run_id,
            report=report,
        )
        published.held_back.append(key)
        if ledger.withdraw(key, row["content_sha256"]):
            published.withdrawn.append(key)
        if kept is None:  # this run's retry: the evidence and its alert exist already
            continue
        copy_key, report_key = kept
        alert(
            aws.sns,
            settings.alert_topic_arn,
            f"carrental: held back {row['dataset']} file {key.rsplit('/', 1)[-1]}",
            [
                f"carrental run {run_id} left a rentals file out of its tables; they were "
                "published without it.",
                f"file: s3://{bucket}/{key} (version {version_id})",
                f"reason: {row['reason']}",
                f"quarantined copy: s3://{bucket}/{copy_key}",
                f"error report: s3://{bucket}/{report_key}",
                "It is out of the inputs now; upload a corrected file under the same name to "
                "bring it back.",
            ],
        )
        logger.warning(
            "input held back",
            extra={"key": key, "reason": row["reason"], "quarantine_key": copy_key},
        )
    if published.held_back:
        ledger.set_fingerprint(run_id, effective_fingerprint(manifest, set(published.held_back)))


@tracer.capture_method
def prune(bucket: str, kept: list[str], aws: Aws) -> list[str]:
    """Remove the folders of every run but the `kept` ones; returns the runs removed."""
    gone = sorted(runs_with_folders(aws.s3, bucket) - set(kept))
    delete_runs(aws.s3, bucket, gone)
    return gone


@tracer.capture_method
def publish_run(
    request: Mapping[str, str],
    settings: Settings,
    aws: Aws,
    now: datetime,
    read_inputs: Callable[[str, str, boto3.Session | None], pd.DataFrame] = read_run_inputs,
) -> Published:
    bucket, run_id = request["bucket"], request["run_id"]
    manifest_text = aws.s3.get_object(Bucket=bucket, Key=request["manifest_key"])["Body"].read()
    manifest = Manifest.from_json(manifest_text.decode("utf-8"))
    if manifest.run_id != run_id:
        raise ValueError(f"{request['manifest_key']} is the manifest of run {manifest.run_id}")
    published = Published(run_id, now.isoformat())
    ledger = Ledger(aws.dynamodb, settings.ledger_table)
    hold_back(
        request,
        manifest,
        read_inputs(bucket, run_id, aws.boto3_session),
        settings,
        aws,
        ledger,
        published,
    )
    runs = with_published(
        read_record(aws.s3, bucket), run_id, published.published_at, request["manifest_key"]
    )
    write_record(aws.s3, bucket, runs)
    logger.info("run published", extra={"published_runs": len(runs)})
    kept = [run.run_id for run in runs][-settings.kept_runs :]
    try:
        published.pruned_runs = prune(bucket, kept, aws)
    except (ClientError, BotoCoreError, RuntimeError) as exc:
        published.prune_error = f"{type(exc).__name__}: {exc}"
        logger.exception("run published; removing old runs failed")
    return published
