"""A stand-in for the Lambda Python runtime, run in the layers' venv by test_lambda_emulation.py.

    python -I lambda_runtime.py REQUEST.json

`-I` keeps the current folder, this file's folder and PYTHONPATH off sys.path. Like the runtime,
it puts the function folder (/var/task) and the layer folder (/opt/python) first, imports the
handler once and invokes it on each event in turn, as one warm container would. An unhandled
error becomes {"errorType", "errorMessage"}, as Lambda reports it. Results go to the request's
`results` file (the functions log JSON on stdout).

Standard library only: nothing here may be something the functions lack in Lambda.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LambdaContext:
    """What the handlers and Powertools' Logger read of the Lambda context object
    (https://docs.aws.amazon.com/lambda/latest/dg/python-context.html). The one double of it:
    the in-process tests (tests/aws/conftest.py) pass it too."""

    function_name: str
    aws_request_id: str = "test-request"
    memory_limit_in_mb: int = 1024

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"


def main(request_file: str) -> None:
    request = json.loads(Path(request_file).read_text(encoding="utf-8"))
    sys.path[:0] = [request["function"], *request["layers"]]
    repository = Path(request["repository"]).resolve()
    inside = [p for p in sys.path if p and Path(p).resolve().is_relative_to(repository)]
    if inside:
        raise SystemExit(f"the repository is on sys.path: {inside}")
    module_name, handler_name = request["handler"].rsplit(".", 1)
    handler = getattr(importlib.import_module(module_name), handler_name)
    results = []
    for event in request["events"]:
        try:
            results.append({"result": handler(event, LambdaContext(request["function_name"]))})
        except Exception as exc:
            results.append({"errorType": type(exc).__name__, "errorMessage": str(exc)})
    loaded = {name: getattr(sys.modules.get(name), "__file__", None) for name in request["probe"]}
    Path(request["results"]).write_text(
        json.dumps({"invocations": results, "modules": loaded}, default=str), encoding="utf-8"
    )


if __name__ == "__main__":
    main(sys.argv[1])
