"""The ValidateUpload function on its own, under moto (tests/aws/daily.py's stack): what each
kind of upload leads to. The daily scenario (runs, settling, replays, overwrites, supersession)
is in test_daily_operation.py."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from carrental import lake
from carrental.aws.ledger import Ledger
from tests.aws.daily import BUCKET, EVENTS, SAMPLE, DailyStack, daily_stack
from tests.conftest import generated_batch


@pytest.fixture
def stack(validate_module, scheduler_module, monkeypatch, tmp_path) -> Iterator[DailyStack]:
    with daily_stack(
        validate_module, scheduler_module, monkeypatch, tmp_path / "staging"
    ) as running:
        yield running


@pytest.fixture(scope="module")
def dirty_rentals_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A batch small enough to upload quickly, 3 % of its rows broken."""
    return generated_batch(tmp_path_factory, "upload_dirty", scale=0.02, seed=6, dirty_rate=0.03)


def nothing_recorded(stack: DailyStack) -> bool:
    return all(not stack.ledger_items(pk) for pk in ("history", "snapshot", "validating"))


def requests_waiting(stack: DailyStack) -> int:
    stack.clock.advance(stack.settle_seconds + 1)
    messages = stack.sqs.receive_message(QueueUrl=stack.run_request_queue, MaxNumberOfMessages=10)
    return len(messages.get("Messages", []))


def test_an_accepted_upload_is_staged_recorded_and_asks_for_a_run(stack, monkeypatch, capsys):
    event = stack.upload_file("users", SAMPLE / "users.csv")
    outcome = stack.validate(event, monkeypatch)

    assert outcome["status"] == "accepted" and outcome["change"] == "added"
    assert stack.keys("staged/") == [outcome["staged_key"]]
    (snapshot,) = stack.ledger_items("snapshot")
    assert snapshot["version_id"] == event["detail"]["object"]["version-id"]
    assert snapshot["sequencer"] == event["detail"]["object"]["sequencer"]
    assert stack.ledger_items("validating") == []  # its mark ended with it
    assert stack.ledger_items("pipeline")[0]["last_activity_at"]
    assert requests_waiting(stack) == 1
    assert stack.alerts() == []
    metrics = capsys.readouterr().out
    assert '"FilesAccepted"' in metrics and '"RunsRequested"' in metrics


def test_a_rejected_upload_is_quarantined_under_its_own_stamp_and_alerted(stack, monkeypatch):
    key = lake.raw_key("rental_transactions", "rental_transactions.csv")
    sample = (SAMPLE / "rental_transactions.csv").read_bytes()
    bad = sample.replace(b"total_amount", b"amount")
    first = stack.upload(key, bad)
    stack.upload(key, sample)  # the key holds good content by the time the event is read
    outcome = stack.validate(first, monkeypatch)

    assert outcome["status"] == "rejected"
    version = first["detail"]["object"]["version-id"]
    uploaded_at = datetime.fromisoformat(first["time"].replace("Z", "+00:00"))
    stamp = f"{lake.time_stamp(uploaded_at)}-{version}"
    assert (
        outcome["quarantine_key"]
        == f"quarantine/rental_transactions/{stamp}-rental_transactions.csv"
    )
    assert stack.body(outcome["quarantine_key"]) == bad  # the version uploaded, not the current one
    assert stack.body(key, version) == bad  # the raw object is untouched
    report = json.loads(stack.body(outcome["quarantine_key"] + ".errors.json"))
    assert report["verdict"] == "rejected" and report["version_id"] == version
    assert {(p["rule"], p["column"]) for p in report["problems"]} == {
        ("header_missing_column", "total_amount"),
        ("header_extra_column", "amount"),
    }
    (alert,) = stack.alerts()
    assert "rejected" in alert["Subject"] and alert["Subject"].isascii()
    assert f"s3://{BUCKET}/{key}" in alert["Message"]
    assert "the header lacks column 'total_amount'" in alert["Message"]
    assert nothing_recorded(stack)

    again = stack.validate(first, monkeypatch)  # the same event, delivered again
    assert again["status"] == "duplicate" and stack.alerts() == []
    second = stack.validate(stack.upload(key, bad), monkeypatch)  # the same mistake, later
    assert second["quarantine_key"] != outcome["quarantine_key"]
    assert len(stack.keys("quarantine/")) == 4  # every rejection keeps its evidence


@pytest.mark.parametrize(
    ("content", "first_rule"),
    [
        (lambda: gzip.compress((SAMPLE / "users.csv").read_bytes()), "not_csv_text"),
        (lambda: (SAMPLE / "users.csv").read_bytes().split(b"\n")[0] + b"\n", "no_data_rows"),
        (
            lambda: (SAMPLE / "users.csv").read_text().replace("@", "\xe9", 1).encode("latin-1"),
            "not_utf8",
        ),
        (
            lambda: (SAMPLE / "users.csv").read_bytes().replace(b"email", b"mail", 1),
            "header_missing_column",
        ),
        (lambda: (SAMPLE / "vehicles.csv").read_bytes(), "header_missing"),
    ],
)
def test_each_kind_of_rejection_through_the_function(stack, monkeypatch, content, first_rule):
    outcome = stack.validate(
        stack.upload(lake.raw_key("users", "users.csv"), content()), monkeypatch
    )
    assert outcome["status"] == "rejected"
    report = json.loads(stack.body(outcome["quarantine_key"] + ".errors.json"))
    assert report["problems"][0]["rule"] == first_rule
    assert len(stack.alerts()) == 1


def test_too_many_bad_rows_over_the_configured_threshold(stack, monkeypatch, dirty_rentals_batch):
    stack.environments["ValidateUploadFunction"]["REJECT_THRESHOLD"] = "0.01"
    path = dirty_rentals_batch / "rental_transactions.csv"
    outcome = stack.upload_and_validate("rental_transactions", path, monkeypatch)
    assert outcome["status"] == "rejected"
    report = json.loads(stack.body(outcome["quarantine_key"] + ".errors.json"))
    assert report["problems"][0]["rule"] == "reject_threshold"
    assert report["reject_threshold"] == 0.01


def test_an_unknown_dataset_folder_is_rejected_and_recorded_nowhere(stack, monkeypatch):
    outcome = stack.validate(stack.upload("raw/cars/fleet.csv", b"a,b\n1,2\n"), monkeypatch)
    assert outcome["status"] == "rejected" and outcome["dataset"] == "cars"
    assert outcome["quarantine_key"].startswith("quarantine/cars/")
    assert outcome["quarantine_key"].endswith("-fleet.csv")
    assert "unknown dataset 'cars'" in stack.alerts()[0]["Message"]
    assert nothing_recorded(stack) and requests_waiting(stack) == 0


def test_a_url_encoded_key_and_a_plus_sign_in_a_name(stack, monkeypatch):
    body = (SAMPLE / "rental_transactions.csv").read_bytes()
    decoded = "raw/rental_transactions/june 2024 été.csv"
    encoded = json.loads((EVENTS / "url_encoded_key_created.json").read_text())
    event = stack.upload(decoded, body)
    event["detail"]["object"]["key"] = encoded["detail"]["object"]["key"]  # as S3 sends it
    outcome = stack.validate(event, monkeypatch)
    assert outcome["status"] == "accepted" and outcome["key"] == decoded

    literal = "raw/rental_transactions/june+2024.csv"  # '+' is part of the name here
    outcome = stack.validate(stack.upload(literal, body), monkeypatch)
    assert outcome["status"] == "accepted" and outcome["key"] == literal
    assert sorted(i["key"] for i in stack.ledger_items("history")) == [decoded, literal]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("raw/users/notes.txt", "not a .csv file"),
        ("processed/location_performance/part-0.csv", "not under raw/"),
        ("raw/vehicles/", "a folder marker"),
    ],
)
def test_ignored_objects(stack, monkeypatch, key, reason):
    outcome = stack.validate(stack.upload(key, b"x"), monkeypatch)
    assert outcome["status"] == "ignored" and outcome["reason"] == reason
    assert nothing_recorded(stack) and stack.alerts() == [] and requests_waiting(stack) == 0


def test_a_name_the_spark_jobs_cannot_read_is_refused_with_an_alert(stack, monkeypatch):
    key = "raw/users/users-2024-06-01T10:00.csv"  # ':' cannot be part of a Hadoop path
    outcome = stack.validate(stack.upload(key, (SAMPLE / "users.csv").read_bytes()), monkeypatch)
    assert outcome["status"] == "refused" and "':'" in outcome["reason"]
    (alert,) = stack.alerts()
    assert f"s3://{BUCKET}/{key}" in alert["Message"] and "again" in alert["Message"]
    assert nothing_recorded(stack)


def test_a_file_too_large_for_the_functions_disk_is_refused(stack, monkeypatch):
    stack.environments["ValidateUploadFunction"]["EPHEMERAL_STORAGE_MB"] = "257"  # ~1.2 MB
    header, *rows = (SAMPLE / "vehicles.csv").read_bytes().splitlines(keepends=True)
    big = header + b"".join(rows * 3)
    assert len(big) > 1.2e6
    outcome = stack.validate(
        stack.upload(lake.raw_key("vehicles", "vehicles.csv"), big), monkeypatch
    )
    assert outcome["status"] == "refused" and "split it into smaller files" in outcome["reason"]
    assert "ValidateUpload stages files of up to" in stack.alerts()[0]["Message"]
    assert nothing_recorded(stack) and stack.keys("staged/") == []


def test_a_version_deleted_since_its_event_is_missing(stack, monkeypatch):
    event = stack.upload(lake.raw_key("users", "users.csv"), (SAMPLE / "users.csv").read_bytes())
    stack.s3.delete_object(
        Bucket=BUCKET,
        Key=event["detail"]["object"]["key"],
        VersionId=event["detail"]["object"]["version-id"],
    )
    outcome = stack.validate(event, monkeypatch)
    assert outcome["status"] == "missing"
    assert nothing_recorded(stack) and stack.alerts() == []


def test_the_retry_of_a_crashed_validation_validates_again(stack, monkeypatch):
    """Lambda retries an invocation that crashed (a timeout, an out-of-memory kill) with the
    same event: https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html.
    The crashed attempt's mark must not make the retry skip the upload."""
    event = stack.upload_file("users", SAMPLE / "users.csv")
    obj = event["detail"]["object"]
    ledger = Ledger(stack.dynamodb, stack.table)
    ledger.begin_validating(
        obj["key"], obj["version-id"], "crashed", stack.clock.now, timedelta(days=1)
    )

    outcome = stack.validate(event, monkeypatch)

    assert outcome["status"] == "accepted"
    assert stack.ledger_items("validating") == []
