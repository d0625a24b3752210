"""Every call the stack makes, checked against the AWS API models botocore ships, offline.

1. Each Task state of the workflow: its Parameters, evaluated on a sample execution input the
   way Step Functions evaluates them, against the request shape of the API behind its Resource
   (member names, nesting, types, required members, enum values). Step Functions spells the
   members in PascalCase: https://docs.aws.amazon.com/step-functions/latest/dg/connect-parameters.html
2. What later states read from a Task's result (ResultSelector, Choice rules, error causes)
   against the result shape the integration documents.
3. Each boto3 call site of the Lambda functions and the deploy code against the operation's
   request members, and each awswrangler call against the installed (layer) version's signature.

INTEGRATIONS is the one table to extend when the workflow gains a Task of a new kind.
"""

from __future__ import annotations

import ast
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import awswrangler
import botocore.session
import pytest

from carrental import lake
from tests.aws.asl import paths_in, render
from tests.aws.template import (
    REPO_ROOT,
    definition_substitutions,
    example_names,
    iter_states,
    load_template,
    nested_machines,
    render_definition,
    resolve,
)

MODELS = botocore.session.get_session()


@dataclass(frozen=True)
class Integration:
    service: str
    operation: str  # the API the Task's Parameters are the request of
    result: tuple[str, str] | None  # (service, operation) whose response the task returns
    doc: str


INTEGRATIONS = {
    # startJobRun.sync: the StartJobRun request; the job's result is not read by the workflow
    "arn:aws:states:::emr-serverless:startJobRun.sync": Integration(
        "emr-serverless",
        "StartJobRun",
        None,
        "https://docs.aws.amazon.com/step-functions/latest/dg/connect-emr-serverless.html",
    ),
    # startQueryExecution.sync returns the GetQueryExecution response of the finished query
    "arn:aws:states:::athena:startQueryExecution.sync": Integration(
        "athena",
        "StartQueryExecution",
        ("athena", "GetQueryExecution"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/connect-athena.html",
    ),
    # lambda:invoke returns {ExecutedVersion, Payload (the function's JSON result), StatusCode}
    "arn:aws:states:::lambda:invoke": Integration(
        "lambda",
        "Invoke",
        ("lambda", "Invoke"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html",
    ),
    "arn:aws:states:::sns:publish": Integration(
        "sns",
        "Publish",
        ("sns", "Publish"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/connect-sns.html",
    ),
    # AWS SDK integrations: the API's request and response, as they are
    "arn:aws:states:::aws-sdk:glue:startCrawler": Integration(
        "glue",
        "StartCrawler",
        ("glue", "StartCrawler"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html",
    ),
    "arn:aws:states:::aws-sdk:glue:getCrawler": Integration(
        "glue",
        "GetCrawler",
        ("glue", "GetCrawler"),
        "https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html",
    ),
}
# The lambda:invoke integration parses the function's JSON answer into Payload (documented on
# the connect-lambda page); in the Lambda API model it is a blob.
JSON_DOCUMENT_MEMBERS = {("lambda", "Invoke", "Payload")}


def _shape(service: str, operation: str, kind: str):
    model = MODELS.get_service_model(service).operation_model(operation)
    return model.input_shape if kind == "input" else model.output_shape


def _member(shape, key: str) -> str | None:
    """The model's member for a field, spelt PascalCase by Step Functions, as-is by boto3."""
    return next((m for m in shape.members if m.lower() == key.lower()), None)


def check_value(value: Any, shape, where: str, json_members=frozenset()) -> list[str]:
    """Problems of `value` as an instance of the botocore `shape` (empty: it conforms)."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            return [f"{where}: a structure, got {value!r}"]
        problems = []
        for key, item in value.items():
            member = _member(shape, key)
            if member is None:
                problems.append(f"{where}.{key}: no such member of {shape.name}")
            elif member in json_members:
                json.dumps(item)
            else:
                problems += check_value(item, shape.members[member], f"{where}.{key}")
        given = {_member(shape, key) for key in value}
        problems += [f"{where}.{r}: required" for r in shape.required_members if r not in given]
        return problems
    if kind == "list":
        if not isinstance(value, list):
            return [f"{where}: a list, got {value!r}"]
        return [
            p for i, v in enumerate(value) for p in check_value(v, shape.member, f"{where}[{i}]")
        ]
    if kind == "map":
        if not isinstance(value, dict):
            return [f"{where}: a map, got {value!r}"]
        return [p for k, v in value.items() for p in check_value(v, shape.value, f"{where}.{k}")]
    expected = {
        "string": str,
        "integer": int,
        "long": int,
        "boolean": bool,
        "double": (int, float),
        "float": (int, float),
        "timestamp": (str, int),
    }.get(kind)
    if expected is not None and (
        not isinstance(value, expected) or (kind in ("integer", "long") and isinstance(value, bool))
    ):
        return [f"{where}: {kind}, got {value!r}"]
    if kind == "string" and shape.enum and value not in shape.enum:
        return [f"{where}: {value!r} is not one of {shape.enum}"]
    return []


def result_member(shape, parts: list[str]) -> Any:
    """The shape a path reads from a result (KeyError if the result has no such member)."""
    for part in parts:
        if shape.type_name != "structure" or _member(shape, part) is None:
            raise KeyError(f"{part} is no member of {shape.name}")
        shape = shape.members[_member(shape, part)]
    return shape


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    template = load_template()
    return render_definition(resolve(definition_substitutions(template), example_names(template)))


@pytest.fixture(scope="module")
def state_input(definition) -> dict[str, Any]:
    """What the states read: the execution input the run scheduler starts a run with, plus what
    the Pass states and the Catchers add to it on the way, and a Map item's input (its
    ItemSelector applied to its first item)."""
    run_id = "20261201T101500Z"
    document: dict[str, Any] = {
        "run_id": run_id,
        "bucket": "carrental-test-datalakebucket",
        "manifest_key": lake.manifest_key(run_id),
    }
    for _, _, state in iter_states(definition):
        if state["Type"] == "Pass" and "Parameters" in state:
            key = state["ResultPath"].removeprefix("$.")
            document[key] = render(state["Parameters"], document, {})
    for _, _, state in iter_states(definition):
        if state["Type"] == "Map":
            items = paths_in(state["ItemsPath"])[0].removeprefix("$.").split(".")
            first = document
            for part in items:
                first = first[part]
            document.update(
                render(state["ItemSelector"], document, {"Map": {"Item": {"Value": first[0]}}})
            )
    document["summary"] = {"query_execution_id": "0b0b0b0b-query"}
    document["failure"] = {"Error": "States.TaskFailed", "Cause": "it broke"}
    document["failed_state"] = "RunSparkJobs"
    return document


CONTEXT = {"Execution": {"Id": "arn:aws:states:us-east-1:123456789012:execution:x:y"}}
CONTEXT_TASK = {**CONTEXT, "Task": {"Token": "token"}}


def _tasks(definition) -> list[tuple[str, dict]]:
    return [(name, state) for _, name, state in iter_states(definition) if state["Type"] == "Task"]


def test_every_task_is_a_documented_integration(definition) -> None:
    tasks = _tasks(definition)
    assert len(tasks) >= 8
    unknown = {state["Resource"] for _, state in tasks} - set(INTEGRATIONS)
    assert not unknown, f"add these to INTEGRATIONS with their documentation: {unknown}"


def test_every_task_parameter_is_a_member_of_its_api_request(definition, state_input) -> None:
    for name, state in _tasks(definition):
        integration = INTEGRATIONS[state["Resource"]]
        params = render(state["Parameters"], state_input, CONTEXT_TASK)
        json_members = {
            m
            for s, o, m in JSON_DOCUMENT_MEMBERS
            if (s, o) == (integration.service, integration.operation)
        }
        problems = check_value(
            params,
            _shape(integration.service, integration.operation, "input"),
            name,
            frozenset(json_members),
        )
        assert problems == [], integration.doc


def test_retries_name_errors_the_integration_can_raise(definition) -> None:
    """An error name no API of the task can return never triggers its Retry (defect found by
    audit: EMRServerless.ThrottlingException). Lambda's are the ones Step Functions documents
    for lambda:invoke: https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html"""
    documented = {
        "arn:aws:states:::lambda:invoke": {
            "Lambda.ServiceException",
            "Lambda.AWSLambdaException",
            "Lambda.SdkClientException",
            "Lambda.TooManyRequestsException",
        }
    }
    prefixes = {"emr-serverless": "EMRServerless", "athena": "Athena", "glue": "Glue"}
    for name, state in _tasks(definition):
        integration = INTEGRATIONS[state["Resource"]]
        model = MODELS.get_service_model(integration.service).operation_model(integration.operation)
        prefix = prefixes.get(integration.service, "")
        raisable = {f"{prefix}.{e.name}" for e in model.error_shapes} | documented.get(
            state["Resource"], set()
        )
        for retrier in state.get("Retry", []):
            assert set(retrier["ErrorEquals"]) <= raisable, (name, raisable)


def _reads(state: dict) -> list[str]:
    """Every reference path a state reads."""
    found = []
    for choice in state.get("Choices", []):
        found.append(choice["Variable"])
    for key in ("ErrorPath", "CausePath", "SecondsPath"):
        if key in state:
            found += paths_in(state[key])
    stack = [state.get("Parameters", {})]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key.endswith(".$"):
                    found += paths_in(value)
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack += item
    return [path for path in found if not path.startswith("$$")]


def test_later_states_read_only_what_the_tasks_return(definition) -> None:
    """A task's result lands at its ResultPath (shaped by its ResultSelector, if any); every
    path another state of the same machine reads below that must exist in the documented
    result, and a Choice may only compare it with a value its model allows."""
    checked = 0

    def check_machine(machine: dict[str, Any]) -> None:
        nonlocal checked
        results = {}
        for name, state in machine["States"].items():
            if state["Type"] != "Task" or state.get("ResultPath") in (None, "$"):
                continue
            integration = INTEGRATIONS[state["Resource"]]
            shape = _shape(*integration.result, "output") if integration.result else None
            selector = state.get("ResultSelector")
            if selector:
                for value in selector.values():
                    for path in paths_in(value):
                        parts = path.removeprefix("$.").split(".")
                        if (
                            integration.service,
                            integration.operation,
                            parts[0],
                        ) in JSON_DOCUMENT_MEMBERS:
                            continue  # the function's own JSON: checked by the workflow tests
                        result_member(shape, parts)
                        checked += 1
                results[state["ResultPath"]] = (
                    "selector",
                    {k.removesuffix(".$") for k in selector},
                )
            else:
                assert shape is not None, f"{name}: its result is read but undocumented"
                results[state["ResultPath"]] = ("shape", shape)
        for name, state in machine["States"].items():
            for path in _reads(state):
                for prefix, (kind, result) in results.items():
                    if not path.startswith(prefix + "."):
                        continue
                    parts = path.removeprefix(prefix + ".").split(".")
                    if kind == "selector":
                        assert parts[0] in result, (name, path)
                        continue
                    member = result_member(result, parts)
                    checked += 1
                    for choice in state.get("Choices", []):
                        if choice["Variable"] == path and "StringEquals" in choice:
                            assert choice["StringEquals"] in member.enum, (name, path)
            for branch in nested_machines(state):
                check_machine(branch)

    check_machine(definition)
    assert checked >= 6


# ---------------------------------------------------------------------------- code call sites

CLIENT_SERVICES = {
    # the name a client goes by in our code -> its service
    "s3": "s3",
    "s3_client": "s3",
    "sns": "sns",
    "sqs": "sqs",
    "dynamodb": "dynamodb",
    "stepfunctions": "stepfunctions",
    "cfn_client": "cloudformation",
}
# boto3's managed transfers: not API operations (they call Get/Put/Copy/multipart APIs).
TRANSFER_METHODS = {"copy", "upload_file", "download_file"}
# Every module that calls AWS: the functions, what they share, the deploy code.
CALL_SITE_FILES = sorted(
    [
        *(REPO_ROOT / "lambdas").glob("*/*.py"),
        *(REPO_ROOT / "carrental" / "aws").glob("*.py"),
        REPO_ROOT / "carrental" / "deploy.py",
    ]
)


def _client_name(receiver: ast.expr) -> str | None:
    return receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", None)


def _client_calls(path: Path):
    """(service, method, call) of every client call: `client.op(...)`, and
    `client.get_paginator("op").paginate(...)` as a call of op."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        receiver = node.func.value
        if ast.unparse(receiver).startswith("wr."):
            continue  # awswrangler: the next test
        if (
            node.func.attr == "paginate"
            and isinstance(receiver, ast.Call)
            and isinstance(receiver.func, ast.Attribute)
            and receiver.func.attr == "get_paginator"
            and _client_name(receiver.func.value) in CLIENT_SERVICES
        ):
            service = CLIENT_SERVICES[_client_name(receiver.func.value)]
            yield service, receiver.args[0].value, node
        elif _client_name(receiver) in CLIENT_SERVICES and node.func.attr != "get_paginator":
            yield CLIENT_SERVICES[_client_name(receiver)], node.func.attr, node


def test_every_boto3_call_site_uses_its_operations_members() -> None:
    seen = set()
    for path in CALL_SITE_FILES:
        for service, method, node in _client_calls(path):
            if method in TRANSFER_METHODS:
                continue
            model = MODELS.get_service_model(service)
            operation = next(
                (op for op in model.operation_names if botocore.xform_name(op) == method), None
            )
            where = f"{path.name}:{node.lineno} {service}.{method}"
            assert operation is not None, f"{where}: no such operation"
            shape = model.operation_model(operation).input_shape
            given = {k.arg for k in node.keywords if k.arg is not None}
            assert given <= set(shape.members), f"{where}: {given - set(shape.members)}"
            if all(k.arg is not None for k in node.keywords):  # no **kwargs left unchecked
                assert set(shape.required_members) <= given, where
            seen.add((service, operation))
    assert {
        ("s3", "GetObject"),
        ("s3", "ListObjectsV2"),
        ("dynamodb", "PutItem"),
        ("sqs", "SendMessage"),
        ("stepfunctions", "StartExecution"),
        ("stepfunctions", "DescribeExecution"),
    } <= seen


def test_every_awswrangler_call_fits_the_layers_version() -> None:
    assert awswrangler.__version__ == "3.14.0"  # pyproject.toml's aws extra: the layer
    calls = 0
    for node in (n for path in CALL_SITE_FILES for n in ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.Call) and ast.unparse(node.func).startswith("wr."):
            module, function = ast.unparse(node.func).split(".")[1:]
            signature = inspect.signature(getattr(getattr(awswrangler, module), function))
            keywords = {k.arg: None for k in node.keywords}
            signature.bind(*[None] * len(node.args), **keywords)
            calls += 1
    assert calls >= 5
