"""Issue 12, item 4: Ctrl-C during any stage of `carrental run`, or during `carrental ingest`,
ends with one line that names the stage and what stayed as it was, exit 130, and nothing left
behind: no partial files, no report staging folder, no tables or report of the cut run, no
Spark temporary folders; the run's status says `interrupted`.

Spark's stage is interrupted as a terminal does it (SIGINT to the whole process group, the JVM
included) in a subprocess. The other stages are cut in this process at a chosen point: a hook
sends this process a real SIGINT, which the CLI's handler turns into the interrupt."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from carrental.cli import main
from carrental.local import console, runner, store
from tests.conftest import generated_batch
from tests.hostile.conftest import (
    current_run,
    finish,
    group_ended,
    interrupted,
    leftovers,
    press_ctrl_c,
    ready_lake,
    run_status,
    spark_env,
    start_cli,
    wait_until,
)

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")


def ctrl_c_here() -> None:
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(scope="module")
def big_batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """vehicles.csv of ~90 MB: ingesting it takes about a second, time to interrupt it."""
    return generated_batch(tmp_path_factory, "big_batch", scale=20, seed=1)


def test_ctrl_c_while_ingesting_leaves_the_file_out(big_batch, tiny_batch, tmp_path):
    lake = tmp_path / "lake"
    users, vehicles = tiny_batch / "users.csv", big_batch / "vehicles.csv"
    code, err = interrupted(
        ["ingest", "--lake", str(lake), str(users), str(vehicles)], "vehicles.csv", settle=0.05
    )
    assert (code, err) == (
        130,
        f"carrental ingest: interrupted while ingesting {vehicles}: it was not added; "
        "the files before it are done\n",
    )
    assert leftovers(lake) == []
    assert sorted(p.name for p in (lake / "raw").iterdir()) == ["users"]
    assert not list((lake / "staged" / "v1").glob("vehicles/*"))
    assert "raw/vehicles" not in (lake / "inputs.json").read_text()


def test_ctrl_c_in_the_ingest_stage_of_a_run(big_batch, tiny_batch, tmp_path):
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    before = (lake / "inputs.json").read_bytes()
    code, err = interrupted(
        ["run", "--lake", str(lake), "--input", str(big_batch)], "vehicles.csv", settle=0.05
    )
    assert (code, err.splitlines()[-1]) == (
        130,
        "carrental run: interrupted during ingest; the published run r1 is unchanged",
    )
    assert "Traceback" not in err
    assert (lake / "inputs.json").read_bytes() == before
    assert leftovers(lake) == [] and not (lake / "runs").exists()


@pytest.mark.spark
@pytest.mark.parametrize("moment", ["while Spark starts", "while Spark writes a table"])
def test_ctrl_c_in_the_spark_stage(tiny_batch, tmp_path, moment):
    """The issue saw a py4j traceback or "functions.col does not exist in the JVM" here."""
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    record = (lake / "published" / "runs.jsonl").read_bytes()
    env = spark_env(tmp_path)
    process = start_cli(["run", "--lake", str(lake), "--run-id", "cut"], env)
    if moment == "while Spark starts":
        wait_until(lambda: (lake / "runs" / "cut" / "spark.log").exists(), "starting", process)
    else:
        wait_until(lambda: any(lake.glob("processed/*/run_id=cut")), "writing", process)
    press_ctrl_c(process)
    code, out, err = finish(process)
    assert (code, out, err) == (
        130,
        "",
        "carrental run: interrupted during spark jobs; the published run r1 is unchanged\n",
    )
    status = run_status(lake, "cut")
    assert (status["state"], status["failed_stage"]) == ("interrupted", "spark jobs")
    assert (lake / "published" / "runs.jsonl").read_bytes() == record
    assert leftovers(lake) == []
    wait_until(lambda: group_ended(process.pid), "ending the JVM", timeout=60)
    assert list(Path(env["SPARK_LOCAL_DIRS"]).iterdir()) == []  # Spark's temporary folders


@pytest.mark.spark
def test_ctrl_c_in_the_report_stage_removes_the_partial_report(
    tiny_batch, tmp_path, monkeypatch, capsys
):
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    shaped = []
    shape_report = runner.shape_report

    def third_report_interrupted(name, frame):
        shaped.append(name)
        if len(shaped) == 3:  # two report files are in the staging folder by now
            assert len(list((lake / "reports" / ".cut.tmp").iterdir())) == 2
            ctrl_c_here()
        return shape_report(name, frame)

    monkeypatch.setattr(runner, "shape_report", third_report_interrupted)
    assert main(["run", "--lake", str(lake), "--run-id", "cut"]) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == (
        "carrental run: interrupted during summary + report; the published run r1 is unchanged"
    )
    assert "Traceback" not in err and "failed" not in err
    assert (run_status(lake, "cut")["state"], current_run(lake)) == ("interrupted", "r1")
    assert leftovers(lake) == []  # the staging folder and its two files included


@pytest.mark.spark
@pytest.mark.parametrize("moment", ["before the record is written", "while it is written"])
def test_ctrl_c_in_the_publish_stage_leaves_one_truth(
    tiny_batch, tmp_path, monkeypatch, capsys, moment
):
    """Before the publish record's write, the run is not published; once the write began, it
    completes (the record, the run's status) and the message says the run was published."""
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    if moment == "before the record is written":
        stage = console.Progress.stage

        def publish_interrupted(self, name):
            if name == "publish":
                ctrl_c_here()
            return stage(self, name)

        monkeypatch.setattr(console.Progress, "stage", publish_interrupted)
    else:
        publish = store.LocalLake.publish

        def interrupted_while_publishing(self, run_id):
            ctrl_c_here()
            publish(self, run_id)

        monkeypatch.setattr(store.LocalLake, "publish", interrupted_while_publishing)
    assert main(["run", "--lake", str(lake), "--run-id", "cut"]) == 130
    last_line = capsys.readouterr().err.splitlines()[-1]
    if moment == "before the record is written":
        assert last_line == (
            "carrental run: interrupted during publish; the published run r1 is unchanged"
        )
        assert (run_status(lake, "cut")["state"], current_run(lake)) == ("interrupted", "r1")
        assert leftovers(lake) == []
    else:
        assert last_line == "carrental run: interrupted after publishing run cut"
        assert (run_status(lake, "cut")["state"], current_run(lake)) == ("published", "cut")
        assert (lake / "reports" / "cut" / "summary.csv").exists()
