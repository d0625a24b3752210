"""carrental.aws.ledger against moto's DynamoDB, with the table the template defines: which upload
wins, what an accepted file changes, the run lock, the settle window's marks. Expected orders
are worked out by hand from the rules the docstrings cite."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

from carrental.aws.ledger import (
    MAX_DELAY_SECONDS,
    Arrival,
    Ledger,
    LedgerConflict,
    request_run,
    sequencer_later,
)
from carrental.inputs import InputFile
from tests.aws.daily import InterleavedClient, table_properties
from tests.aws.template import load_template

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
SHA = {name: name * 64 for name in "abcdef"}  # stand-in digests: the ledger never recomputes them


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with mock_aws():
        client = boto3.client("dynamodb")
        client.create_table(TableName="ledger", **table_properties(load_template(), "LedgerTable"))
        yield Ledger(client, "ledger")


def rentals(key: str, sha: str, at: datetime) -> InputFile:
    return InputFile("rental_transactions", key, sha, 10, at.isoformat(), at.isoformat(), "v")


def users(key: str, sha: str, at: datetime) -> InputFile:
    return InputFile("users", key, sha, 10, at.isoformat(), at.isoformat(), "v")


def arrival(key: str, sequencer: str, at: datetime = T0, version: str | None = None) -> Arrival:
    return Arrival(key, version or f"version-{sequencer}", sequencer, at)


def test_sequencers_compare_right_padded_as_the_s3_page_says() -> None:
    assert sequencer_later("00665AE1D1E7A1B004", "00665AE1D1E7A1B003")
    assert not sequencer_later("00665AE1D1E7A1B003", "00665AE1D1E7A1B003")
    # lengths differ: "B" padded on the right is "B00", above "0A1" (padded on the left it
    # would be "00B", below it)
    assert sequencer_later("B", "0A1") and not sequencer_later("0A1", "B")
    # a trailing zero is what right padding adds: the same position in the sequence
    assert not sequencer_later("ABC0", "ABC") and not sequencer_later("ABC", "ABC0")
    assert not sequencer_later("00abc", "00ABC")  # hexadecimal: case is no order


def test_between_keys_the_event_time_decides_then_the_key() -> None:
    early, late = T0, T0 + timedelta(seconds=1)
    assert arrival("raw/users/b.csv", "01", late).is_later_than(
        arrival("raw/users/a.csv", "FF", early)
    )
    assert arrival("raw/users/b.csv", "01", early).is_later_than(
        arrival("raw/users/a.csv", "FF", early)
    )
    assert not arrival("raw/users/a.csv", "FF", early).is_later_than(
        arrival("raw/users/b.csv", "01", early)
    )


def test_a_rentals_key_is_added_corrected_kept_and_never_set_back(ledger) -> None:
    key = "raw/rental_transactions/day-1.csv"
    first = rentals(key, SHA["a"], T0)
    assert ledger.accept(first, arrival(key, "10")) == "added"
    later = T0 + timedelta(hours=1)
    assert ledger.accept(rentals(key, SHA["b"], later), arrival(key, "20")) == "replaced"
    entry = ledger.entry("rental_transactions", key)
    assert entry.file.sha256 == SHA["b"]
    assert entry.file.first_accepted_at == first.first_accepted_at  # its place in the history
    # the same content again, later: nothing changes, but the later upload is remembered...
    assert ledger.accept(rentals(key, SHA["b"], later), arrival(key, "40")) == "unchanged"
    # ...so an upload between the two, whose event comes last, is older than what the key holds
    assert ledger.accept(rentals(key, SHA["c"], later), arrival(key, "30")) == "superseded"
    assert ledger.accept(rentals(key, SHA["b"], later), arrival(key, "40")) == "unchanged"  # replay
    assert ledger.entry("rental_transactions", key).file.sha256 == SHA["b"]
    assert list(ledger.inputs().rentals) == [key]


def test_a_snapshot_follows_the_latest_upload_whatever_its_name(ledger) -> None:
    monday, tuesday = "raw/users/monday.csv", "raw/users/tuesday.csv"
    assert ledger.accept(users(monday, SHA["a"], T0), arrival(monday, "99", T0)) == "added"
    noon = T0 + timedelta(hours=4)
    assert ledger.accept(users(tuesday, SHA["b"], noon), arrival(tuesday, "01", noon)) == "replaced"
    late = ledger.accept(users(monday, SHA["c"], T0), arrival(monday, "A0", T0))  # delivered late
    assert late == "superseded"
    after = noon + timedelta(seconds=1)
    copy = "raw/users/copy.csv"
    same = ledger.accept(users(copy, SHA["b"], after), arrival(copy, "01", after))
    assert same == "unchanged"
    assert ledger.inputs().snapshots["users"].key == tuesday  # the file runs read is unchanged


@pytest.mark.parametrize(
    ("first_sequencer", "racing_sequencer", "first_change", "winner"),
    [
        ("10", "20", "superseded", "b"),  # the racing upload is later: it stays
        ("20", "10", "replaced", "a"),  # the racing upload is older: this one replaces it
    ],
)
def test_two_accepts_racing_on_one_key_lose_no_update(
    ledger, first_sequencer, racing_sequencer, first_change, winner
) -> None:
    key = "raw/rental_transactions/day-1.csv"

    def the_other_upload_lands() -> None:
        other = Ledger(ledger.dynamodb._client, ledger.table)
        assert other.accept(rentals(key, SHA["b"], T0), arrival(key, racing_sequencer)) == "added"

    ledger.dynamodb = InterleavedClient(ledger.dynamodb, "put_item", the_other_upload_lands)
    change = ledger.accept(rentals(key, SHA["a"], T0), arrival(key, first_sequencer))
    assert change == first_change
    assert ledger.entry("rental_transactions", key).file.sha256 == SHA[winner]


def test_an_item_that_keeps_changing_is_a_conflict(ledger) -> None:
    key = "raw/rental_transactions/day-1.csv"
    sequencers = iter(range(1, 100))

    class AlwaysChanging:
        def __init__(self, client) -> None:
            self.client = client

        def __getattr__(self, name):
            if name != "put_item":
                return getattr(self.client, name)

            def put_item(**kwargs):
                Ledger(self.client, "ledger").accept(
                    rentals(key, SHA["b"], T0), arrival(key, f"{next(sequencers):02X}")
                )
                return self.client.put_item(**kwargs)

            return put_item

    racing = Ledger(AlwaysChanging(ledger.dynamodb), ledger.table)
    with pytest.raises(LedgerConflict, match="kept changing"):
        racing.accept(rentals(key, SHA["a"], T0), arrival(key, "FF"))


def test_a_file_is_withdrawn_only_while_the_ledger_holds_that_content(ledger) -> None:
    key = "raw/rental_transactions/day-1.csv"
    ledger.accept(rentals(key, SHA["a"], T0), arrival(key, "10"))
    assert not ledger.withdraw(key, SHA["b"])  # a correction arrived meanwhile
    assert ledger.withdraw(key, SHA["a"])
    assert ledger.inputs().rentals == {}


def test_the_run_lock(ledger) -> None:
    free = ledger.lock()
    assert free.run_id is None and free.revision == 0
    held = ledger.acquire("run-1", T0, free, holder_ran=False)
    assert held.run_id == "run-1" and held.acquired_at == T0
    assert ledger.acquire("run-2", T0, free, holder_ran=False) is None  # it changed since read
    assert ledger.set_fingerprint("run-1", SHA["a"]) and not ledger.set_fingerprint(
        "run-2", SHA["b"]
    )
    assert ledger.record_execution("run-1", "arn:execution:run-1")
    assert not ledger.release("run-2", ran=True)
    assert ledger.release("run-1", ran=True)
    released = ledger.lock()
    assert released.run_id is None and released.last_fingerprint == SHA["a"]
    assert released.fingerprint is None and released.execution_arn is None

    # taken over from a run that ran: its inputs become the last run's; from one that never
    # started, they do not
    ledger.acquire("run-3", T0, released, holder_ran=False)
    ledger.set_fingerprint("run-3", SHA["c"])
    never_started = ledger.lock()
    ledger.acquire("run-4", T0, never_started, holder_ran=False)
    assert ledger.lock().last_fingerprint == SHA["a"]
    ledger.set_fingerprint("run-4", SHA["d"])
    ledger.acquire("run-5", T0, ledger.lock(), holder_ran=True)
    assert ledger.lock().last_fingerprint == SHA["d"]
    assert ledger.release("run-5", ran=False) and ledger.lock().last_fingerprint == SHA["d"]


def test_validating_marks_and_the_activity(ledger) -> None:
    keep = timedelta(days=1)
    ledger.begin_validating("raw/users/a.csv", "v1", "attempt-1", T0, keep)
    ledger.begin_validating("raw/users/b.csv", None, "attempt-2", T0 - timedelta(hours=1), keep)
    fresh = ledger.validating(T0 + timedelta(minutes=1), stale_after=timedelta(minutes=15))
    assert [m["key"] for m in fresh] == ["raw/users/a.csv"]
    assert fresh[0]["expires_at"] == int((T0 + keep).timestamp())

    ledger.begin_validating("raw/users/a.csv", "v1", "attempt-3", T0, keep)  # a retry takes over
    ledger.end_validating("raw/users/a.csv", "v1", "attempt-1", T0 + timedelta(minutes=2))
    assert len(ledger.validating(T0, timedelta(minutes=15))) == 1  # not the crashed one's to end
    ledger.end_validating("raw/users/a.csv", "v1", "attempt-3", T0 + timedelta(minutes=3))
    assert ledger.validating(T0, timedelta(minutes=15)) == []
    assert ledger.last_activity() == T0 + timedelta(minutes=3)
    ledger.end_validating("raw/users/b.csv", None, "attempt-2", T0 + timedelta(minutes=1))
    assert ledger.last_activity() == T0 + timedelta(minutes=3)  # an earlier end moves nothing back


@pytest.mark.parametrize(
    ("asked", "sent"), [(0, 0), (0.2, 1), (119.5, 120), (5000, MAX_DELAY_SECONDS)]
)
def test_run_requests_are_delayed_within_what_sqs_allows(asked, sent) -> None:
    with mock_aws():
        sqs = boto3.client("sqs")
        queue = sqs.create_queue(QueueName="requests")["QueueUrl"]
        assert request_run(sqs, queue, delay_seconds=asked, reason="test", key="k") == sent
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        waiting = int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesDelayed"]
        )
        assert waiting == 1
        if sent == 0:
            (message,) = sqs.receive_message(QueueUrl=queue)["Messages"]
            assert json.loads(message["Body"]) == {"reason": "test", "key": "k"}
