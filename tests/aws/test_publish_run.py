"""The PublishRun function under moto: the held-back files, the publish record, the pruning.
A run's run_inputs table is what tests/aws/job_outputs.py writes."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from carrental import lake
from carrental.aws.ledger import Arrival, Ledger
from carrental.inputs import InputFile
from carrental.publishing import parse_record
from tests.aws.daily import table_properties
from tests.aws.job_outputs import put_run_inputs
from tests.aws.lambda_runtime import LambdaContext
from tests.aws.template import load_template

BUCKET = "carrental-test-lake"
RUN_ID = "20261202T080000Z"
T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HELD_REASON = "held back: 30 of 30 rows (100.0%) break a reject rule at run time: vehicle_exists 30"


@dataclass
class Lake:
    s3: object
    sqs: object
    ledger: Ledger
    alerts_queue: str
    files: dict[str, InputFile]  # key -> as the run's manifest lists it

    def put_run_inputs(self, run_id: str, held_back: dict[str, str]) -> None:
        put_run_inputs(self.s3, BUCKET, run_id, self.files.values(), held_back)

    def put_run_folders(self, run_id: str) -> list[str]:
        keys = [
            f"{lake.table_run_path(lake.PROCESSED, 'business_summary', run_id)}/part-0.parquet",
            f"{lake.report_prefix('', run_id).lstrip('/')}/summary.csv",
        ]
        for key in keys:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
        return keys

    def record(self) -> list:
        body = self.s3.get_object(Bucket=BUCKET, Key=lake.PUBLISHED_RECORD)["Body"].read()
        return parse_record(body.decode())

    def keys(self, prefix: str) -> list[str]:
        listing = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(o["Key"] for o in listing.get("Contents", []))

    def alerts(self) -> list[dict]:
        messages = self.sqs.receive_message(QueueUrl=self.alerts_queue, MaxNumberOfMessages=10)
        return [json.loads(m["Body"]) for m in messages.get("Messages", [])]


SOURCES = {
    "raw/vehicles/vehicles.csv": b"vehicles v1",
    "raw/locations/locations.csv": b"locations v1",
    "raw/users/users.csv": b"users v1",
    "raw/rental_transactions/day-1.csv": b"rentals of day 1",
    "raw/rental_transactions/day-2.csv": b"rentals of day 2, every one an orphan",
}


@pytest.fixture
def stack(publish_module, monkeypatch) -> Iterator[Lake]:
    forget = publish_module.aws_clients.cache_clear
    with mock_aws():
        s3, sqs, sns = boto3.client("s3"), boto3.client("sqs"), boto3.client("sns")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName="ledger", **table_properties(load_template(), "LedgerTable")
        )
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        alerts = sqs.create_queue(QueueName="alerts")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])["Attributes"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn["QueueArn"])
        ledger = Ledger(dynamodb, "ledger")
        files = {}
        for index, (key, body) in enumerate(SOURCES.items()):
            version = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
            at = T0.replace(minute=index).isoformat()
            files[key] = InputFile(key.split("/")[1], key, f"{index:064x}", 30, at, at, version)
            ledger.accept(files[key], Arrival(key, version, f"{index:02X}", T0))
        manifest = ledger.inputs().manifest(RUN_ID, T0.isoformat(), 0.05)
        s3.put_object(
            Bucket=BUCKET, Key=lake.manifest_key(RUN_ID), Body=manifest.to_json().encode()
        )
        ledger.acquire(RUN_ID, T0, ledger.lock(), holder_ran=False)
        ledger.set_fingerprint(RUN_ID, manifest.fingerprint)
        for name, value in {
            "ALERT_TOPIC_ARN": topic,
            "LEDGER_TABLE_NAME": "ledger",
            "KEPT_PUBLISHED_RUNS": "3",
        }.items():
            monkeypatch.setenv(name, value)
        forget()
        yield Lake(s3, sqs, ledger, alerts, files)
    forget()


def publish(publish_module, run_id: str = RUN_ID) -> dict:
    event = {"run_id": run_id, "bucket": BUCKET, "manifest_key": lake.manifest_key(run_id)}
    return publish_module.lambda_handler(event, LambdaContext(function_name="publish-run"))


def test_a_run_with_every_file_used_is_published(
    stack, publish_module, capsys, monkeypatch
) -> None:
    logged = io.StringIO()  # what Lambda sends to CloudWatch Logs: the function's stdout
    monkeypatch.setattr(publish_module.logger.registered_handler, "stream", logged)
    stack.put_run_inputs(RUN_ID, held_back={})
    published = publish(publish_module)

    assert published["held_back"] == [] and published["prune_error"] is None
    (run,) = stack.record()
    assert (run.run_id, run.manifest, run.is_current) == (RUN_ID, lake.manifest_key(RUN_ID), True)
    assert stack.alerts() == []
    assert '"RunsPublished"' in capsys.readouterr().out
    lines = [json.loads(line) for line in logged.getvalue().splitlines()]
    assert lines and all(line["correlation_id"] == RUN_ID for line in lines)


def test_a_held_back_file_is_quarantined_as_the_run_read_it_and_leaves_the_inputs(
    stack, publish_module
) -> None:
    held_key = "raw/rental_transactions/day-2.csv"
    stack.s3.put_object(Bucket=BUCKET, Key=held_key, Body=b"uploaded after the run started")
    stack.put_run_inputs(RUN_ID, held_back={held_key: HELD_REASON})

    published = publish(publish_module)

    assert published["held_back"] == published["withdrawn"] == [held_key]
    copy_key, report_key = lake.quarantine_keys("rental_transactions", "day-2.csv", RUN_ID)
    assert stack.keys("quarantine/") == sorted([copy_key, report_key])
    copy = stack.s3.get_object(Bucket=BUCKET, Key=copy_key)["Body"].read()
    assert copy == SOURCES[held_key]  # the version the run read, not what the key holds now
    report = json.loads(stack.s3.get_object(Bucket=BUCKET, Key=report_key)["Body"].read())
    assert report["verdict"] == "held_back" and report["reason"] == HELD_REASON
    assert report["run_id"] == RUN_ID and report["version_id"] == stack.files[held_key].version_id
    (alert,) = stack.alerts()
    assert "held back" in alert["Subject"] and HELD_REASON in alert["Message"]
    assert held_key not in stack.ledger.inputs().rentals
    # the lock records the run's inputs without the file: the ledger's next manifest is those
    next_manifest = stack.ledger.inputs().manifest("next", T0.isoformat(), 0.05)
    assert stack.ledger.lock().fingerprint == next_manifest.fingerprint
    assert stack.record()[-1].run_id == RUN_ID  # the rest is published

    again = publish(publish_module)  # the workflow's retry of the same state
    assert again["held_back"] == [held_key] and stack.alerts() == []
    assert len(stack.record()) == 1


def test_a_held_back_file_corrected_meanwhile_stays_in_the_inputs(stack, publish_module) -> None:
    held_key = "raw/rental_transactions/day-2.csv"
    corrected = InputFile(
        "rental_transactions", held_key, "f" * 64, 30, T0.isoformat(), T0.isoformat(), "v9"
    )
    assert stack.ledger.accept(corrected, Arrival(held_key, "v9", "FF", T0)) == "replaced"
    stack.put_run_inputs(RUN_ID, held_back={held_key: HELD_REASON})

    published = publish(publish_module)

    assert published["held_back"] == [held_key] and published["withdrawn"] == []
    assert stack.ledger.inputs().rentals[held_key].sha256 == "f" * 64  # its own chance next run


def test_old_and_unpublished_runs_are_pruned(stack, publish_module) -> None:
    earlier = ["20261128T080000Z", "20261129T080000Z", "20261130T080000Z"]
    record = "".join(
        json.dumps(
            {
                "run_id": r,
                "published_at": f"{r}",
                "manifest": lake.manifest_key(r),
                "is_current": r == earlier[-1],
            }
        )
        + "\n"
        for r in earlier
    )
    stack.s3.put_object(Bucket=BUCKET, Key=lake.PUBLISHED_RECORD, Body=record.encode())
    folders = {r: stack.put_run_folders(r) for r in [*earlier, "20261201T080000Z", RUN_ID]}
    stack.put_run_inputs(RUN_ID, held_back={})

    published = publish(publish_module)

    # kept: the newest three published runs (this one included); gone: the oldest published
    # run and a run that never published
    assert published["pruned_runs"] == ["20261128T080000Z", "20261201T080000Z"]
    remaining = set(stack.keys("processed/")) | set(stack.keys("reports/"))
    for run_id in ["20261129T080000Z", "20261130T080000Z", RUN_ID]:
        assert set(folders[run_id]) <= remaining, run_id
    for run_id in published["pruned_runs"]:
        assert not set(folders[run_id]) & remaining, run_id
    assert [r.run_id for r in stack.record() if r.is_current] == [RUN_ID]


def test_a_prune_that_fails_leaves_the_run_published(stack, publish_module, capsys) -> None:
    stack.put_run_folders("20261201T080000Z")
    stack.put_run_inputs(RUN_ID, held_back={})

    def s3_refuses(**_):
        raise ClientError({"Error": {"Code": "SlowDown", "Message": "Reduce"}}, "DeleteObjects")

    s3 = publish_module.aws_clients().s3
    s3.meta.events.register("before-call.s3.DeleteObjects", s3_refuses)
    published = publish(publish_module)

    assert (
        published["prune_error"].startswith("ClientError")
        and "SlowDown" in published["prune_error"]
    )
    assert stack.record()[-1].run_id == RUN_ID
    assert '"PruneFailures"' in capsys.readouterr().out


def test_a_failure_before_the_record_write_publishes_nothing(stack, publish_module) -> None:
    stack.s3.put_object(
        Bucket=BUCKET,
        Key=lake.PUBLISHED_RECORD,
        Body=b'{"run_id": "20261130T080000Z", "published_at": "x", "manifest": "m", "is_current": true}\n',
    )
    before = stack.record()  # no run_inputs table: the read fails before any write
    with pytest.raises(Exception, match="run_inputs"):
        publish(publish_module)
    assert stack.record() == before


def test_a_request_for_another_runs_manifest_is_refused(publish_module) -> None:
    with pytest.raises(ValueError, match="is not run"):
        publish_module.parse_request(
            {"run_id": RUN_ID, "bucket": BUCKET, "manifest_key": lake.manifest_key("other")}
        )
    with pytest.raises(ValueError, match="manifest_key"):
        publish_module.parse_request({"run_id": RUN_ID, "bucket": BUCKET})
