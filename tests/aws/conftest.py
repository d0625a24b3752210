"""Fixtures of the AWS tests: fake credentials, the functions' handler modules, a Lambda context."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import pytest

from tests.aws.template import REPO_ROOT

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real account: fake credentials, one region, no local AWS config."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


def load_function(folder: str, service: str) -> ModuleType:
    """lambdas/<folder>/app.py under its own name (every handler file is app.py); its folder is
    on sys.path while it loads, as in Lambda, so that its sibling modules import. Powertools
    reads its settings on import."""
    path = REPO_ROOT / "lambdas" / folder
    sys.path.insert(0, str(path))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("POWERTOOLS_SERVICE_NAME", service)
            patch.setenv("POWERTOOLS_METRICS_NAMESPACE", "carrental")
            spec = importlib.util.spec_from_file_location(f"{folder}_app", path / "app.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path))
    return module


@pytest.fixture(scope="session")
def report_app() -> ModuleType:
    return load_function("report", "report")


@pytest.fixture(scope="session")
def validate_module() -> ModuleType:
    return load_function("validate_upload", "validate-upload")


@pytest.fixture(scope="session")
def scheduler_module() -> ModuleType:
    return load_function("run_scheduler", "run-scheduler")


@pytest.fixture(scope="session")
def publish_module() -> ModuleType:
    return load_function("publish_run", "publish-run")


@pytest.fixture
def validate_app(validate_module, monkeypatch) -> Iterator[Callable[[dict], Callable]]:
    """The ValidateUpload handler with the given environment, AWS clients made afresh."""

    def with_environment(environment: dict[str, str]) -> Callable:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        validate_module.aws_clients.cache_clear()
        return validate_module.lambda_handler

    yield with_environment
    validate_module.aws_clients.cache_clear()


@dataclass(frozen=True)
class LambdaContext:
    function_name: str = "report"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:123456789012:function:report"
    aws_request_id: str = "test-request"


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext()
