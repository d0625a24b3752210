"""The shipped Spark jobs, run the way EMR Serverless runs them, give `carrental run`'s tables.

`carrental deploy-jobs --out` writes exactly what a deploy uploads (entry points, carrental.zip);
each job is started with `spark-submit`, the workflow's own SparkSubmitParameters (the archive
as --py-files, the pinned interpreter) and the arguments the workflow passes (a run manifest
and the lake), in a venv holding only EMR's pyspark, from a folder outside the repository:
carrental can only come from the archive. The lake is staged by `carrental ingest`, as
ValidateUpload stages uploads on AWS; the manifest is the one its inputs make. What stays
unproven (EMRFS, S3, the EMR image's interpreter path) is listed in the README, "What only a
deploy proves".
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from carrental import lake
from carrental.cli import main
from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD
from carrental.lake import TABLES, table_run_path
from carrental.local.store import LocalLake
from carrental.spark.entrypoint import build_parser
from tests.aws.asl import render
from tests.aws.emulation import EMR_SPARK, QUICK_JVM, emulation_env, installed_distributions
from tests.aws.template import (
    REPO_ROOT,
    definition_substitutions,
    example_names,
    iter_states,
    load_template,
    render_definition,
    resolve,
)

pytestmark = pytest.mark.emulation

RUN_ID = "20261201T080000Z"
ARTIFACTS = "artifacts-bucket"
JOB_STATES = {
    "vehicle_location_performance": "RunVehicleLocationPerformanceJob",
    "user_transaction_analysis": "RunUserTransactionAnalysisJob",
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


def workflow_arguments(job: str, lake_root: Path) -> list[str]:
    """The EntryPointArguments the workflow gives `job` for this run, its s3://<bucket> lake
    root standing for the local lake."""
    template = load_template()
    names = example_names(template)
    definition = render_definition(resolve(definition_substitutions(template), names))
    (state,) = [s for _, n, s in iter_states(definition) if n == JOB_STATES[job]]
    run = {
        "run_id": RUN_ID,
        "bucket": names["DataLakeBucket"],
        "manifest_key": lake.manifest_key(RUN_ID),
    }
    params = render(state["Parameters"], run, {})
    bucket_root = f"s3://{names['DataLakeBucket']}"
    return [
        a.replace(bucket_root, str(lake_root), 1) if a.startswith(bucket_root) else a
        for a in params["JobDriver"]["SparkSubmit"]["EntryPointArguments"]
    ]


def dashboard_duration_pattern() -> re.Pattern:
    """The dashboard's parse of a job's "done in" line, in Python's spelling of named groups."""
    body = load_template()["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]
    (regex,) = re.findall(r"parse @message /(.*?)/ \|", body["Fn::Sub"])
    return re.compile(regex.replace("\\\\", "\\").replace("(?<", "(?P<"))


def test_the_shipped_jobs_on_emr_spark_write_the_tables_carrental_run_writes(
    emr_spark, publish_module, tmp_path
):
    assert set(installed_distributions(emr_spark)) <= {"pyspark", "py4j", "pip", "setuptools"}
    shipped = tmp_path / "shipped"
    assert main(["deploy-jobs", "--out", str(shipped)]) == 0
    outside = tmp_path / "elsewhere"  # the jobs' working directory: no carrental in reach
    outside.mkdir()
    carrental = Path(sys.executable).with_name("carrental")
    emr_lake, local_lake = tmp_path / "emr-lake", tmp_path / "local-lake"
    sample = [str(REPO_ROOT / "data" / "sample" / f"{d}.csv") for d in DATASETS]
    subprocess.run(
        [carrental, "ingest", "--lake", emr_lake, *sample], check=True, capture_output=True
    )
    shutil.copytree(emr_lake, local_lake)  # the same staged inputs for the reference run
    manifest = (
        LocalLake(emr_lake)
        .inputs()
        .manifest(RUN_ID, "2026-12-01T08:00:00+00:00", DEFAULT_REJECT_THRESHOLD)
    )
    manifest_path = emr_lake / lake.manifest_key(RUN_ID)
    manifest_path.parent.mkdir(parents=True)
    manifest_path.write_text(manifest.to_json(), encoding="utf-8")

    reference = subprocess.Popen(  # runs while the jobs below run
        [carrental, "run", "--lake", local_lake, "--run-id", RUN_ID],
        env={
            **os.environ,
            "PYSPARK_SUBMIT_ARGS": f"--driver-java-options {QUICK_JVM} pyspark-shell",
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )

    done_in = dashboard_duration_pattern()
    for job in sorted(set(TABLES.values())):
        args = workflow_arguments(job, emr_lake)
        parsed = build_parser(job).parse_args(args)
        assert (parsed.manifest, parsed.lake) == (str(manifest_path), str(emr_lake))
        done = spark_submit(emr_spark, shipped, job, args, outside)
        # spark-submit merges the Python driver's stderr into its own stdout
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-3000:]
        (line,) = [line for line in output.splitlines() if f"{job} run {RUN_ID} done in" in line]
        assert f"run_id={RUN_ID}:" in line  # every log line of the run carries its id
        assert done_in.search(line)["job"] == job and done_in.search(line)["run"] == RUN_ID
        assert "[Stage " not in output, "console progress bars"
    assert reference.wait(timeout=600) == 0, reference.stderr.read()[-3000:]

    for table in TABLES:
        emr_folder = table_run_path(str(emr_lake / "processed"), table, RUN_ID)
        local_folder = table_run_path(str(local_lake / "processed"), table, RUN_ID)
        emr, local = read_sorted(emr_folder), read_sorted(local_folder)
        assert emr.schema.equals(local.schema, check_metadata=False), table
        assert emr.equals(local), table
        # spark-submit's 200 shuffle partitions, sized down: a small table is one file
        assert len(list(Path(emr_folder).glob("part-*.parquet"))) == 1, table

    # PublishRun reads the job's own run_inputs table (its files and _SUCCESS marker) from S3
    run_inputs = Path(table_run_path(str(emr_lake / "processed"), "run_inputs", RUN_ID))
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="lake")
        for path in run_inputs.iterdir():
            key = f"{table_run_path(lake.PROCESSED, 'run_inputs', RUN_ID)}/{path.name}"
            s3.upload_file(str(path), "lake", key)
        read = sys.modules["publish"].read_run_inputs("lake", RUN_ID, None)
    assert read.to_dict("records") == pq.read_table(run_inputs).to_pandas().to_dict("records")
    assert list(read["source_file"]) == [f.key for f in manifest.inputs]
