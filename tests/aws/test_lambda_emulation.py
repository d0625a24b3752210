"""The built Lambda functions, imported and invoked as Lambda would, against a moto server.

The function and layer folders come from the Makefile's build-* targets (what `sam build`
packages). Each function runs in a venv holding only the packages of the managed layers the
template gives it, at the template's versions (pyproject.toml's `aws` extra: Powertools, and for
the functions with the AWS SDK for pandas layer awswrangler 3.14.0 and pyarrow 20), from a folder
outside the repository, with the repository off sys.path (tests/aws/lambda_runtime.py). AWS is a
moto server on 127.0.0.1 that this test process runs, so the functions' boto3 and awswrangler
calls cross a real HTTP boundary.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from carrental import lake
from carrental.contracts import DATASETS
from carrental.inputs import Manifest
from carrental.publishing import parse_record
from carrental.report import REPORTS
from tests.aws.emulation import emulation_env, folder_bytes, lambda_layer_requirements
from tests.aws.job_outputs import put_run_inputs
from tests.aws.report_data import RUN_ID, queue_athena_results, report_results
from tests.aws.sync_stand_in import athena_applies_the_workgroup_output_location
from tests.aws.template import REPO_ROOT, dashboard_metrics, function_environment, load_template

pytestmark = pytest.mark.emulation

EVENTS = REPO_ROOT / "events"
LAKE = "carrental-dev-datalake"  # the bucket of events/*.json
ARTIFACTS = "carrental-dev-artifacts"
WORKGROUP = "carrental-dev-analytics"
DATABASE = "car_rental_db"
TEMPLATE = load_template()
# function -> (handler, the service name its logs and metrics carry)
FUNCTIONS = {
    name: (
        resource["Properties"]["Handler"],
        resource["Properties"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"],
    )
    for name, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}
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


def uses_the_pandas_layer(function: str) -> bool:
    layers = TEMPLATE["Resources"][function]["Properties"]["Layers"]
    return {"Ref": "AwsSdkPandasLayerArn"} in layers


@pytest.fixture(scope="module")
def layers_env() -> Path:
    """Powertools and the AWS SDK for pandas layer's packages."""
    return emulation_env("lambda-layers", lambda_layer_requirements())


@pytest.fixture(scope="module")
def powertools_env() -> Path:
    """The Powertools layer's packages only (the run scheduler's functions have no other)."""
    requirements = tuple(
        r for r in lambda_layer_requirements() if not r.startswith(("awswrangler", "pyarrow"))
    )
    return emulation_env("lambda-powertools", requirements)


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


# Where Lambda puts the function, the invocation's trace header and the X-Ray daemon's address
# when tracing is active (LAMBDA_TASK_ROOT, _X_AMZN_TRACE_ID, AWS_XRAY_DAEMON_ADDRESS):
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
TRACE_ID = "1-5759e988-bd862e3fe1be46a994272793"
FACADE_SEGMENT = "53995c3f42cd8ad8"  # the segment Lambda opens for an invocation
# The subsegments Powertools' Tracer opens ("## <handler>", "## <module>.<function>") in each
# function for the invocations of the tests below: the handler and the steps it delegates to.
TRACED_STEPS = {
    "ValidateUploadFunction": {
        "## lambda_handler",
        "## upload.process_upload",
        "## upload.open_upload",
        "## upload.validate",
        "## upload.asked_for_run",
    },
    "RunSchedulerStartFunction": {
        "## start_handler",
        "## scheduler.start",
        "## scheduler._start_run",
    },
    "PublishRunFunction": {
        "## lambda_handler",
        "## publish.publish_run",
        "## publish.read_run_inputs",
        "## publish.hold_back",
        "## publish.prune",
    },
    "RunSchedulerFinishFunction": {"## finish_handler", "## scheduler.finish"},
    "ReportFunction": {"## lambda_handler", "## app.write_report", "## app.read_results"},
}


class XRayDaemon:
    """A UDP socket in the X-Ray daemon's place: the functions' X-Ray SDK sends it each closed
    (sub)segment as a JSON document after a header line
    (https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html#xray-api-daemon).
    A thread reads them as they come, so that no burst overflows the socket's buffer."""

    END = b"end of invocation"

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.socket.bind(("127.0.0.1", 0))
        self.datagrams: queue.Queue[bytes] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()
        return f"{host}:{port}"

    def _read(self) -> None:
        while True:
            try:
                self.datagrams.put(self.socket.recv(65535))
            except OSError:  # closed
                return

    def segments(self) -> list[dict]:
        """What the functions sent since the last call (the senders have exited by then; on
        the loopback a datagram sent after theirs is read after theirs)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as marker:
            marker.sendto(self.END, self.socket.getsockname())
        received = []
        while (datagram := self.datagrams.get(timeout=30)) != self.END:
            header, document = datagram.split(b"\n", 1)
            assert json.loads(header) == {"format": "json", "version": 1}
            received.append(json.loads(document))
        return received

    def close(self) -> None:
        self.socket.close()


def metrics_emitted(stdout: str) -> set[tuple[str, str, str]]:
    """(namespace, service dimension, metric name) of the embedded metric format documents a
    function printed (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html)."""
    emitted = set()
    for line in stdout.splitlines():
        document = json.loads(line) if line.startswith("{") else {}
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            assert all("service" in dimensions for dimensions in directive["Dimensions"])
            emitted |= {
                (directive["Namespace"], document["service"], metric["Name"])
                for metric in directive["Metrics"]
            }
    return emitted


@dataclass
class Emulator:
    """Invokes the built functions; keeps what they emitted besides their results."""

    built: Built
    tmp: Path
    daemon: XRayDaemon
    metrics: dict[str, set[tuple[str, str, str]]] = field(default_factory=dict)
    traces: dict[str, list[dict]] = field(default_factory=dict)

    def invoke(self, env: Path, function: str, events: list[dict], environment: dict) -> list:
        """Run `events` through the built function in one emulated container, with the
        environment the template gives it and tracing on; the invocations' results. carrental
        must come from the built layer, every other package from the venv."""
        request = self.tmp / f"{function}-request.json"
        results = self.tmp / f"{function}-results.json"
        handler, service = FUNCTIONS[function]
        request.write_text(
            json.dumps(
                {
                    "function": str(self.built.functions[function]),
                    "layers": [str(self.built.layer)],
                    "repository": str(REPO_ROOT),
                    "handler": handler,
                    "function_name": service,
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
            cwd=self.tmp,
            env={
                **variables,
                "LAMBDA_TASK_ROOT": str(self.built.functions[function]),
                "_X_AMZN_TRACE_ID": f"Root={TRACE_ID};Parent={FACADE_SEGMENT};Sampled=1",
                "AWS_XRAY_DAEMON_ADDRESS": self.daemon.address,
                **environment,
            },
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        outcome = json.loads(results.read_text(encoding="utf-8"))
        assert outcome["modules"]["carrental"] == str(
            self.built.layer / "carrental" / "__init__.py"
        )
        for package, module_file in outcome["modules"].items():
            if package != "carrental" and module_file is not None:
                assert module_file.startswith(str(env)), package
        assert outcome["modules"]["aws_lambda_powertools"] is not None
        self.metrics.setdefault(function, set()).update(metrics_emitted(done.stdout))
        self.traces.setdefault(function, []).extend(self.daemon.segments())
        return outcome["invocations"]

    def traced_steps(self, function: str) -> set[str]:
        """The names of the function's Powertools subsegments, each checked to hang, through
        its parents, from the handler's subsegment under the invocation's segment."""
        segments = {s["id"]: s for s in self.traces[function]}
        assert segments and all(s["trace_id"] == TRACE_ID for s in segments.values())
        named = {}
        for segment in segments.values():
            if segment["name"].startswith("## "):
                chain = [segment]
                while chain[-1]["parent_id"] in segments:
                    chain.append(segments[chain[-1]["parent_id"]])
                handler = chain[-1]
                assert handler["parent_id"] == FACADE_SEGMENT, segment["name"]
                assert handler["name"] == f"## {FUNCTIONS[function][0].rsplit('.', 1)[1]}"
                named[segment["name"]] = segment
        return set(named)


@pytest.fixture
def emulator(built: Built, tmp_path: Path) -> Iterator[Emulator]:
    daemon = XRayDaemon()
    try:
        yield Emulator(built, tmp_path, daemon)
    finally:
        daemon.close()


def assert_telemetry_as_promised(emulator: Emulator, functions: list[str]) -> None:
    """Each function traced its handler's steps, and emitted its metrics under the namespace and
    service its template environment names, each of them on the operations dashboard."""
    shown = dashboard_metrics(TEMPLATE)
    for function in functions:
        assert emulator.traced_steps(function) == TRACED_STEPS[function], function
        environment = TEMPLATE["Resources"][function]["Properties"]["Environment"]["Variables"]
        promised = (
            environment["POWERTOOLS_METRICS_NAMESPACE"],
            environment["POWERTOOLS_SERVICE_NAME"],
        )
        assert emulator.metrics[function], f"{function} emitted no metric"
        for namespace, service, name in emulator.metrics[function]:
            assert (namespace, service) == promised, (function, name)
            assert {(namespace, name, service), (namespace, name, None)} & set(shown), name


def test_the_layers_envs_hold_the_pinned_layer_versions(layers_env, powertools_env) -> None:
    from tests.aws.emulation import installed_distributions

    for env in (layers_env, powertools_env):
        installed = installed_distributions(env)
        assert "carrental" not in installed and "moto" not in installed
        for requirement in lambda_layer_requirements():
            name, _, pinned = requirement.partition("==")
            name = name.split("[")[0].lower()
            if pinned and (env == layers_env or name == "aws-lambda-powertools"):
                assert installed[name] == pinned, requirement
    assert "pyarrow" not in installed_distributions(powertools_env)


@dataclass
class Stack:
    """The upload-to-publish resources on the moto server, and each function's environment."""

    environments: dict[str, dict[str, str]]
    queue: str
    alerts: str
    machine: str


def create_stack(tmp_path: Path) -> Stack:
    s3, sns, sqs = boto3.client("s3"), boto3.client("sns"), boto3.client("sqs")
    s3.create_bucket(Bucket=LAKE)
    s3.put_bucket_versioning(Bucket=LAKE, VersioningConfiguration={"Status": "Enabled"})
    topic = sns.create_topic(Name="alerts")["TopicArn"]
    alerts = sqs.create_queue(QueueName="alerts")["QueueUrl"]
    alerts_arn = sqs.get_queue_attributes(QueueUrl=alerts, AttributeNames=["QueueArn"])
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=alerts_arn["Attributes"]["QueueArn"])
    queue = sqs.create_queue(QueueName="run-requests")["QueueUrl"]
    ledger = TEMPLATE["Resources"]["LedgerTable"]["Properties"]
    boto3.client("dynamodb").create_table(
        TableName="ledger",
        **{k: ledger[k] for k in ("AttributeDefinitions", "KeySchema", "BillingMode")},
    )
    machine = boto3.client("stepfunctions").create_state_machine(
        name="pipeline",
        definition=json.dumps(
            {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        ),
        roleArn="arn:aws:iam::123456789012:role/pipeline",
    )["stateMachineArn"]
    names = {
        **{name: spec.get("Default") for name, spec in TEMPLATE["Parameters"].items()},
        "AlertTopic": topic,
        "LedgerTable": "ledger",
        "RunRequestQueue": queue,
        "DataLakeBucket": LAKE,
        "CarRentalPipeline": machine,
        "SettleSeconds": 0,  # the requests are due at once: no clock to move here
        "AthenaWorkGroup": WORKGROUP,
        "GlueDatabase": DATABASE,
    }
    environments = {
        function: function_environment(TEMPLATE, function, names) for function in FUNCTIONS
    }
    environments["ValidateUploadFunction"]["STAGING_DIR"] = str(tmp_path / "tmp")
    return Stack(environments, queue, alerts, machine)


def upload_event(key: str, body: bytes) -> dict:
    put = boto3.client("s3").put_object(Bucket=LAKE, Key=key, Body=body)
    event = json.loads((EVENTS / "users_created.json").read_text(encoding="utf-8"))
    event["detail"]["object"].update(
        key=key,
        etag=put["ETag"].strip('"'),
        size=len(body),
        sequencer=f"{len(key):018X}",
        **{"version-id": put["VersionId"]},
    )
    return event


def run_requests(queue: str) -> dict:
    """The queue's messages as Lambda's SQS poller hands them to the function."""
    messages = boto3.client("sqs").receive_message(QueueUrl=queue, MaxNumberOfMessages=10)
    records = json.loads((EVENTS / "run_requested.json").read_text())["Records"]
    return {
        "Records": [
            {
                **records[0],
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
            }
            for m in messages.get("Messages", [])
        ]
    }


def test_uploads_lead_to_one_run_and_its_publish_in_the_built_functions(
    layers_env, powertools_env, emulator, moto_server, tmp_path
) -> None:
    stack = create_stack(tmp_path)
    sample = REPO_ROOT / "data" / "sample"
    events = [
        upload_event(lake.raw_key(d, f"{d}.csv"), (sample / f"{d}.csv").read_bytes())
        for d in DATASETS
    ]
    decoded_key = "raw/rental_transactions/june 2024 été.csv"
    encoded = upload_event(decoded_key, (sample / "rental_transactions.csv").read_bytes())
    encoded["detail"]["object"]["key"] = json.loads(
        (EVENTS / "url_encoded_key_created.json").read_text()
    )["detail"]["object"]["key"]
    events += [json.loads((EVENTS / "non_csv_created.json").read_text()), encoded]

    outcomes = emulator.invoke(
        layers_env,
        "ValidateUploadFunction",
        events,
        stack.environments["ValidateUploadFunction"],
    )

    results = [outcome["result"] for outcome in outcomes]
    assert [r["status"] for r in results] == ["accepted"] * 4 + ["ignored", "accepted"]
    assert results[5]["key"] == decoded_key
    assert len(set(r["staged_key"] for r in results[:4])) == 4

    (decision,) = emulator.invoke(
        powertools_env,
        "RunSchedulerStartFunction",
        [run_requests(stack.queue)],
        stack.environments["RunSchedulerStartFunction"],
    )
    assert decision["result"]["status"] == "started", decision
    sfn, s3 = boto3.client("stepfunctions"), boto3.client("s3")
    (execution,) = sfn.list_executions(stateMachineArn=stack.machine)["executions"]
    started = json.loads(sfn.describe_execution(executionArn=execution["executionArn"])["input"])
    run_id = started["run_id"]
    manifest = Manifest.from_json(
        s3.get_object(Bucket=LAKE, Key=started["manifest_key"])["Body"].read().decode()
    )
    assert sorted(f.key for f in manifest.of("rental_transactions")) == sorted(
        ["raw/rental_transactions/rental_transactions.csv", decoded_key]
    )

    held_back = lake.raw_key("rental_transactions", "rental_transactions.csv")
    put_run_inputs(s3, LAKE, run_id, manifest.inputs, {held_back: "held back: a test"})
    (published,) = emulator.invoke(
        layers_env,
        "PublishRunFunction",
        [{"run_id": run_id, "bucket": LAKE, "manifest_key": started["manifest_key"]}],
        stack.environments["PublishRunFunction"],
    )
    assert published["result"]["held_back"] == [held_back], published
    record = parse_record(
        s3.get_object(Bucket=LAKE, Key=lake.PUBLISHED_RECORD)["Body"].read().decode()
    )
    assert [(r.run_id, r.is_current) for r in record] == [(run_id, True)]

    ended = json.loads((EVENTS / "execution_ended.json").read_text())
    ended["detail"].update(
        name=run_id, executionArn=execution["executionArn"], stateMachineArn=stack.machine
    )
    (ending,) = emulator.invoke(
        powertools_env,
        "RunSchedulerFinishFunction",
        [ended],
        stack.environments["RunSchedulerFinishFunction"],
    )
    assert ending["result"]["released"] and ending["result"]["recheck_in"] == 0
    (again,) = emulator.invoke(
        powertools_env,
        "RunSchedulerStartFunction",
        [run_requests(stack.queue)],
        stack.environments["RunSchedulerStartFunction"],
    )
    assert again["result"]["status"] == "nothing_new", again  # the held-back file is out
    assert (
        len(
            boto3.client("sqs").receive_message(QueueUrl=stack.alerts, MaxNumberOfMessages=10)[
                "Messages"
            ]
        )
        == 1
    )
    assert_telemetry_as_promised(
        emulator,
        [
            "ValidateUploadFunction",
            "RunSchedulerStartFunction",
            "PublishRunFunction",
            "RunSchedulerFinishFunction",
        ],
    )


def test_report_writes_every_csv_through_athena_and_s3(layers_env, emulator, moto_server) -> None:
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
    summary_sql = (emulator.built.layer / "carrental" / "sql" / REPORTS["summary.csv"]).read_text()
    summary_id = athena.start_query_execution(
        QueryString=summary_sql,
        WorkGroup=WORKGROUP,
        QueryExecutionContext={"Database": DATABASE},
        ExecutionParameters=[f"'{RUN_ID}'"] * summary_sql.count("= ?"),
    )["QueryExecutionId"]

    (outcome,) = emulator.invoke(
        layers_env,
        "ReportFunction",
        [{"run_id": RUN_ID, "bucket": LAKE, "summary_query_execution_id": summary_id}],
        function_environment(
            TEMPLATE, "ReportFunction", {"AthenaWorkGroup": WORKGROUP, "GlueDatabase": DATABASE}
        ),
    )

    keys = [f"reports/{RUN_ID}/{name}" for name in REPORTS]
    assert outcome["result"]["keys"][: len(keys)] == keys
    for key, result_set in zip(keys, expected.values(), strict=True):
        assert s3.get_object(Bucket=LAKE, Key=key)["Body"].read().decode() == (
            result_set.expected_csv
        ), key
    assert_telemetry_as_promised(emulator, ["ReportFunction"])


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
