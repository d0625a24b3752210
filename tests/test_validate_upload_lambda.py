"""The ValidateUpload Lambda on moto: S3, SNS (read through an SQS subscription), DynamoDB and
a real moto state machine. Events are the files in events/, as `sam local invoke` uses them;
only the ETag is set to the uploaded object's (S3 computes it from the content).

Concurrency is tested by interleaving the handler's steps deterministically, not with threads:
moto's TransactWriteItems is not thread-safe (a cancelled transaction restores a snapshot of
the whole table, undoing another thread's commit), so a threaded test would test moto."""

from __future__ import annotations

import copy
import gzip
import importlib.util
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import boto3
import pytest
from moto import mock_aws

from carrental.generate import generate
from carrental.lake import check_run_id
from carrental.validation import validate_stream
from tests.conftest import REPO_ROOT

LAMBDA_DIR = REPO_ROOT / "lambdas" / "validate_upload"
EVENTS = REPO_ROOT / "events"
REGION = "us-east-1"
BUCKET = "carrental-dev-datalake"  # the bucket named in events/*.json
TABLE = "carrental-batches"
DATASETS = ["vehicles", "locations", "users", "rental_transactions"]
EVENT_FILES = {name: f"{name}_created.json" for name in DATASETS}


ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_SERVICE_NAME": "validate-upload",
    "POWERTOOLS_METRICS_NAMESPACE": "carrental",
}


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real account: fake credentials, one region, no local AWS config."""
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def app() -> ModuleType:
    """lambdas/validate_upload/app.py under its own name; its folder is on sys.path as in the
    Lambda runtime, so `import upload_batch` works. Powertools reads its settings on import."""
    sys.path.insert(0, str(LAMBDA_DIR))
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in ENVIRONMENT.items():
                patch.setenv(name, value)
            spec = importlib.util.spec_from_file_location(
                "validate_upload_app", LAMBDA_DIR / "app.py"
            )
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(LAMBDA_DIR))
    return module


@pytest.fixture(scope="module")
def batch(app) -> ModuleType:
    return sys.modules["upload_batch"]


@pytest.fixture(scope="module")
def clean_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small batches: these tests are about the Lambda, not about volume."""
    out = tmp_path_factory.mktemp("upload_clean")
    generate(out, scale=0.02, seed=5)
    return out


@pytest.fixture(scope="module")
def dirty_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("upload_dirty")
    generate(out, scale=0.02, seed=6, dirty_rate=0.03)
    return out


@dataclass(frozen=True)
class Context:
    function_name: str = "validate-upload"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:validate-upload"
    aws_request_id: str = "test-request"


@dataclass
class Lake:
    s3: object
    sqs: object
    dynamodb: object
    sfn: object
    queue_url: str
    machine_arn: str

    def put(self, key: str, data: bytes) -> str:
        return self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)["ETag"].strip('"')

    def body(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    def executions(self) -> list[dict]:
        listed = self.sfn.list_executions(stateMachineArn=self.machine_arn)["executions"]
        return [self.sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]

    def alerts(self) -> list[dict]:
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    def dataset_item(self, dataset: str) -> dict:
        item = self.dynamodb.get_item(
            TableName=TABLE, Key={"pk": {"S": "dataset"}, "sk": {"S": dataset}}
        ).get("Item", {})
        return {name: next(iter(value.values())) for name, value in item.items()}


@pytest.fixture
def lake(app, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lake]:
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        sns, sqs = boto3.client("sns"), boto3.client("sqs")
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        sfn = boto3.client("stepfunctions")
        machine = sfn.create_state_machine(
            name="CarRentalPipeline",
            definition=json.dumps(
                {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
            ),
            roleArn="arn:aws:iam::123456789012:role/pipeline",
        )["stateMachineArn"]
        monkeypatch.setenv("STATE_MACHINE_ARN", machine)
        monkeypatch.setenv("ALERT_TOPIC_ARN", topic)
        monkeypatch.setenv("BATCH_TABLE_NAME", TABLE)
        app.aws_clients.cache_clear()
        yield Lake(s3, sqs, dynamodb, sfn, queue_url, machine)
        app.aws_clients.cache_clear()


def event(name: str, etag: str, *, key: str | None = None, time: str | None = None) -> dict:
    loaded = json.loads((EVENTS / name).read_text())
    loaded["detail"]["object"]["etag"] = etag
    if key is not None:
        loaded["detail"]["object"]["key"] = key
    if time is not None:
        loaded["time"] = time
    return loaded


def event_key(dataset: str) -> str:
    return json.loads((EVENTS / EVENT_FILES[dataset]).read_text())["detail"]["object"]["key"]


def invoke(app: ModuleType, payload: dict) -> dict:
    return app.lambda_handler(copy.deepcopy(payload), Context())


def upload_all(lake: Lake, folder: Path, suffix: str = "") -> dict[str, dict]:
    """Put the four files of a generated batch at the events' keys; return their events."""
    events = {}
    for dataset in DATASETS:
        key = event_key(dataset).replace(".csv", f"{suffix}.csv")
        etag = lake.put(key, (folder / f"{dataset}.csv").read_bytes())
        events[dataset] = event(EVENT_FILES[dataset], etag, key=key)
    return events


def test_four_uploads_start_exactly_one_run(app, lake, clean_batch, capsys):
    events = upload_all(lake, clean_batch)
    for dataset in DATASETS[:3]:
        assert invoke(app, events[dataset])["status"] == "accepted"
        assert lake.executions() == []
    last = invoke(app, events["rental_transactions"])
    assert last["status"] == "accepted" and last["run_started"]
    (execution,) = lake.executions()
    sent = json.loads(execution["input"])
    assert sent == {
        "run_id": execution["name"],
        "bucket": BUCKET,
        "inputs": {d: events[d]["detail"]["object"]["key"] for d in DATASETS},
        "etags": {d: events[d]["detail"]["object"]["etag"] for d in DATASETS},
    }
    assert check_run_id(sent["run_id"]) and len(sent["run_id"]) <= 80
    assert last["run_id"] == sent["run_id"] and last["execution_arn"] == execution["executionArn"]
    assert all(lake.dataset_item(d)["consumed_by"] == sent["run_id"] for d in DATASETS)
    assert lake.alerts() == []
    metrics = capsys.readouterr().out
    assert '"FilesAccepted"' in metrics and '"RunsStarted"' in metrics

    for dataset in DATASETS:  # EventBridge delivers at least once: a replay starts nothing
        replay = invoke(app, events[dataset])
        assert replay["status"] == "duplicate" and not replay["run_started"]
    assert len(lake.executions()) == 1


def phases(batch, lake: Lake, settings, upload, aws):
    """The handler's steps for one upload, as separately schedulable pieces: two invocations
    may both find the batch complete and start it before either marks it consumed."""
    state: dict = {}
    table = settings.batch_table
    dataset = batch.infer_dataset(upload.key_candidates[0])

    def begin():
        state["object"] = batch.open_upload(lake.s3, upload)
        state["go"] = batch.begin_validation(lake.dynamodb, table, dataset, state["object"])

    def validate():
        if state["go"] == "validate":
            verdict = validate_stream(state["object"].body, dataset=dataset, source="s3")
            assert verdict.accepted
            batch.record_verdict(lake.dynamodb, table, dataset, state["object"], verdict)

    def launch():
        state["launched"] = batch.launch_batch(aws, settings, BUCKET)

    def claim():
        launched = state["launched"]
        state["start"] = launched and batch.claim_batch(lake.dynamodb, table, launched)

    return [begin, validate, launch, claim], state


@pytest.mark.parametrize("seed", [*range(10), "step-by-step", "reverse"])
def test_interleaved_burst_after_a_previous_run_starts_one_run_with_the_new_files(
    app, batch, lake, clean_batch, dirty_batch, seed
):
    for payload in upload_all(lake, dirty_batch, suffix="-old").values():
        invoke(app, payload)
    assert len(lake.executions()) == 1  # the previous batch ran and consumed its files

    new = upload_all(lake, clean_batch, suffix="-new")
    settings = batch.Settings.from_env()
    aws = app.aws_clients()
    pieces = []
    for payload in new.values():
        obj = payload["detail"]["object"]
        upload = batch.Upload(BUCKET, obj["key"], obj["etag"], "2024-06-02T00:00:00Z")
        steps, state = phases(batch, lake, settings, upload, aws)
        pieces.append((steps, state))
    if seed == "step-by-step":  # everyone begins, then validates, then launches, then claims
        schedule = [i for step in range(4) for i in range(4)]
    elif seed == "reverse":
        schedule = [i for i in reversed(range(4)) for _ in range(4)]
    else:
        schedule = [i for i in range(4) for _ in range(4)]
        random.Random(seed).shuffle(schedule)  # any order; each upload keeps its step order
    for i in schedule:
        steps, _ = pieces[i]
        steps.pop(0)()

    executions = lake.executions()
    assert len(executions) == 2
    newest = max(executions, key=lambda e: e["startDate"])
    assert json.loads(newest["input"])["inputs"] == {
        d: new[d]["detail"]["object"]["key"] for d in DATASETS
    }
    starters = [state["start"] for _, state in pieces if state["start"] and state["start"].started]
    assert len(starters) == 1  # exactly one invocation reports the start


class CrashAfterStart:
    """The DynamoDB client of a Lambda that dies right after StartExecution, before it marks
    the batch consumed (a timeout, an out-of-memory kill): a crash, not an error to handle."""

    def __init__(self, client) -> None:
        self._client = client

    def __getattr__(self, name: str):
        return getattr(self._client, name)

    def transact_write_items(self, **kwargs):
        raise SystemExit("killed")


@pytest.mark.filterwarnings("ignore:No application metrics")  # the killed invocation
def test_a_crash_between_start_and_consume_is_finished_by_the_retry(app, batch, lake, clean_batch):
    events = upload_all(lake, clean_batch)
    for dataset in DATASETS[:3]:
        invoke(app, events[dataset])
    healthy = app.aws_clients()
    crashing = batch.Aws(
        healthy.s3, healthy.sns, CrashAfterStart(healthy.dynamodb), healthy.stepfunctions
    )
    app.aws_clients.cache_clear()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(app, "aws_clients", lambda: crashing)
        with pytest.raises(SystemExit):
            invoke(app, events["rental_transactions"])
    assert len(lake.executions()) == 1  # started, but nothing marked consumed
    assert "consumed_by" not in lake.dataset_item("vehicles")
    retry = invoke(app, events["rental_transactions"])  # Lambda's async retry: same event
    assert retry["status"] == "duplicate" and retry["run_started"]
    assert len(lake.executions()) == 1  # same content, same name: no second run
    assert {lake.dataset_item(d)["consumed_by"] for d in DATASETS} == {retry["run_id"]}


def test_a_transaction_conflict_is_retried(batch):
    """Real DynamoDB may cancel two concurrent transactions on the same items
    (TransactionConflict); moto never does, so the service's answers are stubbed here."""
    from botocore.stub import Stubber

    client = boto3.client("dynamodb")
    inputs = {d: f"raw/{d}/{d}.csv" for d in DATASETS}
    etags = dict.fromkeys(DATASETS, "abc")
    with Stubber(client) as stub:
        for reason in ("TransactionConflict", "TransactionConflict"):
            stub.add_client_error(
                "transact_write_items",
                service_error_code="TransactionCanceledException",
                response_meta={},
                modeled_fields={"CancellationReasons": [{"Code": reason}] * 4},
            )
        stub.add_response("transact_write_items", {})
        assert batch.consume_batch(client, TABLE, inputs, etags, "batch-1")
        stub.assert_no_pending_responses()
    with Stubber(client) as stub:
        stub.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            modeled_fields={"CancellationReasons": [{"Code": "ConditionalCheckFailed"}] * 4},
        )
        assert not batch.consume_batch(client, TABLE, inputs, etags, "batch-1")


def test_rejected_file_is_quarantined_alerted_and_blocks_the_batch(app, lake, clean_batch):
    events = upload_all(lake, clean_batch)
    bad = (clean_batch / "rental_transactions.csv").read_bytes().replace(b"total_amount", b"amount")
    key = event_key("rental_transactions")
    etag = lake.put(key, bad)
    outcome = invoke(app, event(EVENT_FILES["rental_transactions"], etag))
    assert outcome["status"] == "rejected"
    assert outcome["quarantine_key"] == "quarantine/rental_transactions/rental_transactions.csv"
    assert lake.body(outcome["quarantine_key"]) == bad
    assert lake.body(key) == bad  # the raw object is untouched
    report = json.loads(lake.body(outcome["quarantine_key"] + ".errors.json"))
    assert report["verdict"] == "rejected" and report["source"] == f"s3://{BUCKET}/{key}"
    assert {(p["rule"], p["column"]) for p in report["problems"]} == {
        ("header_missing_column", "total_amount"),
        ("header_extra_column", "amount"),
    }
    (alert,) = lake.alerts()
    assert "rejected" in alert["Subject"] and alert["Subject"].isascii()
    assert f"s3://{BUCKET}/{key}" in alert["Message"]
    assert "the header lacks column 'total_amount'" in alert["Message"]
    assert lake.dataset_item("rental_transactions")["status"] == "rejected"

    for dataset in DATASETS[:3]:
        invoke(app, events[dataset])
    assert lake.executions() == []  # a rejected current file blocks the batch

    fixed_key = "raw/rental_transactions/rental_transactions-fixed.csv"
    fixed = event(
        EVENT_FILES["rental_transactions"],
        lake.put(fixed_key, (clean_batch / "rental_transactions.csv").read_bytes()),
        key=fixed_key,
        time="2024-06-01T10:00:00Z",
    )
    assert invoke(app, fixed)["run_started"]
    (execution,) = lake.executions()
    assert json.loads(execution["input"])["inputs"]["rental_transactions"] == fixed_key


@pytest.mark.parametrize(
    ("content", "first_rule"),
    [
        (lambda batch: gzip.compress((batch / "users.csv").read_bytes()), "not_csv_text"),
        (
            lambda batch: (batch / "users.csv").read_bytes()[:200].split(b"\n")[0] + b"\n",
            "no_data_rows",
        ),
        (
            lambda batch: (
                (batch / "users.csv").read_text().replace("@", "\xe9", 1).encode("latin-1")
            ),
            "not_utf8",
        ),
        (
            lambda batch: (batch / "users.csv").read_bytes().replace(b"email", b"mail", 1),
            "header_missing_column",
        ),
        (lambda batch: (batch / "vehicles.csv").read_bytes(), "header_missing"),
    ],
)
def test_each_kind_of_rejection_through_the_lambda(app, lake, clean_batch, content, first_rule):
    data = content(clean_batch)
    outcome = invoke(app, event(EVENT_FILES["users"], lake.put(event_key("users"), data)))
    assert outcome["status"] == "rejected"
    report = json.loads(lake.body("quarantine/users/users.csv.errors.json"))
    assert report["problems"][0]["rule"] == first_rule
    assert len(lake.alerts()) == 1


def test_too_many_bad_rows_over_the_configured_threshold(app, lake, dirty_batch, monkeypatch):
    monkeypatch.setenv("REJECT_THRESHOLD", "0.01")
    key = event_key("rental_transactions")
    etag = lake.put(key, (dirty_batch / "rental_transactions.csv").read_bytes())
    outcome = invoke(app, event(EVENT_FILES["rental_transactions"], etag))
    assert outcome["status"] == "rejected"
    report = json.loads(lake.body(outcome["quarantine_key"] + ".errors.json"))
    assert report["problems"][0]["rule"] == "reject_threshold"
    assert report["reject_threshold"] == 0.01


def test_unknown_dataset_folder_is_rejected_without_touching_batches(app, lake, clean_batch):
    key = "raw/cars/fleet.csv"
    etag = lake.put(key, (clean_batch / "vehicles.csv").read_bytes())
    outcome = invoke(app, event(EVENT_FILES["vehicles"], etag, key=key))
    assert outcome["status"] == "rejected" and outcome["dataset"] == "cars"
    assert outcome["quarantine_key"] == "quarantine/cars/fleet.csv"
    assert "unknown dataset 'cars'" in lake.alerts()[0]["Message"]
    assert lake.dynamodb.scan(TableName=TABLE)["Items"] == []


def test_url_encoded_key(app, lake, clean_batch):
    payload = json.loads((EVENTS / "url_encoded_key_created.json").read_text())
    decoded = "raw/rental_transactions/june 2024 été.csv"
    etag = lake.put(decoded, (clean_batch / "rental_transactions.csv").read_bytes())
    payload["detail"]["object"]["etag"] = etag
    outcome = invoke(app, payload)
    assert outcome["status"] == "accepted" and outcome["key"] == decoded
    assert lake.dataset_item("rental_transactions")["object_key"] == decoded


def test_key_sent_unencoded_with_a_plus_sign(app, lake, clean_batch):
    literal = "raw/rental_transactions/june+2024.csv"  # '+' is part of the name here
    etag = lake.put(literal, (clean_batch / "rental_transactions.csv").read_bytes())
    outcome = invoke(app, event(EVENT_FILES["rental_transactions"], etag, key=literal))
    assert outcome["status"] == "accepted" and outcome["key"] == literal


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, "not a .csv file"),  # events/non_csv_created.json as is
        ("processed/location_performance/part-0.csv", "not under raw/"),
        ("raw/vehicles/", "a folder marker"),
    ],
)
def test_ignored_objects(app, lake, key, reason):
    payload = event("non_csv_created.json", "0" * 32, key=key)
    outcome = invoke(app, payload)
    assert outcome["status"] == "ignored" and outcome["reason"] == reason
    assert lake.dynamodb.scan(TableName=TABLE)["Items"] == []
    assert lake.alerts() == [] and lake.executions() == []


def test_a_name_the_spark_jobs_cannot_read_is_refused_with_an_alert(app, lake, clean_batch):
    key = "raw/users/users-2024-06-01T10:00.csv"  # ':' cannot be part of a Hadoop path
    etag = lake.put(key, (clean_batch / "users.csv").read_bytes())
    outcome = invoke(app, event(EVENT_FILES["users"], etag, key=key))
    assert outcome["status"] == "refused" and "':'" in outcome["reason"]
    (alert,) = lake.alerts()
    assert f"s3://{BUCKET}/{key}" in alert["Message"] and "another name" in alert["Message"]
    assert lake.dynamodb.scan(TableName=TABLE)["Items"] == [] and lake.executions() == []


def test_an_older_event_never_overrides_a_newer_upload(app, lake, clean_batch):
    data = (clean_batch / "users.csv").read_bytes()
    older_key, newer_key = "raw/users/monday.csv", "raw/users/tuesday.csv"
    older = event(
        EVENT_FILES["users"], lake.put(older_key, data), key=older_key, time="2024-06-01T08:00:00Z"
    )
    newer = event(
        EVENT_FILES["users"],
        lake.put(newer_key, data + b"u2,A,B,c,d,e,2030-01-01,2024-01-01,1\n"),
        key=newer_key,
        time="2024-06-01T09:00:00Z",
    )
    assert invoke(app, newer)["status"] == "accepted"
    assert invoke(app, older)["status"] == "superseded"  # delivered late: not validated
    assert lake.dataset_item("users")["object_key"] == newer_key


def test_an_object_overwritten_since_its_event_is_left_to_the_newer_event(app, lake, clean_batch):
    key = event_key("users")
    first = lake.put(key, (clean_batch / "users.csv").read_bytes())
    lake.put(key, (clean_batch / "users.csv").read_bytes() + b"\n")
    outcome = invoke(app, event(EVENT_FILES["users"], first))
    assert outcome["status"] == "missing"
    assert lake.dynamodb.scan(TableName=TABLE)["Items"] == []


def test_a_run_waits_for_four_new_files(app, lake, clean_batch, dirty_batch):
    for payload in upload_all(lake, clean_batch).values():
        invoke(app, payload)
    new = upload_all(lake, dirty_batch, suffix="-v2")
    assert not invoke(app, new["rental_transactions"])["run_started"]
    assert len(lake.executions()) == 1  # old dimensions were used by the first run
    for dataset in DATASETS[:3]:
        invoke(app, new[dataset])
    assert len(lake.executions()) == 2


def test_re_uploading_identical_content_starts_nothing_new(app, lake, clean_batch):
    first = upload_all(lake, clean_batch)
    for payload in first.values():
        invoke(app, payload)
    again = upload_all(lake, clean_batch)  # same keys, same bytes: same ETags
    outcomes = [
        invoke(app, {**payload, "time": "2024-06-03T00:00:00Z"}) for payload in again.values()
    ]
    assert [o["status"] for o in outcomes] == ["duplicate"] * 4
    assert len(lake.executions()) == 1
