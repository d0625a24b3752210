"""The shipped Spark jobs, run the way EMR Serverless runs them, give `carrental run`'s tables.

`carrental deploy-jobs --out` writes exactly what a deploy uploads (entry points, carrental.zip);
each job is started with `spark-submit` and the workflow's own SparkSubmitParameters (the archive
as --py-files, the pinned interpreter), in a venv holding only EMR's pyspark, from a folder
outside the repository: carrental can only come from the archive. What stays unproven (EMRFS,
S3, the EMR image's interpreter path) is listed in the README, "What only a deploy proves".
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from carrental.cli import main
from carrental.lake import TABLES, table_run_path
from carrental.spark.entrypoint import build_parser
from tests.aws.emulation import EMR_SPARK, emulation_env, installed_distributions
from tests.aws.template import REPO_ROOT, definition_substitutions, load_template, resolve

pytestmark = pytest.mark.emulation

RUN_ID = "emulated-1"
QUICK_JVM = "-XX:TieredStopAtLevel=1"
ARTIFACTS = "artifacts-bucket"
JOB_INPUTS = {
    "--vehicles": "vehicles",
    "--locations": "locations",
    "--users": "users",
    "--rentals": "rental_transactions",
}


@pytest.fixture(scope="module")
def emr_spark() -> Path:
    return emulation_env("emr-spark", EMR_SPARK)


def submit_parameters(shipped: Path) -> list[str]:
    """The workflow's SparkSubmitParameters, with the artifacts bucket read from `shipped`."""
    names = {"ArtifactsBucket": ARTIFACTS}
    text = resolve(definition_substitutions(load_template())["SparkSubmitParameters"], names)
    return shlex.split(text.replace(f"s3://{ARTIFACTS}/", f"{shipped}/"))


def spark_submit(env: Path, shipped: Path, job: str, args: list[str], cwd: Path):
    python = str(env / "bin" / "python")
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "PYSPARK", "SPARK_", "VIRTUAL_ENV"))
    }
    environment.update(
        PATH=f"{env / 'bin'}{os.pathsep}{environment.get('PATH', '')}",
        PYSPARK_PYTHON=python,
        PYSPARK_DRIVER_PYTHON=python,
    )
    command = [
        str(env / "bin" / "spark-submit"),
        "--master",
        "local[2]",
        # A JVM that lives seconds spends more CPU in the optimising JIT than it saves.
        "--driver-java-options",
        QUICK_JVM,
        *submit_parameters(shipped),
        str(shipped / "jobs" / f"{job}.py"),
        *args,
    ]
    return subprocess.run(
        command, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600
    )


def read_sorted(folder: str):
    table = pq.read_table(folder)
    return table.sort_by([(name, "ascending") for name in table.column_names])


def test_the_shipped_jobs_on_emr_spark_write_the_tables_carrental_run_writes(emr_spark, tmp_path):
    assert set(installed_distributions(emr_spark)) <= {"pyspark", "py4j", "pip", "setuptools"}
    batch = tmp_path / "batch"
    shutil.copytree(REPO_ROOT / "data" / "sample", batch)
    shipped = tmp_path / "shipped"
    assert main(["deploy-jobs", "--out", str(shipped)]) == 0
    outside = tmp_path / "elsewhere"  # the jobs' working directory: no carrental in reach
    outside.mkdir()

    local_lake = tmp_path / "local-lake"
    carrental = Path(sys.executable).with_name("carrental")
    reference = subprocess.Popen(  # runs while the jobs below run
        [carrental, "run", "--input", batch, "--lake", local_lake, "--run-id", RUN_ID],
        env={
            **os.environ,
            "PYSPARK_SUBMIT_ARGS": f"--driver-java-options {QUICK_JVM} pyspark-shell",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    emr_processed = tmp_path / "emr-lake" / "processed"
    for job in sorted(set(TABLES.values())):
        args = [a for flag, d in JOB_INPUTS.items() for a in (flag, str(batch / f"{d}.csv"))]
        args += ["--output", str(emr_processed), "--run-id", RUN_ID]
        build_parser(job).parse_args(args)  # the flags the workflow passes, nothing else
        done = spark_submit(emr_spark, shipped, job, args, outside)
        # spark-submit merges the Python driver's stderr into its own stdout
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        assert f"{job} run {RUN_ID} done in" in output, output[-3000:]
        assert "[Stage " not in output, "console progress bars"
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    for table in TABLES:
        emr_folder = table_run_path(str(emr_processed), table, RUN_ID)
        local_folder = table_run_path(str(local_lake / "processed"), table, RUN_ID)
        emr, local = read_sorted(emr_folder), read_sorted(local_folder)
        assert emr.schema.equals(local.schema, check_metadata=False), table
        assert emr.equals(local), table
        # spark-submit's 200 shuffle partitions, sized down: a small table is one file
        assert len(list(Path(emr_folder).glob("part-*.parquet"))) == 1, table
