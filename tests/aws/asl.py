"""The parts of the Amazon States Language that the offline checks evaluate themselves.

A state's `Parameters` / `ResultSelector` hold literal values and `"Key.$"` fields, whose value
is a JSONPath into the state's input (or `$$.` into the context object) or an intrinsic function
call: https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html. Only the
intrinsics the definition uses are evaluated; any other one raises, so a new one cannot slip by.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<string>'(?:\\.|[^'\\])*')|(?P<path>\$\$?[^,()\s]*)|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>States\.\w+)|(?P<punct>[(),]))"
)


def _tokens(text: str) -> Iterator[tuple[str, str]]:
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise ValueError(f"cannot read intrinsic at {text[position:]!r}")
        kind = match.lastgroup
        yield kind, match[kind]
        position = match.end()


def evaluate(expression: str, document: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    """The value of a `.$` field: a JSONPath or an intrinsic function call."""
    tokens = list(_tokens(expression))
    value, rest = _expression(tokens, document, context)
    if rest:
        raise ValueError(f"unexpected {rest} in {expression!r}")
    return value


def _expression(tokens, document, context):
    kind, text = tokens[0]
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1]), tokens[1:]
    if kind == "number":
        return json.loads(text), tokens[1:]
    if kind == "path":
        return json_path(text, document, context), tokens[1:]
    if kind == "name":
        if tokens[1] != ("punct", "("):
            raise ValueError(f"{text} without arguments")
        arguments, rest = [], tokens[2:]
        while rest[0] != ("punct", ")"):
            argument, rest = _expression(rest, document, context)
            arguments.append(argument)
            if rest[0] == ("punct", ","):
                rest = rest[1:]
        return _call(text, arguments), rest[1:]
    raise ValueError(f"unexpected {text!r}")


def _call(name: str, arguments: list[Any]) -> Any:
    if name == "States.Format":
        template, *values = arguments
        pieces = template.split("{}")
        if len(pieces) != len(values) + 1:
            raise ValueError(f"States.Format: {len(values)} values for {template!r}")
        text = pieces[0]
        for value, piece in zip(values, pieces[1:], strict=True):
            text += (value if isinstance(value, str) else json.dumps(value)) + piece
        return text
    if name == "States.Array":
        return list(arguments)
    if name == "States.StringToJson":
        return json.loads(arguments[0])
    if name == "States.UUID":
        return str(uuid.uuid4())
    raise NotImplementedError(f"the offline checks do not evaluate {name}")


def json_path(path: str, document: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    """A reference path ($.a.b or $$.a.b): the simple JSONPath subset ASL paths use here."""
    value: Any = context if path.startswith("$$") else document
    for part in path.lstrip("$").strip(".").split("."):
        if part:
            value = value[part]
    return value


def render(template: Any, document: Mapping[str, Any], context: Mapping[str, Any]) -> Any:
    """A Parameters / ResultSelector template with every `.$` field evaluated."""
    if isinstance(template, dict):
        rendered = {}
        for key, value in template.items():
            if key.endswith(".$"):
                rendered[key[:-2]] = evaluate(value, document, context)
            else:
                rendered[key] = render(value, document, context)
        return rendered
    if isinstance(template, list):
        return [render(item, document, context) for item in template]
    return template


def paths_in(expression: str) -> list[str]:
    """The reference paths an intrinsic call or a path reads."""
    return [text for kind, text in _tokens(expression) if kind == "path"]
