"""The EMR Serverless entry points: identical flags, exit codes, one clear line on failure."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from carrental import lake, tables
from carrental.spark.entrypoint import _headline, build_parser, main
from carrental.spark.jobs import JOBS
from tests.conftest import REPO_ROOT
from tests.spark.test_jobs import write_hand_batch

pytestmark = pytest.mark.spark


def flags(folder, output, run_id="emr-1", vehicles=None) -> list[str]:
    return [
        *("--vehicles", str(vehicles or folder / "vehicles.csv")),
        *("--locations", str(folder / "locations.csv")),
        *("--users", str(folder / "users.csv")),
        *("--rentals", str(folder / "rental_transactions.csv")),
        *("--output", str(output)),
        *("--run-id", run_id),
        # the hand batch breaks rules on purpose: no file is held back for it
        *("--reject-threshold", "1"),
    ]


def test_one_list_of_jobs_drives_the_entry_points_and_the_tables():
    assert tuple(JOBS) == tables.JOBS
    assert sorted(p.stem for p in (REPO_ROOT / "emr_jobs").glob("*.py")) == sorted(tables.JOBS)
    assert set(lake.TABLES.values()) == set(tables.JOBS)


def test_both_jobs_take_the_same_flags():
    options = [sorted(a.option_strings[0] for a in build_parser(job)._actions) for job in JOBS]
    assert options[0] == options[1]
    assert {"--manifest", "--lake", "--vehicles", "--rentals", "--output", "--run-id"} <= set(
        options[0]
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--manifest", "m.json"], "--manifest and --lake go together"),
        (["--manifest", "m.json", "--lake", "/l", "--run-id", "x"], "cannot be combined"),
        (["--vehicles", "v.csv", "--run-id", "x"], "missing: --locations, --users"),
    ],
)
def test_the_inputs_are_named_one_way_completely(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main("user_transaction_analysis", arguments)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_a_bad_run_id_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main("user_transaction_analysis", flags(tmp_path, tmp_path, run_id="../other"))
    assert exit_.value.code == 2
    assert "invalid run id '../other'" in capsys.readouterr().err


def test_a_failure_exits_1_with_one_clear_error_line(spark, tmp_path, caplog):
    folder = write_hand_batch(tmp_path / "batch")
    missing = tmp_path / "nowhere" / "vehicles.csv"
    arguments = flags(folder, tmp_path / "processed", vehicles=missing)
    with caplog.at_level(logging.INFO, logger="carrental.spark"):
        assert main("vehicle_location_performance", arguments) == 1
    first_error = next(r for r in caplog.records if r.levelno == logging.ERROR)
    # a local path fails when its header is read; a remote one in Spark (PATH_NOT_FOUND)
    assert first_error.getMessage().startswith(
        "vehicle_location_performance run emr-1 FAILED: FileNotFoundError: "
    )
    assert str(missing) in first_error.getMessage()
    # a session this process already had is left running for its owner
    assert SparkSession.getActiveSession() is spark
    assert not (tmp_path / "processed").exists()


def test_a_success_in_process_logs_what_was_written(spark, tmp_path, caplog):
    folder = write_hand_batch(tmp_path / "batch")
    with caplog.at_level(logging.INFO, logger="carrental.spark"):
        assert main("user_transaction_analysis", flags(folder, tmp_path / "processed")) == 0
    done = caplog.records[-1].getMessage()
    assert done.startswith("user_transaction_analysis run emr-1 done in ")
    assert "rental_rejects 2 rows, data_quality 42 rows" in done


def test_the_script_runs_as_spark_submit_would_run_it(tmp_path):
    """A fresh process, with carrental on the path as the --py-files archive puts it and the
    settings spark-submit would pass (a JIT tuned for a short run keeps the test quick)."""
    folder = write_hand_batch(tmp_path / "batch")
    output = tmp_path / "processed"
    script = REPO_ROOT / "emr_jobs" / "vehicle_location_performance.py"
    finished = subprocess.run(
        [sys.executable, str(script), *flags(folder, output)],
        env={
            **os.environ,
            "PYTHONPATH": str(REPO_ROOT),
            "PYSPARK_SUBMIT_ARGS": "--master local[2] --driver-java-options "
            "-XX:TieredStopAtLevel=1 --conf spark.ui.enabled=false "
            "--conf spark.sql.shuffle.partitions=2 pyspark-shell",
        },
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "vehicle_location_performance run emr-1 done" in finished.stderr
    for table, writer in lake.TABLES.items():
        folder_of_run = lake.table_run_path(str(output), table, "emr-1")
        if writer == "vehicle_location_performance":
            assert pq.read_table(folder_of_run).num_rows > 0
        else:
            assert not os.path.exists(folder_of_run)


def test_the_error_line_skips_py4j_wrapping():
    wrapped = RuntimeError(
        "An error occurred while calling o77.parquet.\n"
        ": org.apache.spark.SparkException: Job aborted due to stage failure\n\tat ..."
    )
    assert _headline(wrapped) == "org.apache.spark.SparkException: Job aborted due to stage failure"
    assert _headline(ValueError("")) == ""
