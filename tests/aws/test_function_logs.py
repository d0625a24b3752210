"""The functions' log lines, as Powertools' structured logging means them: one fixed message a
line, what varies in keys of its own (`extra=`), so that a Logs Insights query filters on a key
instead of parsing text (https://docs.powertools.aws.dev/lambda/python/latest/core/logger/)."""

from __future__ import annotations

import ast

import pytest

from tests.aws.template import REPO_ROOT

LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
SOURCES = sorted((REPO_ROOT / "lambdas").glob("*/*.py"))


def log_calls(tree: ast.AST) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in LEVELS
        and ast.unparse(node.func.value) == "logger"
    ]


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_every_log_line_is_a_fixed_message(source) -> None:
    for call in log_calls(ast.parse(source.read_text(encoding="utf-8"))):
        message = call.args[0] if call.args else None
        assert isinstance(message, ast.Constant) and isinstance(message.value, str), (
            f"{source.name}:{call.lineno}: {ast.unparse(call)}"
        )


def test_the_check_sees_the_functions_log_lines() -> None:
    found = {
        source.parent.name: len(log_calls(ast.parse(source.read_text(encoding="utf-8"))))
        for source in SOURCES
    }
    assert all(found.get(folder) for folder in ("validate_upload", "run_scheduler", "publish_run"))
    formatted = ast.parse('logger.info(f"run {run_id} ended")')
    assert not isinstance(log_calls(formatted)[0].args[0], ast.Constant)
