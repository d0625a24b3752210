"""The stack's ledger: the accepted inputs (carrental.inputs) in one DynamoDB table, with the
bookkeeping of the settle window and of the run lock, and the run-request queue beside it
(docs/architecture.md, "On AWS").

    pk          sk                       holds
    history     <key>                    an accepted rentals file: the InputFile fields, and the
                                         latest upload seen under its key (its S3 event)
    snapshot    <dataset>                the current file of a dimension: the same fields
    validating  <hash of key, version>   an upload being validated: key, version_id, started_at,
                                         attempt, expires_at (the table's time to live)
    pipeline    activity                 last_activity_at: when the latest validation ended
    pipeline    lock                     while a run holds it: run_id, acquired_at, fingerprint
                                         (of its manifest, once written), execution_arn; always:
                                         last_fingerprint, the inputs of the last run that ran

What an accepted file changes is Inputs.accept's rule (carrental.inputs: a correction keeps its
place in the history, identical content changes nothing); this module decides only whether an
upload is newer than what the table holds, and makes every change a conditional write on the
item as it was read (its `revision`), so that two functions racing on one item never lose an
update: the loser reads again and decides again.

Which upload is newer: for one key, S3's `sequencer`; between keys (a snapshot uploaded under a
new name), the event time (EventBridge's, to the second), then the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from botocore.exceptions import ClientError

from carrental.inputs import HISTORY_DATASET, InputFile, Inputs

HISTORY, SNAPSHOT, VALIDATING, PIPELINE = "history", "snapshot", "validating", "pipeline"
ACTIVITY, LOCK = "activity", "lock"
EXPIRES_AT = "expires_at"  # the table's time-to-live attribute (template.yaml, LedgerTable)
# Attempts at a conditional write whose item another function changed in between.
CONFLICT_ATTEMPTS = 5
# SendMessage's DelaySeconds: "Valid values: 0 to 900":
# https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html
MAX_DELAY_SECONDS = 900
# What a put, update or delete answers when the item does not meet its ConditionExpression:
# https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_PutItem.html#API_PutItem_Errors
_CONDITION_FAILED = "ConditionalCheckFailedException"


class LedgerConflict(RuntimeError):
    """An item kept changing under a conditional write; the caller's retry settles it."""


def _timestamp(moment: datetime) -> str:
    """A fixed-width UTC time: its text order is its time order (DynamoDB compares strings)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def sequencer_later(a: str, b: str) -> bool:
    """Whether S3 sequencer `a` marks a later event on a key than `b`: "The sequencers can be of
    different lengths. So, to compare these values, first right pad the shorter value with
    zeros, and then do a lexicographical comparison"
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html;
    earlier versions of that page said left pad, the current one says right pad)."""
    width = max(len(a), len(b))
    return a.upper().ljust(width, "0") > b.upper().ljust(width, "0")


@dataclass(frozen=True)
class Arrival:
    """An upload as its S3 "Object Created" event describes it."""

    key: str
    version_id: str | None
    sequencer: str
    event_time: datetime

    def is_same_upload(self, other: Arrival) -> bool:
        if self.key != other.key:
            return False
        if self.version_id is not None or other.version_id is not None:
            return self.version_id == other.version_id
        return self.sequencer == other.sequencer

    def is_later_than(self, other: Arrival) -> bool:
        # "You can't use sequencer to determine order for events on different object keys"
        # (same page as sequencer_later).
        if self.key == other.key:
            return sequencer_later(self.sequencer, other.sequencer)
        return (self.event_time, self.key) > (other.event_time, other.key)


@dataclass(frozen=True)
class Entry:
    """One ledger item of an input: what runs read, and the latest upload seen for it."""

    file: InputFile
    arrival: Arrival
    revision: int


@dataclass(frozen=True)
class Lock:
    run_id: str | None  # the run holding the lock; None when it is free
    acquired_at: datetime | None
    fingerprint: str | None  # the holder's manifest fingerprint, once its manifest is written
    execution_arn: str | None
    last_fingerprint: str | None  # the inputs of the last run that ran
    revision: int


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


def _plain(item: dict) -> dict:
    return {name: int(v["N"]) if "N" in v else v["S"] for name, v in item.items()}


def _address(dataset: str, key: str) -> dict:
    if dataset == HISTORY_DATASET:
        return {"pk": _s(HISTORY), "sk": _s(key)}
    return {"pk": _s(SNAPSHOT), "sk": _s(dataset)}


def _entry(item: dict) -> Entry:
    plain = _plain(item)
    return Entry(
        InputFile.from_dict(plain),
        Arrival(
            plain["arrival_key"],
            plain.get("arrival_version"),
            plain["sequencer"],
            _moment(plain["event_time"]),
        ),
        plain["revision"],
    )


def _entry_item(file: InputFile, arrival: Arrival, revision: int) -> dict:
    item = {
        **_address(file.dataset, file.key),
        **{
            name: _s(value)
            for name, value in file.to_dict().items()
            if isinstance(value, str) and name != "staged"
        },
        "rows": _n(file.rows),
        "arrival_key": _s(arrival.key),
        "sequencer": _s(arrival.sequencer),
        "event_time": _s(_timestamp(arrival.event_time)),
        "revision": _n(revision),
    }
    if arrival.version_id is not None:
        item["arrival_version"] = _s(arrival.version_id)
    return item


def _validating_key(key: str, version_id: str | None) -> dict:
    # A sort key holds at most 1,024 bytes and an S3 key may have that many on its own:
    # https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html
    digest = hashlib.sha256(f"{key}\0{version_id or ''}".encode()).hexdigest()
    return {"pk": _s(VALIDATING), "sk": _s(digest)}


def _lock(item: dict | None) -> Lock:
    plain = _plain(item or {})
    acquired = plain.get("acquired_at")
    return Lock(
        plain.get("run_id"),
        _moment(acquired) if acquired else None,
        plain.get("fingerprint"),
        plain.get("execution_arn"),
        plain.get("last_fingerprint"),
        plain.get("revision", 0),
    )


class Ledger:
    def __init__(self, dynamodb, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    def _write_if(self, write, **request) -> dict | None:
        """`write` (the client's put_item, update_item or delete_item) on the table, with the
        condition in `request`: DynamoDB's answer, or None when the item did not meet it."""
        try:
            return write(TableName=self.table, **request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != _CONDITION_FAILED:
                raise
            return None

    # ------------------------------------------------------------------ reading

    def _get(self, key: dict) -> dict | None:
        return self.dynamodb.get_item(TableName=self.table, Key=key, ConsistentRead=True).get(
            "Item"
        )

    def _query(self, pk: str) -> Iterator[dict]:
        request = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": _s(pk)},
            "ConsistentRead": True,
        }
        while True:
            page = self.dynamodb.query(**request)
            yield from page["Items"]
            if "LastEvaluatedKey" not in page:
                return
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def inputs(self) -> Inputs:
        """The accepted inputs, as carrental.inputs knows them."""
        rentals = [_entry(item).file for item in self._query(HISTORY)]
        snapshots = [_entry(item).file for item in self._query(SNAPSHOT)]
        return Inputs({f.dataset: f for f in snapshots}, {f.key: f for f in rentals})

    def entry(self, dataset: str, key: str) -> Entry | None:
        """The item an upload of `key` (a file of `dataset`) would change."""
        item = self._get(_address(dataset, key))
        return _entry(item) if item else None

    # ------------------------------------------------------------------ accepting

    def accept(self, accepted: InputFile, arrival: Arrival) -> str:
        """Record an accepted file: "added", "replaced" or "unchanged" (Inputs.accept), or
        "superseded" when the table already holds a later upload."""
        for _ in range(CONFLICT_ATTEMPTS):
            current = self.entry(accepted.dataset, accepted.key)
            inputs = Inputs()
            if current is not None:
                if arrival.is_same_upload(current.arrival):
                    return "unchanged"
                if not arrival.is_later_than(current.arrival):
                    return "superseded"
                inputs.accept(current.file)
            change = inputs.accept(accepted)
            stored = inputs.rentals.get(accepted.key) or inputs.snapshots[accepted.dataset]
            # identical content: the file stays as it was; the later upload becomes the one a
            # late event is compared with
            if self._put_entry(stored, arrival, current):
                return change
        raise LedgerConflict(f"the ledger entry of {accepted.key} kept changing; try again")

    def _put_entry(self, file: InputFile, arrival: Arrival, current: Entry | None) -> bool:
        revision = current.revision if current else 0
        condition = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if current is None
            else {
                "ConditionExpression": "revision = :seen",
                "ExpressionAttributeValues": {":seen": _n(revision)},
            }
        )
        written = self._write_if(
            self.dynamodb.put_item, Item=_entry_item(file, arrival, revision + 1), **condition
        )
        return written is not None

    def withdraw(self, key: str, sha256: str) -> bool:
        """Take a rentals file out of the history (held back by a run's gate), unless the ledger
        holds other content under its key by now (a correction gets its own chance)."""
        deleted = self._write_if(
            self.dynamodb.delete_item,
            Key=_address(HISTORY_DATASET, key),
            ConditionExpression="sha256 = :sha",
            ExpressionAttributeValues={":sha": _s(sha256)},
        )
        return deleted is not None

    # ------------------------------------------------------------------ the settle window

    def begin_validating(
        self, key: str, version_id: str | None, attempt: str, now: datetime, keep: timedelta
    ) -> None:
        """Mark an upload as being validated by `attempt` (a later attempt, e.g. Lambda's retry
        after a crash, takes the mark over). The mark expires from the table after `keep`;
        DynamoDB deletes expired items within days, so readers also judge it by started_at:
        https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html"""
        self.dynamodb.put_item(
            TableName=self.table,
            Item={
                **_validating_key(key, version_id),
                "key": _s(key),
                **({"version_id": _s(version_id)} if version_id else {}),
                "started_at": _s(_timestamp(now)),
                "attempt": _s(attempt),
                EXPIRES_AT: _n(int((now + keep).timestamp())),
            },
        )

    def end_validating(self, key: str, version_id: str | None, attempt: str, now: datetime) -> None:
        """Remove this attempt's mark (not a later attempt's) and stamp the activity."""
        self._write_if(
            self.dynamodb.delete_item,
            Key=_validating_key(key, version_id),
            ConditionExpression="attempt = :attempt",
            ExpressionAttributeValues={":attempt": _s(attempt)},
        )
        # not written when a later validation stamped it already
        self._write_if(
            self.dynamodb.update_item,
            Key={"pk": _s(PIPELINE), "sk": _s(ACTIVITY)},
            UpdateExpression="SET last_activity_at = :now",
            ConditionExpression="attribute_not_exists(last_activity_at) OR last_activity_at < :now",
            ExpressionAttributeValues={":now": _s(_timestamp(now))},
        )

    def validating(self, now: datetime, stale_after: timedelta) -> list[dict]:
        """The uploads being validated, without marks older than `stale_after` (their function
        has timed out by then: a crash, whose retry marks the upload again)."""
        marks = [_plain(item) for item in self._query(VALIDATING)]
        return [m for m in marks if now - _moment(m["started_at"]) < stale_after]

    def last_activity(self) -> datetime | None:
        item = self._get({"pk": _s(PIPELINE), "sk": _s(ACTIVITY)})
        return _moment(item["last_activity_at"]["S"]) if item else None

    # ------------------------------------------------------------------ the run lock

    def lock(self) -> Lock:
        return _lock(self._get({"pk": _s(PIPELINE), "sk": _s(LOCK)}))

    def _update_lock(self, update: str, condition: str, values: dict) -> Lock | None:
        answer = self._write_if(
            self.dynamodb.update_item,
            Key={"pk": _s(PIPELINE), "sk": _s(LOCK)},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
        return None if answer is None else _lock(answer["Attributes"])

    def acquire(self, run_id: str, now: datetime, seen: Lock, *, holder_ran: bool) -> Lock | None:
        """Take the lock for `run_id` if it is still as `seen` (free, or held by a run that may
        be taken over); None if another function changed it first. `holder_ran`: the run
        taken over did run, so its inputs become the last run's."""
        sets = ["run_id = :run", "acquired_at = :now", "revision = :next"]
        values = {":run": _s(run_id), ":now": _s(_timestamp(now)), ":next": _n(seen.revision + 1)}
        if seen.run_id and holder_ran and seen.fingerprint:
            sets.append("last_fingerprint = :last")
            values[":last"] = _s(seen.fingerprint)
        if seen.revision:
            condition, values[":seen"] = "revision = :seen", _n(seen.revision)
        else:
            condition = "attribute_not_exists(revision)"
        return self._update_lock(
            f"SET {', '.join(sets)} REMOVE fingerprint, execution_arn", condition, values
        )

    def _set_for_holder(self, run_id: str, attribute: str, value: str) -> bool:
        return (
            self._update_lock(
                f"SET {attribute} = :value, revision = revision + :one",
                "run_id = :run",
                {":value": _s(value), ":one": _n(1), ":run": _s(run_id)},
            )
            is not None
        )

    def set_fingerprint(self, run_id: str, fingerprint: str) -> bool:
        """What the holder's run computes from (False: `run_id` does not hold the lock)."""
        return self._set_for_holder(run_id, "fingerprint", fingerprint)

    def record_execution(self, run_id: str, execution_arn: str) -> bool:
        return self._set_for_holder(run_id, "execution_arn", execution_arn)

    def release(self, run_id: str, *, ran: bool) -> bool:
        """Free the lock if `run_id` holds it; `ran`: its inputs become the last run's."""
        for _ in range(CONFLICT_ATTEMPTS):
            held = self.lock()
            if held.run_id != run_id:
                return False
            sets, values = ["revision = :next"], {":next": _n(held.revision + 1)}
            if ran and held.fingerprint:
                sets.append("last_fingerprint = :last")
                values[":last"] = _s(held.fingerprint)
            values[":seen"] = _n(held.revision)
            update = f"SET {', '.join(sets)} REMOVE run_id, acquired_at, fingerprint, execution_arn"
            if self._update_lock(update, "revision = :seen", values) is not None:
                return True
        raise LedgerConflict(f"the run lock kept changing while {run_id} released it")


# ---------------------------------------------------------------------- the run-request queue


def request_run(sqs, queue_url: str, *, delay_seconds: float, reason: str, **details) -> int:
    """Ask the run scheduler to consider a run in `delay_seconds` (at most 900, SendMessage's
    limit); returns the delay sent. Requests carry no state: the scheduler reads the ledger."""
    delay = max(0, min(MAX_DELAY_SECONDS, int(-(-delay_seconds // 1))))
    sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps({"reason": reason, **details}, default=str),
        DelaySeconds=delay,
    )
    return delay


def effective_fingerprint(manifest, held_back: set[str]) -> str:
    """The fingerprint of `manifest` without the files its run held back: what the ledger's
    manifest is once those files are withdrawn, so that withdrawing them starts no new run."""
    return replace(
        manifest, inputs=[f for f in manifest.inputs if f.key not in held_back]
    ).fingerprint
