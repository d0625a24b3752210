"""RunScheduler Lambda: two handlers over scheduler.py (one folder, two functions in the stack).

- `start_handler`: the run-request queue's messages (SQS event source). One decision per
  invocation, whatever the number of messages: every request means "is a run due?".
- `finish_handler`: "Step Functions Execution Status Change" events of the workflow (EventBridge)
  for SUCCEEDED, FAILED, TIMED_OUT and ABORTED.

Every log line of a run's decisions carries its run id as the correlation id.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics, Tracer, single_metric
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext
from scheduler import Aws, Settings, finish, start

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
@event_source(data_class=SQSEvent)
def start_handler(event: SQSEvent, context: LambdaContext) -> dict:
    requests = [record.json_body for record in event.records]
    decision = start(Settings.from_env(), aws_clients(), clock())
    metrics.add_metric(name="RunRequestsHandled", unit=MetricUnit.Count, value=len(requests))
    if decision.status == "started":
        metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
    logger.info("run request handled", extra={**decision.to_dict(), "requests": requests})
    return decision.to_dict()


@logger.inject_lambda_context(clear_state=True, correlation_id_path="detail.name")
@tracer.capture_lambda_handler
@metrics.log_metrics
def finish_handler(event: dict, context: LambdaContext) -> dict:
    ending = finish(event["detail"], Settings.from_env(), aws_clients())
    metrics.add_metric(name="RunsEnded", unit=MetricUnit.Count, value=1)
    if ending.failed_state is None:
        metrics.add_metric(name="RunsSucceeded", unit=MetricUnit.Count, value=1)
    else:
        # a metric of its own, dimensioned by the state the run failed in (the dashboard's
        # failures by state)
        with single_metric(
            name="RunsFailed",
            unit=MetricUnit.Count,
            value=1,
            default_dimensions={"service": metrics.service},
        ) as failed:
            failed.add_dimension(name="FailedState", value=ending.failed_state)
    logger.info("run ended", extra=ending.to_dict())
    return ending.to_dict()
