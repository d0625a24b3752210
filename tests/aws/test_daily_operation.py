"""Daily operation on the stack, under moto, driving the real handlers: ValidateUpload on each
upload's event, the run scheduler's start on the run requests, its finish on the end of each
execution (tests/aws/daily.py). Time moves only when a test moves it.

Expected values come from the files themselves (their bytes' SHA-256, their rows read with the
csv module), never from the code under test.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from carrental import lake
from carrental.aws.ledger import Ledger
from tests.aws.daily import (
    BUCKET,
    DATASETS,
    SAMPLE,
    DailyStack,
    InterleavedClient,
    daily_stack,
)

DIMENSIONS = DATASETS[:3]


@pytest.fixture
def stack(validate_module, scheduler_module, monkeypatch, tmp_path) -> Iterator[DailyStack]:
    staging = tmp_path / "staging"
    with daily_stack(
        validate_module, scheduler_module, monkeypatch, staging, executions=True
    ) as running:
        yield running


@pytest.fixture(scope="module")
def rentals_days(tmp_path_factory) -> list[Path]:
    """Three daily rentals files: disjoint slices of the sample's rows, with its header."""
    folder = tmp_path_factory.mktemp("days")
    header, *rows = (SAMPLE / "rental_transactions.csv").read_text(encoding="utf-8").splitlines()
    days = []
    for day in range(3):
        path = folder / f"rentals-2026-12-0{day + 1}.csv"
        path.write_text("\n".join([header, *rows[day::3]]) + "\n", encoding="utf-8")
        days.append(path)
    return days


def sha256(path_or_bytes: Path | bytes) -> str:
    data = path_or_bytes.read_bytes() if isinstance(path_or_bytes, Path) else path_or_bytes
    return hashlib.sha256(data).hexdigest()


def csv_rows(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def statuses(decisions: list[dict]) -> list[str]:
    return [d["status"] for d in decisions]


def upload_dimensions(stack: DailyStack, monkeypatch) -> dict[str, dict]:
    return {d: stack.upload_and_validate(d, SAMPLE / f"{d}.csv", monkeypatch) for d in DIMENSIONS}


def first_run(stack: DailyStack, monkeypatch, rentals: Path) -> dict:
    """Four files uploaded, the window settled: the one execution."""
    upload_dimensions(stack, monkeypatch)
    stack.upload_and_validate("rental_transactions", rentals, monkeypatch)
    assert "started" in statuses(stack.settle(monkeypatch))
    (execution,) = stack.executions()
    return execution


def test_four_uploads_start_one_run_on_exactly_what_was_validated(stack, monkeypatch) -> None:
    events = {d: stack.upload_file(d, SAMPLE / f"{d}.csv") for d in DATASETS}
    for event in events.values():
        outcome = stack.validate(event, monkeypatch)
        assert (outcome["status"], outcome["change"]) == ("accepted", "added")
        assert outcome["run_requested_in"] == stack.settle_seconds
    assert stack.pump(monkeypatch) == []  # every request waits for the settle window
    assert stack.executions() == []

    decisions = stack.settle(monkeypatch)

    assert statuses(decisions).count("started") == 1, decisions
    (execution,) = stack.executions()
    assert execution["status"] == "RUNNING"
    started = next(d for d in decisions if d["status"] == "started")
    assert started["run_id"] == execution["name"] == lake.time_stamp(stack.clock.now)
    assert json.loads(execution["input"]) == {
        "run_id": execution["name"],
        "bucket": BUCKET,
        "manifest_key": f"runs/{execution['name']}/manifest.json",
    }
    manifest = stack.manifest(execution)
    for dataset, event in events.items():
        (listed,) = manifest.of(dataset)
        source = SAMPLE / f"{dataset}.csv"
        assert listed.key == f"raw/{dataset}/{dataset}.csv"
        assert listed.sha256 == sha256(source)
        assert listed.version_id == event["detail"]["object"]["version-id"]
        assert listed.rows == len(csv_rows(source.read_bytes()))
        staged = pq.read_table(io.BytesIO(stack.body(listed.staged)))
        assert staged.num_rows == listed.rows
    lock = stack.lock()
    assert lock["run_id"] == execution["name"] and lock["fingerprint"] == manifest.fingerprint
    assert stack.alerts() == []


def test_a_new_rentals_file_runs_on_the_whole_history_with_the_same_snapshots(
    stack, monkeypatch, rentals_days
) -> None:
    first = first_run(stack, monkeypatch, rentals_days[0])
    first_manifest = stack.manifest(first)
    ending = stack.end(first, "SUCCEEDED", monkeypatch)
    assert ending["released"] and ending["recheck_in"] == 0
    assert statuses(stack.pump(monkeypatch)) == ["nothing_new"]

    day_two = stack.upload_and_validate("rental_transactions", rentals_days[1], monkeypatch)
    assert day_two["change"] == "added"
    assert "started" in statuses(stack.settle(monkeypatch))

    second = stack.executions()[-1]
    manifest = stack.manifest(second)
    assert [f.sha256 for f in manifest.of("rental_transactions")] == [
        sha256(rentals_days[0]),
        sha256(rentals_days[1]),
    ]
    for dataset in DIMENSIONS:
        assert manifest.of(dataset) == first_manifest.of(dataset)  # the same snapshot files


def test_a_burst_of_uploads_starts_one_run_that_sees_all_of_them(
    stack, monkeypatch, rentals_days
) -> None:
    files = [(d, SAMPLE / f"{d}.csv") for d in DIMENSIONS] + [
        ("rental_transactions", day) for day in rentals_days
    ]
    for dataset, path in files:
        stack.upload_and_validate(dataset, path, monkeypatch)
        stack.clock.advance(stack.settle_seconds / 3)  # each one inside the last one's window
        assert "started" not in statuses(stack.pump(monkeypatch))
    decisions = stack.settle(monkeypatch)

    assert statuses(decisions).count("started") == 1, decisions
    (execution,) = stack.executions()
    rentals = stack.manifest(execution).of("rental_transactions")
    assert [f.sha256 for f in rentals] == [sha256(day) for day in rentals_days]  # upload order
    stack.clock.advance(stack.settle_seconds * 10)
    assert "started" not in statuses(stack.pump(monkeypatch))
    assert len(stack.executions()) == 1


def test_a_replayed_event_validates_nothing_and_starts_nothing(
    stack, monkeypatch, rentals_days
) -> None:
    events = {d: stack.upload_file(d, SAMPLE / f"{d}.csv") for d in DIMENSIONS}
    events["rental_transactions"] = stack.upload_file("rental_transactions", rentals_days[0])
    for event in events.values():
        stack.validate(event, monkeypatch)
    stack.settle(monkeypatch)
    stack.end(stack.executions()[0], "SUCCEEDED", monkeypatch)
    stack.pump(monkeypatch)
    before = stack.ledger_items("history") + stack.ledger_items("snapshot")

    for event in events.values():  # EventBridge delivers at least once
        replay = stack.validate(event, monkeypatch)
        assert replay["status"] == "duplicate" and replay["rows"] is None
        assert replay["run_requested_in"] == stack.settle_seconds

    assert stack.ledger_items("history") + stack.ledger_items("snapshot") == before
    assert statuses(stack.settle(monkeypatch)) == ["nothing_new"]
    assert len(stack.executions()) == 1


def test_an_upload_during_a_run_leads_to_one_follow_up_run_after_it(
    stack, monkeypatch, rentals_days
) -> None:
    first = first_run(stack, monkeypatch, rentals_days[0])
    stack.upload_and_validate("rental_transactions", rentals_days[1], monkeypatch)
    assert set(statuses(stack.settle(monkeypatch))) == {"running"}
    assert len(stack.executions()) == 1  # never two writers of the same tables

    stack.end(first, "SUCCEEDED", monkeypatch)
    assert statuses(stack.pump(monkeypatch)) == ["started"]
    follow_up = stack.executions()[-1]
    assert [f.sha256 for f in stack.manifest(follow_up).of("rental_transactions")] == [
        sha256(rentals_days[0]),
        sha256(rentals_days[1]),
    ]
    stack.end(follow_up, "SUCCEEDED", monkeypatch)
    assert statuses(stack.pump(monkeypatch)) == ["nothing_new"]
    assert len(stack.executions()) == 2


def test_a_key_overwritten_after_acceptance_runs_on_the_validated_version(
    stack, monkeypatch, rentals_days
) -> None:
    key = lake.raw_key("rental_transactions", "rentals.csv")
    validated, overwritten = rentals_days[0].read_bytes(), rentals_days[1].read_bytes()
    first_event = stack.upload(key, validated)
    upload_dimensions(stack, monkeypatch)
    second_event = stack.upload(key, overwritten)  # its event is still on its way
    outcome = stack.validate(
        first_event, monkeypatch
    )  # the earlier event, read after the overwrite
    assert outcome["status"] == "accepted" and outcome["rows"] == len(csv_rows(validated))

    assert "started" in statuses(stack.settle(monkeypatch))
    execution = stack.executions()[0]
    (listed,) = stack.manifest(execution).of("rental_transactions")
    assert listed.sha256 == sha256(validated)
    assert listed.version_id == first_event["detail"]["object"]["version-id"]
    staged = pq.read_table(io.BytesIO(stack.body(listed.staged))).to_pylist()
    assert [r["rental_id"] for r in staged] == [r["rental_id"] for r in csv_rows(validated)]
    assert stack.body(key) == overwritten  # what the key holds now is not what the run reads

    correction = stack.validate(second_event, monkeypatch)
    assert (correction["status"], correction["change"]) == ("accepted", "replaced")
    stack.end(execution, "SUCCEEDED", monkeypatch)
    assert statuses(stack.pump(monkeypatch)) == ["settling"]  # the correction just ended
    assert "started" in statuses(stack.settle(monkeypatch))
    (corrected,) = stack.manifest(stack.executions()[-1]).of("rental_transactions")
    assert corrected.sha256 == sha256(overwritten)
    assert corrected.first_accepted_at == listed.first_accepted_at  # its place in the history


def test_identical_re_uploads_start_no_run(stack, monkeypatch, rentals_days) -> None:
    stack.end(first_run(stack, monkeypatch, rentals_days[0]), "SUCCEEDED", monkeypatch)
    stack.pump(monkeypatch)

    again = stack.upload_and_validate("rental_transactions", rentals_days[0], monkeypatch)
    renamed = stack.upload_and_validate(
        "users", SAMPLE / "users.csv", monkeypatch, name="users-2026-12-02.csv"
    )

    assert (again["status"], again["change"]) == ("accepted", "unchanged")
    assert (renamed["status"], renamed["change"]) == ("accepted", "unchanged")
    assert statuses(stack.settle(monkeypatch)) == ["nothing_new"]
    assert len(stack.executions()) == 1


def test_a_verdict_superseded_while_validating_is_not_recorded(
    stack, monkeypatch, rentals_days
) -> None:
    key = lake.raw_key("rental_transactions", "rentals.csv")
    older = stack.upload(key, rentals_days[0].read_bytes())
    newer = stack.upload(key, rentals_days[1].read_bytes())
    upload_module = sys.modules["upload"]
    put_staged = upload_module.put_staged
    newer_outcome = []

    def the_newer_upload_lands_meanwhile(*args):
        monkeypatch.setattr(upload_module, "put_staged", put_staged)  # once
        environment = stack.environments["ValidateUploadFunction"]
        own_tmp = environment["STAGING_DIR"]
        environment["STAGING_DIR"] = own_tmp + "-other-container"  # another function's /tmp
        newer_outcome.append(stack.validate(newer, monkeypatch))
        environment["STAGING_DIR"] = own_tmp
        stack.use_environment("ValidateUploadFunction", monkeypatch)
        return put_staged(*args)

    monkeypatch.setattr(upload_module, "put_staged", the_newer_upload_lands_meanwhile)
    outcome = stack.validate(older, monkeypatch)

    assert newer_outcome[0]["status"] == "accepted"
    assert outcome["status"] == "superseded" and "not recorded" in outcome["reason"]
    (entry,) = stack.ledger_items("history")
    assert entry["sha256"] == sha256(rentals_days[1])
    late = stack.validate(older, monkeypatch)  # delivered again, later still
    assert late["status"] == "superseded" and late["rows"] is None


def test_a_snapshot_event_older_than_the_recorded_one_changes_nothing(stack, monkeypatch) -> None:
    data = (SAMPLE / "users.csv").read_bytes()
    monday = stack.upload(lake.raw_key("users", "monday.csv"), data)
    stack.clock.advance(3600)
    tuesday = stack.upload(
        lake.raw_key("users", "tuesday.csv"), data + b"u2,A,B,c,d,e,2030-01-01,2024-01-01,1\n"
    )
    assert stack.validate(tuesday, monkeypatch)["status"] == "accepted"
    assert stack.validate(monday, monkeypatch)["status"] == "superseded"  # delivered late
    (snapshot,) = stack.ledger_items("snapshot")
    assert snapshot["key"] == "raw/users/tuesday.csv"


def _two_requests() -> list[dict]:
    body = json.dumps({"reason": "test"})
    return [
        {"Records": [{"messageId": f"m{i}", "receiptHandle": f"r{i}", "body": body}]}
        for i in range(2)
    ]


@pytest.mark.parametrize(
    ("service", "operation", "first", "second"),
    [
        # B takes the lock between A's reading it and A's conditional write: A stands down
        ("dynamodb", "update_item", "busy", "started"),
        # B reads the lock while A holds it and has not started its execution yet
        ("stepfunctions", "start_execution", "started", "starting"),
    ],
)
def test_two_start_invocations_at_once_start_one_run(
    stack, monkeypatch, rentals_days, scheduler_module, service, operation, first, second
) -> None:
    upload_dimensions(stack, monkeypatch)
    stack.upload_and_validate("rental_transactions", rentals_days[0], monkeypatch)
    stack.clock.advance(stack.settle_seconds + 1)
    stack.use_environment("RunSchedulerStartFunction", monkeypatch)
    event_a, event_b = _two_requests()
    clients = scheduler_module.aws_clients()
    answers = {}

    def b_runs() -> None:
        answers["b"] = scheduler_module.start_handler(event_b, stack.context("b"))

    interleaved = InterleavedClient(getattr(clients, service), operation, b_runs)
    monkeypatch.setattr(
        scheduler_module,
        "aws_clients",
        lambda: type(clients)(**{**vars(clients), service: interleaved}),
    )
    answers["a"] = scheduler_module.start_handler(event_a, stack.context("a"))

    assert (answers["a"]["status"], answers["b"]["status"]) == (first, second)
    assert len(stack.executions()) == 1


def test_the_end_of_a_failed_run_frees_the_lock_and_removes_its_folders(
    stack, monkeypatch, rentals_days
) -> None:
    stack.s3.put_object(
        Bucket=BUCKET,
        Key=lake.PUBLISHED_RECORD,
        Body=b'{"run_id": "20261130T080000Z", "published_at": "2026-11-30T08:30:00+00:00", '
        b'"manifest": "runs/20261130T080000Z/manifest.json", "is_current": true}\n',
    )
    published_folder = "processed/business_summary/run_id=20261130T080000Z/part-0.parquet"
    stack.s3.put_object(Bucket=BUCKET, Key=published_folder, Body=b"published")
    execution = first_run(stack, monkeypatch, rentals_days[0])
    run_id = execution["name"]
    written = [
        f"processed/business_summary/run_id={run_id}/part-0.parquet",
        f"processed/run_inputs/run_id={run_id}/part-0.parquet",
        f"reports/{run_id}/summary.csv",
    ]
    for key in written:
        stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"half a run")
    fingerprint = stack.lock()["fingerprint"]

    ending = stack.end(execution, "FAILED", monkeypatch, cause="WriteReport failed: no table")

    assert ending["released"] and ending["failed_state"] == "WriteReport"
    assert ending["deleted_objects"] == len(written)
    assert stack.keys("processed/") == [published_folder] and stack.keys("reports/") == []
    lock = stack.lock()
    assert "run_id" not in lock and lock["last_fingerprint"] == fingerprint
    # a failed run's inputs are not tried again by themselves (README: how to retry)
    assert statuses(stack.pump(monkeypatch)) == ["nothing_new"]


def test_an_aborted_run_is_closed_like_a_failed_one(stack, monkeypatch, rentals_days) -> None:
    execution = first_run(stack, monkeypatch, rentals_days[0])
    ending = stack.end(execution, "ABORTED", monkeypatch)
    assert ending["released"] and ending["failed_state"] == "aborted"
    assert "run_id" not in stack.lock()


def test_a_lock_whose_run_ended_unannounced_is_taken_over(stack, monkeypatch, rentals_days) -> None:
    first = first_run(stack, monkeypatch, rentals_days[0])
    first_fingerprint = stack.lock()["fingerprint"]
    stopped = stack.stop(first, "ABORTED")  # its end event is lost
    stack.upload_and_validate("rental_transactions", rentals_days[1], monkeypatch)

    assert "started" in statuses(stack.settle(monkeypatch))

    second = stack.executions()[-1]
    assert second["name"] != first["name"] and stack.lock()["run_id"] == second["name"]
    assert stack.lock()["last_fingerprint"] == first_fingerprint  # the run taken over had run
    late = stack.deliver_end_event(stopped, monkeypatch)
    assert not late["released"] and stack.lock()["run_id"] == second["name"]


def test_a_lock_whose_starter_died_is_taken_over_after_the_grace_period(
    stack, monkeypatch, rentals_days
) -> None:
    upload_dimensions(stack, monkeypatch)
    stack.upload_and_validate("rental_transactions", rentals_days[0], monkeypatch)
    ledger = Ledger(stack.dynamodb, stack.table)
    dead = ledger.acquire("20261201T075959Z", stack.clock.now, ledger.lock(), holder_ran=False)
    assert dead is not None  # a start that died before StartExecution

    decisions = stack.settle(monkeypatch)
    grace = int(stack.environments["RunSchedulerStartFunction"]["START_GRACE_SECONDS"])
    assert {d["status"] for d in decisions} == {"starting"}
    assert stack.executions() == []
    stack.clock.advance(grace)
    assert "started" in statuses(stack.pump(monkeypatch))
    (execution,) = stack.executions()
    assert execution["name"] != "20261201T075959Z"


def test_no_run_before_every_dataset_has_a_file(stack, monkeypatch, rentals_days) -> None:
    stack.upload_and_validate("rental_transactions", rentals_days[0], monkeypatch)
    (decision,) = stack.settle(monkeypatch)
    assert decision["status"] == "missing_inputs"
    assert "vehicles, locations, users" in decision["reason"]
    assert "run_id" not in stack.lock() and stack.executions() == []


def test_a_run_waits_while_an_upload_is_being_validated(stack, monkeypatch, rentals_days) -> None:
    upload_dimensions(stack, monkeypatch)
    stack.upload_and_validate("rental_transactions", rentals_days[0], monkeypatch)
    ledger = Ledger(stack.dynamodb, stack.table)
    ledger.begin_validating(
        "raw/users/big.csv", "v1", "someone", stack.clock.now, timedelta(days=1)
    )

    decisions = stack.settle(monkeypatch)
    assert {d["status"] for d in decisions} == {"validating"}
    assert all(
        d["recheck_in"] == max(stack.settle_seconds, sys.modules["scheduler"].MIN_RECHECK_SECONDS)
        for d in decisions
    )
    timeout = int(stack.environments["RunSchedulerStartFunction"]["VALIDATION_TIMEOUT_SECONDS"])
    stack.clock.advance(timeout)  # its function timed out long ago: a crash, not a validation
    assert "started" in statuses(stack.pump(monkeypatch))
