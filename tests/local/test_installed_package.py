"""carrental as a user installs it: the wheel a clone builds, in a venv of its own, running
`carrental run` from a folder outside the repository.

Nothing can come from the clone there (no editable install, no repository on sys.path), so every
file the package reads at run time must be in the wheel: the report SQL (carrental/sql/), the
report page's assets. The venv holds the package's dependencies and its build backend; it is
made once per machine and requirement set (tests/aws/emulation.py) and the wheel is built and
reinstalled into it on every run. Its run must give the numbers the editable install gives on
the same sample.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from carrental.lake import TABLES, table_run_path
from carrental.report import REPORTS, SQL_DIR
from carrental.report_html import ASSETS, REPORT_PAGE
from tests.aws.emulation import QUICK_JVM, emulation_env
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.spark, pytest.mark.emulation]

SAMPLE = REPO_ROOT / "data" / "sample"
RUN_ID = "20261201T090000Z"
# When the files were ingested: the one value two runs of the same inputs do not share.
INGEST_TIME = {"run_inputs": "accepted_at"}


def start_carrental(executable: Path, *args: str, cwd: Path) -> subprocess.Popen:
    """A `carrental` command as a user runs it (no PYTHONPATH, no venv of ours active), in
    `cwd`; its Spark with a quick JVM."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment["PYSPARK_SUBMIT_ARGS"] = f"--driver-java-options {QUICK_JVM} pyspark-shell"
    return subprocess.Popen(
        [str(executable), *args],
        cwd=cwd,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Installed:
    env: Path
    wheel: Path

    def start(self, *args: str, cwd: Path) -> subprocess.Popen:
        return start_carrental(self.env / "bin" / "carrental", *args, cwd=cwd)


def requirements() -> tuple[str, ...]:
    """What `pip install .` puts beside carrental: its dependencies, plus the build backend to
    build the wheel with."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return (*pyproject["build-system"]["requires"], *pyproject["project"]["dependencies"])


def clone_files(destination: Path) -> Path:
    """The files a clone has (git's tracked files, as they are in the working tree): building
    writes build/ and *.egg-info into its source folder, so it builds from a copy."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    for name in listed.decode().split("\0"):
        if name and (REPO_ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, destination / name)
    return destination


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    env = emulation_env("installed-package", requirements())
    python = str(env / "bin" / "python")
    source = clone_files(tmp_path_factory.mktemp("clone"))
    wheels = tmp_path_factory.mktemp("wheels")
    pip = [python, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", wheels, source],
        check=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("carrental-*.whl")
    subprocess.run(
        [*pip, "install", "--no-deps", "--force-reinstall", wheel], check=True, timeout=300
    )
    return Installed(env, wheel)


def test_the_wheel_holds_every_file_the_package_reads(installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert {f"carrental/sql/{name}" for name in REPORTS.values()} <= names
    assert {p.name for p in SQL_DIR.iterdir()} == {
        n.removeprefix("carrental/sql/") for n in names if n.startswith("carrental/sql/")
    }
    assert {f"carrental/report_assets/{p.name}" for p in ASSETS.iterdir()} <= names


def read_table(lake_root: Path, table: str) -> list[tuple]:
    folder = table_run_path(str(lake_root / "processed"), table, RUN_ID)
    columns = f"* EXCLUDE ({INGEST_TIME[table]})" if table in INGEST_TIME else "*"
    return duckdb.sql(
        f"SELECT {columns} FROM read_parquet('{folder}/*.parquet') ORDER BY ALL"
    ).fetchall()


def test_carrental_run_from_the_wheel_gives_the_editable_installs_report_and_tables(
    installed, tmp_path
) -> None:
    outside = tmp_path / "elsewhere"  # the user's working folder: no repository in reach
    outside.mkdir()
    where = subprocess.run(
        [
            str(installed.env / "bin" / "python"),
            "-c",
            "import carrental; print(carrental.__file__)",
        ],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed.env), where

    installed_lake, editable_lake = tmp_path / "installed-lake", tmp_path / "editable-lake"
    arguments = ("--input", str(SAMPLE), "--run-id", RUN_ID, "--json")
    runs = [  # side by side
        start_carrental(executable, "run", "--lake", str(lake_root), *arguments, cwd=outside)
        for executable, lake_root in [
            (installed.env / "bin" / "carrental", installed_lake),
            (Path(sys.executable).with_name("carrental"), editable_lake),  # this venv's
        ]
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (_, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]

    result = json.loads(outputs[0][0])
    assert result["status"] == "published" and result["run_id"] == RUN_ID
    assert set(result["tables"]) == set(TABLES)
    report = Path(result["report"])
    assert report == installed_lake.resolve() / "reports" / RUN_ID / REPORT_PAGE
    editable_report = editable_lake / "reports" / RUN_ID
    for name in [*REPORTS, REPORT_PAGE]:
        assert (report.parent / name).read_bytes() == (editable_report / name).read_bytes(), name
    for table in TABLES:
        rows = read_table(installed_lake, table)
        assert len(rows) == result["tables"][table], table
        assert rows == read_table(editable_lake, table), table
    assert sum(result["tables"].values()) > 0


@pytest.mark.parametrize(
    "command", [["sync-template-sql", "--check"], ["deploy-jobs", "--out", "shipped"]]
)
def test_the_commands_that_need_the_repository_say_so(installed, tmp_path, command) -> None:
    done = installed.start(*command, cwd=tmp_path)
    stdout, stderr = done.communicate(timeout=120)
    assert done.returncode == 1 and stdout == ""
    (line,) = stderr.splitlines()
    assert line.startswith(f"carrental {command[0]}: ") and "in a clone" in line, line
    assert list(tmp_path.iterdir()) == []  # nothing written
