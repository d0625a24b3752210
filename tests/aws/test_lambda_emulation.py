"""The built Lambda functions, imported and invoked as Lambda would, against a moto server.

The function and layer folders come from the Makefile's build-* targets (what `sam build`
packages). They run in a venv holding only the managed layers' packages at the template's
versions (pyproject.toml's `aws` extra: Powertools, awswrangler 3.14.0, pyarrow 20), from a folder
outside the repository, with the repository off sys.path (tests/aws/lambda_runtime.py). AWS is a
moto server on 127.0.0.1 that this test process runs, so the functions' boto3 and awswrangler
calls cross a real HTTP boundary.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from carrental.contracts import DATASETS
from carrental.report import REPORTS
from tests.aws.emulation import emulation_env, folder_bytes, lambda_layer_requirements
from tests.aws.report_data import RUN_ID, queue_athena_results, report_results
from tests.aws.sync_stand_in import athena_applies_the_workgroup_output_location
from tests.aws.template import REPO_ROOT

pytestmark = pytest.mark.emulation

EVENTS = REPO_ROOT / "events"
LAKE = "carrental-dev-datalake"  # the bucket of events/*.json
ARTIFACTS = "carrental-dev-artifacts"
WORKGROUP = "carrental-dev-analytics"
DATABASE = "car_rental_db"
FUNCTIONS = {"ValidateUploadFunction": "validate-upload", "ReportFunction": "report"}
# What Lambda allows for a function and all its layers, unzipped (262,144,000 bytes):
# https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024
# The AWS SDK for pandas layer cannot be fetched here. 3.15.1 and 3.16.0 unzip to 167 MB
# (https://github.com/aws/aws-sdk-pandas/issues/3331); 3.14.0 comes from the same build script
# with the same Arrow 20.0.0 (building/lambda/build-lambda-layer.sh at tags 3.14.0 and 3.16.0).
SDK_FOR_PANDAS_LAYER_BYTES = 167 * 1024 * 1024
# Provided by the python3.11 runtime, left out of the layers (build-lambda-layer.sh removes them).
RUNTIME_PACKAGES = {"boto3", "botocore", "s3transfer", "urllib3", "jmespath", "python-dateutil"}


@dataclass(frozen=True)
class Built:
    layer: Path
    functions: dict[str, Path]


@pytest.fixture(scope="module")
def layers_env() -> Path:
    return emulation_env("lambda-layers", lambda_layer_requirements())


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("sam-build")
    for target in ("CarrentalLayer", *FUNCTIONS):
        subprocess.run(
            ["make", "--silent", f"build-{target}", f"ARTIFACTS_DIR={root / target}"],
            cwd=REPO_ROOT,
            check=True,
            timeout=120,
        )
    return Built(root / "CarrentalLayer" / "python", {f: root / f for f in FUNCTIONS})


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    athena_applies_the_workgroup_output_location(monkeypatch)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    try:
        yield endpoint
    finally:
        server.stop()


def invoke(env: Path, built: Built, function: str, events: list[dict], environment: dict, tmp):
    """Run `events` through the built function in one emulated container; the invocations'
    results. carrental must come from the built layer, every other package from the venv."""
    request = tmp / f"{function}-request.json"
    results = tmp / f"{function}-results.json"
    request.write_text(
        json.dumps(
            {
                "function": str(built.functions[function]),
                "layers": [str(built.layer)],
                "repository": str(REPO_ROOT),
                "handler": "app.lambda_handler",
                "function_name": FUNCTIONS[function],
                "events": events,
                "probe": ["carrental", "awswrangler", "aws_lambda_powertools", "pyarrow"],
                "results": str(results),
            }
        ),
        encoding="utf-8",
    )
    variables = {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k == "PATH"}
    done = subprocess.run(
        [env / "bin" / "python", "-I", REPO_ROOT / "tests/aws/lambda_runtime.py", request],
        cwd=tmp,
        env={**variables, "POWERTOOLS_TRACE_DISABLED": "true", **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(results.read_text(encoding="utf-8"))
    assert outcome["modules"]["carrental"] == str(built.layer / "carrental" / "__init__.py")
    for package, module_file in outcome["modules"].items():
        if package != "carrental" and module_file is not None:
            assert module_file.startswith(str(env)), package
    assert outcome["modules"]["aws_lambda_powertools"] is not None
    return outcome["invocations"]


def test_the_layers_env_holds_the_pinned_layer_versions(layers_env) -> None:
    from tests.aws.emulation import installed_distributions

    installed = installed_distributions(layers_env)
    assert "carrental" not in installed and "moto" not in installed
    for requirement in lambda_layer_requirements():
        if "==" in requirement:
            name, pinned = requirement.split("==")
            assert installed[name.split("[")[0].lower()] == pinned, requirement


def upload_event(name: str, etag: str) -> dict:
    event = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    event["detail"]["object"]["etag"] = etag
    return event


def test_validate_upload_on_the_sample_events_starts_one_run(
    layers_env, built, moto_server, tmp_path
) -> None:
    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    dynamodb, sfn = boto3.client("dynamodb"), boto3.client("stepfunctions")
    s3.create_bucket(Bucket=LAKE)
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    alerts = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alerts_arn["Attributes"]["QueueArn"])
    table = "batches"
    dynamodb.create_table(
        TableName=table,
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
    machine = sfn.create_state_machine(
        name="pipeline",
        definition=json.dumps(
            {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/pipeline",
    )["stateMachineArn"]
    events = []
    for dataset in DATASETS:
        name = f"{dataset}_created.json"
        key = json.loads((EVENTS / name).read_text())["detail"]["object"]["key"]
        body = (REPO_ROOT / "data" / "sample" / f"{dataset}.csv").read_bytes()
        etag = s3.put_object(Bucket=LAKE, Key=key, Body=body)["ETag"].strip('"')
        events.append(upload_event(name, etag))
    encoded = json.loads((EVENTS / "url_encoded_key_created.json").read_text())
    decoded_key = "raw/rental_transactions/june 2024 été.csv"
    body = (REPO_ROOT / "data" / "sample" / "rental_transactions.csv").read_bytes()
    etag = s3.put_object(Bucket=LAKE, Key=decoded_key, Body=body)["ETag"].strip('"')
    encoded["detail"]["object"]["etag"] = etag
    events += [json.loads((EVENTS / "non_csv_created.json").read_text()), encoded]

    outcomes = invoke(
        layers_env,
        built,
        "ValidateUploadFunction",
        events,
        {
            "STATE_MACHINE_ARN": machine,
            "ALERT_TOPIC_ARN": topic,
            "BATCH_TABLE_NAME": table,
            "REJECT_THRESHOLD": "0.05",
            "POWERTOOLS_SERVICE_NAME": "validate-upload",
            "POWERTOOLS_METRICS_NAMESPACE": "carrental",
        },
        tmp_path,
    )

    results = [outcome["result"] for outcome in outcomes]
    assert [r["status"] for r in results] == ["accepted"] * 4 + ["ignored", "accepted"]
    assert [r["run_started"] for r in results[:4]] == [False, False, False, True]
    assert results[5]["key"] == decoded_key
    (execution,) = sfn.list_executions(stateMachineArn=machine)["executions"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    assert started["run_id"] == results[3]["run_id"]
    uploaded = {d: e["detail"]["object"]["key"] for d, e in zip(DATASETS, events[:4], strict=True)}
    assert started["inputs"] == uploaded
    assert sqs.receive_message(QueueUrl=alerts).get("Messages") is None  # no alert


def test_report_writes_every_csv_through_athena_and_s3(
    layers_env, built, moto_server, tmp_path
) -> None:
    s3, athena = boto3.client("s3"), boto3.client("athena")
    for bucket in (LAKE, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    athena.create_work_group(
        Name=WORKGROUP,
        Configuration={
            "EnforceWorkGroupConfiguration": True,
            "ResultConfiguration": {"OutputLocation": f"s3://{ARTIFACTS}/athena-results/"},
        },
    )
    expected = report_results()
    queue_athena_results(list(expected.values()), endpoint=moto_server)
    summary_sql = (built.functions["ReportFunction"] / "sql" / REPORTS["summary.csv"]).read_text()
    summary_id = athena.start_query_execution(
        QueryString=summary_sql,
        WorkGroup=WORKGROUP,
        QueryExecutionContext={"Database": DATABASE},
        ExecutionParameters=[f"'{RUN_ID}'"] * summary_sql.count("= ?"),
    )["QueryExecutionId"]

    (outcome,) = invoke(
        layers_env,
        built,
        "ReportFunction",
        [{"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id}],
        {
            "GLUE_DATABASE": DATABASE,
            "ATHENA_WORKGROUP": WORKGROUP,
            "CARRENTAL_SQL_DIR": str(built.functions["ReportFunction"] / "sql"),
            "POWERTOOLS_SERVICE_NAME": "report",
        },
        tmp_path,
    )

    keys = [f"reports/{RUN_ID}/{name}" for name in REPORTS]
    assert outcome == {"result": {"bucket": LAKE, "keys": keys}}
    for key, result_set in zip(keys, expected.values(), strict=True):
        assert s3.get_object(Bucket=LAKE, Key=key)["Body"].read().decode() == (
            result_set.expected_csv
        ), key


def test_the_three_layers_and_the_largest_function_fit_lambdas_unzipped_limit(
    layers_env, built
) -> None:
    probe = (
        "import json, importlib.metadata as m, re\n"
        "todo, seen, size = ['aws-lambda-powertools', 'aws-xray-sdk'], set(), 0\n"
        f"runtime = {sorted(RUNTIME_PACKAGES)!r}\n"
        "while todo:\n"
        "    name = todo.pop().lower()\n"
        "    if name in seen or name in runtime: continue\n"
        "    seen.add(name); dist = m.distribution(name)\n"
        "    size += sum(f.locate().stat().st_size for f in dist.files or [] if f.locate().is_file())\n"
        "    todo += [re.split(r'[ ;<>=!~\\[]', r)[0] for r in dist.requires or [] if 'extra ==' not in r]\n"
        "print(json.dumps(size))\n"
    )
    powertools = json.loads(
        subprocess.run(
            [str(layers_env / "bin" / "python"), "-I", "-c", probe],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    largest_function = max(folder_bytes(folder) for folder in built.functions.values())
    total = folder_bytes(built.layer) + powertools + SDK_FOR_PANDAS_LAYER_BYTES + largest_function
    sizes = f"carrental {folder_bytes(built.layer)}, Powertools {powertools}, function {largest_function}"
    assert total < LAMBDA_UNZIPPED_LIMIT, f"{total / 2**20:.1f} MiB ({sizes} bytes)"
