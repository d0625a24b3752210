"""template.yaml and the state machine definition as data, for the stack tests.

CloudFormation's short tags (!Ref, !Sub, !GetAtt, ...) become their long JSON form, and
`resolve` evaluates the intrinsics the tests need against a map of physical values, the way
CloudFormation would. Anything it does not know raises, so a template change cannot slip by.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
ASL_PATH = REPO_ROOT / "stepfunctions" / "car_rental_pipeline.asl.json"
STATE_MACHINE = "CarRentalPipeline"

_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")
NO_VALUE = object()  # AWS::NoValue: the property is left out


class _CfnLoader(yaml.SafeLoader):
    pass


def _short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    return yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    return {name: spec.get("Default") for name, spec in template["Parameters"].items()}


def resolve(value: Any, names: Mapping[str, Any]) -> Any:
    """Evaluate Ref, Fn::GetAtt, Fn::Sub and Fn::If with `names`.

    Keys of `names`: "Logical", "Logical.Attribute", "AWS::Pseudo" and "Condition:Name".
    """
    if isinstance(value, list):
        return [item for item in (resolve(v, names) for v in value) if item is not NO_VALUE]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return NO_VALUE if value["Ref"] == "AWS::NoValue" else _lookup(names, value["Ref"])
    if set(value) == {"Fn::If"}:
        condition, if_true, if_false = value["Fn::If"]
        return resolve(if_true if _lookup(names, f"Condition:{condition}") else if_false, names)
    if set(value) == {"Fn::GetAtt"}:
        return _lookup(names, ".".join(value["Fn::GetAtt"]))
    if set(value) == {"Fn::Sub"}:
        text, variables = value["Fn::Sub"], {}
        if not isinstance(text, str):
            text, variables = text
            variables = {key: resolve(item, names) for key, item in variables.items()}
        scope = {**names, **variables}
        return _SUB_VARIABLE.sub(lambda m: str(_lookup(scope, m[1])), text)
    if any(key.startswith("Fn::") for key in value):
        raise NotImplementedError(f"the test resolver does not evaluate {value}")
    resolved = {key: resolve(item, names) for key, item in value.items()}
    return {key: item for key, item in resolved.items() if item is not NO_VALUE}


def _lookup(names: Mapping[str, Any], name: str) -> Any:
    if name not in names:
        raise KeyError(f"no test value for {name!r}; add it to the names map")
    return names[name]


def function_environment(
    template: Mapping[str, Any], function: str, names: Mapping[str, Any]
) -> dict[str, str]:
    """The environment variables the stack gives `function`, `names` resolving its references."""
    variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
    return {name: str(value) for name, value in resolve(variables, names).items()}


def definition_substitutions(template: Mapping[str, Any]) -> dict[str, Any]:
    return template["Resources"][STATE_MACHINE]["Properties"]["DefinitionSubstitutions"]


def render_definition(substitutions: Mapping[str, Any]) -> dict[str, Any]:
    """The definition Step Functions receives: every ${Key} replaced as raw text, then parsed."""
    text = ASL_PATH.read_text(encoding="utf-8")
    for key, value in substitutions.items():
        text = text.replace("${" + key + "}", str(value))
    leftover = re.findall(r"\$\{[^}]*\}", text)
    if leftover:
        raise ValueError(f"unsubstituted placeholders in the definition: {sorted(set(leftover))}")
    return json.loads(text)


def nested_machines(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The state machines inside a state: a Parallel's branches, a Map's item processor."""
    return [
        *state.get("Branches", []),
        *([state["ItemProcessor"]] if "ItemProcessor" in state else []),
    ]


def iter_states(definition: Mapping[str, Any], path: str = ""):
    """(path, name, state) for every state, inside Parallel branches and Map processors too."""
    for name, state in definition["States"].items():
        yield path, name, state
        for index, machine in enumerate(nested_machines(state)):
            yield from iter_states(machine, f"{path}{name}[{index}]/")


ACCOUNT = "123456789012"
REGION = "us-east-1"
# Resources whose physical name is their Name property.
NAMED_BY_PROPERTY = {
    "AWS::Glue::Crawler",
    "AWS::Glue::SecurityConfiguration",
    "AWS::Athena::WorkGroup",
    "AWS::EMRServerless::Application",
    "AWS::Serverless::StateMachine",
}


def example_names(template: Mapping[str, Any], stack: str = "carrental-test") -> dict[str, Any]:
    """Physical names and ARNs for a stack of `template`, as CloudFormation would make them,
    for every Ref / GetAtt that the definition's substitutions and the IAM policies use."""
    arn = f"arn:aws:{{}}:{REGION}:{ACCOUNT}:{{}}"
    names: dict[str, Any] = {
        **parameter_defaults(template),
        "AWS::StackName": stack,
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT,
        "AWS::Partition": "aws",
        "Condition:HasPreInitializedCapacity": False,
    }
    for bucket in ("DataLakeBucket", "ArtifactsBucket", "AccessLogsBucket"):
        names[bucket] = f"{stack}-{bucket.lower()}"
        names[f"{bucket}.Arn"] = f"arn:aws:s3:::{names[bucket]}"
    names["GlueDatabase"] = names["GlueDatabaseName"]
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        kind = resource["Type"]
        if kind == "AWS::IAM::Role":
            names[f"{logical_id}.Arn"] = f"arn:aws:iam::{ACCOUNT}:role/{stack}-{logical_id}"
        elif kind == "AWS::Serverless::Function":
            names[logical_id] = f"{stack}-{logical_id}"
            names[f"{logical_id}.Arn"] = arn.format("lambda", f"function:{names[logical_id]}")
        elif kind == "AWS::Logs::LogGroup":
            names[logical_id] = resolve(props["LogGroupName"], names)
            names[f"{logical_id}.Arn"] = arn.format("logs", f"log-group:{names[logical_id]}:*")
        elif kind in NAMED_BY_PROPERTY:
            names[logical_id] = resolve(props["Name"], names)
    names["PipelineKey.Arn"] = arn.format("kms", "key/0a1b2c3d-test")
    names["SparkApplication"] = "00fabcdef0123456"
    names["SparkApplication.Arn"] = arn.format(
        "emr-serverless", f"/applications/{names['SparkApplication']}"
    )
    names["AlertTopic"] = arn.format("sns", f"{stack}-AlertTopic")
    names["LedgerTable"] = f"{stack}-LedgerTable"
    names["LedgerTable.Arn"] = arn.format("dynamodb", f"table/{names['LedgerTable']}")
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] == "AWS::SQS::Queue":
            names[f"{logical_id}.QueueName"] = f"{stack}-{logical_id}"
            names[f"{logical_id}.Arn"] = arn.format("sqs", names[f"{logical_id}.QueueName"])
            names[logical_id] = (
                f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{names[f'{logical_id}.QueueName']}"
            )
        elif resource["Type"] == "AWS::Events::Rule":
            names[f"{logical_id}.Arn"] = arn.format("events", f"rule/{stack}-{logical_id}")
    names["CarRentalPipeline.Name"] = resolve(
        template["Resources"][STATE_MACHINE]["Properties"]["Name"], names
    )
    names["CarRentalPipeline"] = arn.format(
        "states", f"stateMachine:{names['CarRentalPipeline.Name']}"
    )
    return names


def role_statements(template: Mapping[str, Any], role: str, names: Mapping[str, Any]) -> list[dict]:
    """The Allow statements of an IAM role's inline policies, with every intrinsic resolved."""
    policies = template["Resources"][role]["Properties"]["Policies"]
    return [
        resolve(statement, names)
        for policy in policies
        for statement in policy["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]


def dashboard_widgets(template: Mapping[str, Any], names: Mapping[str, Any]) -> list[dict]:
    """The operations dashboard's widgets, the body's ${...} resolved with `names`."""
    body = template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]
    return json.loads(resolve(body, names))["widgets"]


def dashboard_metrics(template: Mapping[str, Any]) -> list[tuple[str, str, str | None]]:
    """(namespace, metric name, service dimension or None) of every metric the dashboard shows:
    a metric array ([namespace, name, dimension, value, ...]) or a SEARCH expression."""
    names = example_names(template)
    shown = []
    for widget in dashboard_widgets(template, names):
        for metric in widget["properties"].get("metrics", []):
            if "expression" in metric[0]:
                expression = metric[0]["expression"]
                (name,) = re.findall(r'MetricName="(\w+)"', expression)
                namespace = re.search(r"SEARCH\('\{?([\w/]+)", expression)[1]
                shown.append((namespace, name, None))
            else:
                namespace, name, *dimensions = [m for m in metric if isinstance(m, str)]
                service = dimensions[1] if dimensions[:1] == ["service"] else None
                shown.append((namespace, name, service))
    return shown
