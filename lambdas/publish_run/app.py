"""PublishRun Lambda: the workflow's last state publishes the run (publish.py).

Called by the PublishRun state with `{"run_id": ..., "bucket": ..., "manifest_key": ...}` once
the report is written. Returns what it did: the files held back and withdrawn from the inputs,
the runs pruned. An error reaches the workflow's Catch (alert, Fail); the record is written once,
so a failure before it publishes nothing.

Needs carrental (layer), awswrangler/pandas (AWS SDK for pandas layer), Powertools (layer).
Every log line carries the run id as the correlation id.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from publish import Aws, Settings, parse_request, publish_run

from carrental.aws.runtime import boto3_clients, utc_now

logger = Logger()
tracer = Tracer()
metrics = Metrics()
clock = utc_now
# created once per container, on first use (after a test has set up moto)
aws_clients = functools.cache(functools.partial(boto3_clients, Aws))


@logger.inject_lambda_context(log_event=True, clear_state=True, correlation_id_path="run_id")
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    published = publish_run(parse_request(event), Settings.from_env(), aws_clients(), clock())
    metrics.add_metric(name="RunsPublished", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="FilesHeldBack", unit=MetricUnit.Count, value=len(published.held_back))
    metrics.add_metric(name="RunsPruned", unit=MetricUnit.Count, value=len(published.pruned_runs))
    if published.prune_error:
        metrics.add_metric(name="PruneFailures", unit=MetricUnit.Count, value=1)
    return published.to_dict()
