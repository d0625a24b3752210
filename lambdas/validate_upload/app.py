"""ValidateUpload Lambda: an S3 "Object Created" event (via EventBridge) for raw/<dataset>/….

A thin adapter: parse the event, call `upload.process_upload`, publish metrics. What happens to
an upload, and how it leads to a run, is in upload's docstring and docs/architecture.md.
Runtime needs: the carrental layer, Powertools, and pyarrow (the validation core reads CSV and
writes the staged Parquet with it): the AWS SDK for pandas managed layer bundles pyarrow.

Logs carry the upload's key and version id: a run's manifest (runs/<run_id>/manifest.json, and
the scheduler's "run request handled" line with status "started") lists its inputs by the same
key and version id.
"""

from __future__ import annotations

import functools
from datetime import datetime

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import (
    S3EventBridgeNotificationEvent,
    event_source,
)
from aws_lambda_powertools.utilities.typing import LambdaContext
from upload import Aws, Outcome, Settings, Upload, process_upload

from carrental.aws.runtime import boto3_clients, utc_now

logger = Logger()
tracer = Tracer()
metrics = Metrics()
clock = utc_now
# created once per container, on first use (after a test has set up moto)
aws_clients = functools.cache(functools.partial(boto3_clients, Aws))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_source(data_class=S3EventBridgeNotificationEvent)
def lambda_handler(event: S3EventBridgeNotificationEvent, context: LambdaContext) -> dict:
    obj = event.detail.object
    upload = Upload(
        bucket=event.detail.bucket.name,
        # The raw fields, on purpose, where the data class's properties would change them:
        # `obj.key` URL-decodes the key (unquote_plus), and Upload tries the key both as sent and
        # decoded; `obj.version_id` raises KeyError for an event that carries no version id.
        key_as_sent=obj["key"],
        version_id=obj.get("version-id"),
        etag=obj.etag,
        sequencer=obj.sequencer,
        event_time=datetime.fromisoformat(event.time.replace("Z", "+00:00")),
    )
    logger.append_keys(object_key=upload.key_candidates[0], version_id=upload.version_id)
    outcome = process_upload(
        upload, Settings.from_env(), aws_clients(), clock, context.aws_request_id
    )
    record_metrics(outcome)
    logger.info("upload handled", extra=outcome.to_dict())
    return outcome.to_dict()


def record_metrics(outcome: Outcome) -> None:
    if outcome.run_requested_in is not None:
        metrics.add_metric(name="RunsRequested", unit=MetricUnit.Count, value=1)
    if outcome.status == "refused":
        metrics.add_metric(name="FilesRefused", unit=MetricUnit.Count, value=1)
    if outcome.verdict is None:  # ignored, refused, duplicate, superseded or missing
        metrics.add_metric(name="EventsSkipped", unit=MetricUnit.Count, value=1)
        return
    metrics.add_metric(
        name="FilesAccepted" if outcome.verdict.accepted else "FilesRejected",
        unit=MetricUnit.Count,
        value=1,
    )
    metrics.add_metric(name="RowsValidated", unit=MetricUnit.Count, value=outcome.verdict.rows)
    metrics.add_metric(name="BytesValidated", unit=MetricUnit.Bytes, value=outcome.verdict.bytes)
