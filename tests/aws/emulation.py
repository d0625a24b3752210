"""Virtual environments that hold only what a cloud runtime has, for the emulation tests.

EMR Serverless runs the Spark jobs on its own Spark with nothing of ours installed; Lambda runs
the handlers with the managed layers' packages only; a user runs `pip install .`'s wheel
(tests/local/test_installed_package.py). Each emulation test runs our shipped code in such an
environment, from a folder outside the repository, so that an import or a file that works only
because the repository is at hand fails here as it would there.

An environment is created once per machine and requirement set and reused: under
$CARRENTAL_EMULATION_CACHE, else ~/.cache/carrental-emulation/, in a folder named after a hash of
the interpreter version and the requirements. Creation is locked (two pytest processes wait for
one another) and marked complete only at the end (an interrupted one is rebuilt).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.aws.template import REPO_ROOT

# A JVM that lives seconds spends more CPU in the optimising JIT than it saves.
QUICK_JVM = "-XX:TieredStopAtLevel=1"

# emr-spark-8.0.0 runs Spark 4.0.2 ("Spark 4.0.2-amzn-0"):
# https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/release-version-emr-spark-8.0.0.html
EMR_SPARK = ("pyspark==4.0.2",)


def lambda_layer_requirements() -> tuple[str, ...]:
    """The layers' packages at the versions of template.yaml: pyproject.toml's `aws` extra."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return tuple(pyproject["project"]["optional-dependencies"]["aws"])


def cache_root() -> Path:
    configured = os.environ.get("CARRENTAL_EMULATION_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "carrental-emulation"


def emulation_env(name: str, requirements: tuple[str, ...]) -> Path:
    """The folder of a venv holding exactly `requirements` (and their dependencies)."""
    identity = json.dumps([sys.version_info[:2], sorted(requirements)])
    folder = cache_root() / f"{name}-{hashlib.sha256(identity.encode()).hexdigest()[:12]}"
    complete = folder / ".complete"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f"{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not complete.is_file():
            subprocess.run(
                [sys.executable, "-m", "venv", "--clear", str(folder)], check=True, timeout=300
            )
            subprocess.run(
                [
                    str(folder / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    *requirements,
                ],
                check=True,
                timeout=900,
            )
            complete.write_text(identity + "\n", encoding="utf-8")
    return folder


def installed_distributions(env: Path) -> dict[str, str]:
    """Normalised name (PEP 503) -> version of everything installed in the venv, as its own
    interpreter sees it."""
    probe = (
        "import json, re, importlib.metadata as m; print(json.dumps("
        "{re.sub(r'[-_.]+', '-', d.metadata['Name']).lower(): d.version"
        " for d in m.distributions()}))"
    )
    output = subprocess.run(
        [str(env / "bin" / "python"), "-I", "-c", probe],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(output)


def folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file() and not f.is_symlink())
