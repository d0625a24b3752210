"""ValidateUpload Lambda: an S3 "Object Created" event (via EventBridge) for raw/<dataset>/….

A thin adapter: parse the event, call `upload_batch.process_upload`, publish metrics. The
batch design (when the workflow starts, and why exactly once) is in upload_batch's docstring.
Runtime needs: the carrental layer, Powertools, and pyarrow (the validation core reads CSV with
it): attach the AWS SDK for pandas managed layer, which bundles pyarrow.
"""

from __future__ import annotations

import functools

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    S3EventBridgeNotificationEvent,
    event_source,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from upload_batch import Aws, Outcome, Settings, Upload, process_upload

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@functools.cache
def aws_clients() -> Aws:
    """Created once per container, on first use (so tests can mock AWS before)."""
    return Aws(
        s3=boto3.client("s3"),
        sns=boto3.client("sns"),
        dynamodb=boto3.client("dynamodb"),
        stepfunctions=boto3.client("stepfunctions"),
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3EventBridgeNotificationEvent)
def lambda_handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict:
    obj = event.detail.object
    upload = Upload(event.detail.bucket.name, obj["key"], obj.etag, event.time)
    logger.append_keys(object_key=upload.key_candidates[0])
    outcome = process_upload(upload, Settings.from_env(), aws_clients())
    record_metrics(outcome)
    logger.info(f"{outcome.status}: {outcome.reason}", extra=outcome.to_dict())
    return outcome.to_dict()


def record_metrics(outcome: Outcome) -> None:
    if outcome.verdict is None:  # ignored, duplicate, superseded or missing: nothing validated
        metrics.add_metric(name="EventsSkipped", unit=MetricUnit.Count, value=1)
        return
    name = "FilesAccepted" if outcome.verdict.accepted else "FilesRejected"
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=outcome.verdict.rows)
    metrics.add_metric(name="BytesValidated", unit=MetricUnit.Bytes, value=outcome.verdict.bytes)
    if outcome.run_started:
        metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
