"""Fixtures of the AWS tests: fake credentials, the functions' handler modules, a Lambda context.

`use_fake_aws` and `load_function` serve tests outside tests/aws too (tests/hostile/test_fuzz.py).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

import pytest

from tests.aws.lambda_runtime import LambdaContext
from tests.aws.template import REPO_ROOT

REGION = "us-east-1"
# No test may reach a real account: fake credentials, one region, no local AWS config.
FAKE_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "POWERTOOLS_TRACE_DISABLED": "true",
}


def use_environment(monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def use_fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    use_environment(monkeypatch, FAKE_AWS_ENVIRONMENT)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_aws(monkeypatch)


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
def report_context() -> LambdaContext:
    return LambdaContext("report")
