"""Issue 12, item 8: what the machine does to `carrental run` and `carrental ingest` — a lake
that is a file, damaged bookkeeping (inputs.json, the publish record, a run's status), a
read-only lake, a full disk (Spark's own writes included) — ends in one line that names the
path and what to do, exit 1, with nothing left behind. A rejected file's reasons are shown
even when its quarantine fails."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from carrental.cli import main
from carrental.local import runner, store
from tests.hostile.conftest import (
    current_run,
    file_states,
    fill_disk,
    leftovers,
    read_only,
    ready_lake,
    run_cli,
    run_status,
    small_disk,
)


@pytest.fixture
def lake(tiny_batch: Path, tmp_path: Path) -> Path:
    return ready_lake(tmp_path / "lake", tiny_batch)


def broken_users(tiny_batch: Path, folder: Path) -> Path:
    """The batch in `folder`, but users.csv's 5th row has lost its last two fields: that file
    is rejected at ingest."""
    shutil.copytree(tiny_batch, folder)
    lines = (tiny_batch / "users.csv").read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 2)[0]
    (folder / "users.csv").write_text("\n".join(lines) + "\n")
    return folder / "users.csv"


def bookkeeping(lake: Path) -> dict:
    """The lake's files except its lock files (opening a lock may create it)."""
    return {p: state for p, state in file_states(lake).items() if not p.name.endswith(".lock")}


def error_line(capsys) -> str:
    """stderr, which must be one line (the Progress lines of a run apart)."""
    lines = [
        line for line in capsys.readouterr().err.splitlines() if not line.startswith(("✓", "✗"))
    ]
    assert len(lines) == 1, lines
    return lines[0]


def test_a_lake_that_is_a_file(tiny_batch, tmp_path, capsys):
    file = tmp_path / "lake"
    file.write_text("not a lake")
    for command in ("run", "ingest"):
        extra = [str(tiny_batch / "users.csv")] if command == "ingest" else []
        assert main([command, "--lake", str(file), *extra]) == 1
        assert error_line(capsys) == (
            f"carrental {command}: the lake {file} is a file, not a folder: pass another --lake"
        )
        assert main([command, "--lake", str(file / "lake"), *extra]) == 1
        assert error_line(capsys) == (
            f"carrental {command}: the lake {file / 'lake'} cannot be made: {file} is a file: "
            "pass another --lake"
        )
    assert file.read_text() == "not a lake"


def damage(lake: Path, what: str) -> Path:
    if what == "run status":
        target = lake / "runs" / "r0" / "status.json"
        target.parent.mkdir(parents=True)
        target.write_text('{"run_id": "r0", "sta')
    elif what == "run status without a state":
        target = lake / "runs" / "r0" / "status.json"
        target.parent.mkdir(parents=True)
        target.write_text("[]")
    else:
        target = (
            lake
            / {"inputs": "inputs.json", "publish record": "published/runs.jsonl"}[
                what.split(" (")[0]
            ]
        )
        if what.endswith("(a folder)"):
            target.unlink()
            target.mkdir()
        else:  # a truncated write, from a tool that does not write atomically
            target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    return target


@pytest.mark.parametrize(
    ("what", "commands"),
    [
        ("inputs", ["run", "ingest"]),
        ("inputs (a folder)", ["run", "ingest"]),
        ("publish record", ["run"]),
        ("publish record (a folder)", ["run"]),
        ("run status", ["run"]),
        ("run status without a state", ["run"]),
    ],
)
def test_damaged_bookkeeping_is_named_with_what_to_do(lake, tiny_batch, capsys, what, commands):
    target = damage(lake, what)
    before = bookkeeping(lake)
    for command in commands:
        extra = [str(tiny_batch / "users.csv")] if command == "ingest" else []
        assert main([command, "--lake", str(lake), *extra]) == 1
        line = error_line(capsys)
        assert line.startswith(f"carrental {command}: ") and str(target) in line, line
        assert "restore it" in line or "restore the file" in line, line
        assert bookkeeping(lake) == before


def test_a_read_only_lake_still_shows_why_a_file_is_rejected(lake, tiny_batch, tmp_path):
    bad = broken_users(tiny_batch, tmp_path / "exports")
    before = bookkeeping(lake)
    with read_only(lake):
        ingest = run_cli("ingest", "--lake", str(lake), str(bad))
        run = run_cli("run", "--lake", str(lake), "--input", str(bad.parent))
    out = ingest.stdout.decode()
    assert ingest.returncode == 1 and ingest.stderr == b""
    assert out.startswith(f"{bad}: REJECTED (users")
    assert "field_count: 1 rows do not have the header's 9 fields" in out
    (quarantine,) = [line for line in out.splitlines() if "not quarantined" in line]
    assert re.fullmatch(
        rf"  not quarantined: cannot write {re.escape(str(lake))}/quarantine\S*: "
        r"(Read-only file system; remount it writable|Permission denied; make the lake "
        r"writable for you \(chmod/chown\)) or pass another --lake",
        quarantine,
    ), quarantine
    assert run.returncode == 1 and run.stdout == b""
    assert re.fullmatch(
        rf"carrental run: cannot write {re.escape(str(lake))}/\.run\.lock: (Read-only file "
        r"system|Permission denied); .* or pass another --lake\n",
        run.stderr.decode(),
    ), run.stderr
    assert bookkeeping(lake) == before


FREE_SPACE = (
    r"No space left on device, [\d,.]+ (bytes|KB|MB) free; "
    "free some space on that disk and try again"
)


def test_a_full_disk_while_ingesting_leaves_nothing(tiny_batch, tmp_path):
    bad = broken_users(tiny_batch, tmp_path / "exports")
    with small_disk(tmp_path / "disk", size="4m") as disk:
        lake = disk / "lake"
        fill_disk(disk)
        result = run_cli("ingest", "--lake", str(lake), str(bad), str(tiny_batch / "users.csv"))
        files = [p for p in lake.rglob("*") if p.is_file()]
    out, err = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 1
    assert "field_count: 1 rows do not have the header's 9 fields" in out
    assert re.search(
        rf"\n  not quarantined: cannot write {re.escape(str(lake))}/quarantine/users/"
        rf"\d{{8}}T\d{{6}}Z-users\.csv: {FREE_SPACE}\n",
        out,
    ), out
    assert re.fullmatch(
        rf"carrental ingest: cannot write {re.escape(str(lake))}/staged/v1/users\S*: "
        rf"{FREE_SPACE}\n",
        err,
    ), err
    assert files == []  # no partial staged file, no half quarantine, no inputs record


@pytest.mark.spark
@pytest.mark.parametrize("stage", ["spark jobs", "summary + report", "publish"])
def test_a_disk_that_fills_up_during_a_run(tiny_batch, tmp_path, monkeypatch, capsys, stage):
    """The disk fills up as the stage starts; for Spark, room is left for its first files, so
    that Spark's own write fails mid-way."""
    owner, target, leave = {
        "spark jobs": (runner, "run_spark_jobs", 64 * 1024),
        "summary + report": (runner, "write_report", 0),
        "publish": (store.LocalLake, "publish", 0),
    }[stage]
    original = getattr(owner, target)

    def on_a_full_disk(*args):
        fill_disk(disk, leave)
        return original(*args)

    with small_disk(tmp_path / "disk", size="32m") as disk:
        lake = ready_lake(disk / "lake", tiny_batch)
        record = (lake / "published" / "runs.jsonl").read_bytes()
        monkeypatch.setattr(owner, target, on_a_full_disk)
        assert main(["run", "--lake", str(lake), "--run-id", "full"]) == 1
        line = error_line(capsys)
        where = {
            # the file Spark names, else the folder it writes into
            "spark jobs": rf"{re.escape(str(lake))}/processed(/\w+/run_id=full)?",
            "summary + report": re.escape(str(lake / "reports" / "full")),
            "publish": re.escape(str(lake / "published" / "runs.jsonl")),
        }[stage]
        log = lake / "runs" / "full" / "spark.log"
        assert re.fullmatch(
            rf"carrental run: {re.escape(stage)} failed: cannot write {where}: {FREE_SPACE}"
            rf"( \(details in {re.escape(str(log))}\))?; the published run r1 is unchanged",
            line,
        ), line
        # Spark's whole error goes to its log, unless the disk keeps it out: then the line
        # does not point there
        logged = stage == "spark jobs" and "No space left on device" in log.read_text()
        assert ("(details in " in line) == logged
        assert leftovers(lake) == []
        assert (lake / "published" / "runs.jsonl").read_bytes() == record
        assert current_run(lake) == "r1"
        status = run_status(lake, "full")
        assert (status["state"], status["failed_stage"]) == ("failed", stage)


@pytest.mark.spark
def test_a_full_disk_under_sparks_temporary_folder(tiny_batch, tmp_path):
    """Spark's own scratch space (spark.local.dir, here SPARK_LOCAL_DIRS) on a full disk: the
    error names no file, the line names the folder that is full."""
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    record = (lake / "published" / "runs.jsonl").read_bytes()
    with small_disk(tmp_path / "scratch", size="2m") as scratch:
        fill_disk(scratch)
        env = {"SPARK_LOCAL_DIRS": str(scratch)}
        result = run_cli("run", "--lake", str(lake), "--run-id", "full", env=env, timeout=300)
    log = lake / "runs" / "full" / "spark.log"
    assert (result.returncode, result.stdout) == (1, b"")
    assert re.fullmatch(
        rf"carrental run: spark jobs failed: cannot write {re.escape(str(scratch))}: "
        rf"{FREE_SPACE} \(details in {re.escape(str(log))}\); the published run r1 is unchanged",
        result.stderr.decode().splitlines()[-1],
    ), result.stderr
    assert "No space left on device" in log.read_text()
    assert leftovers(lake) == [] and (lake / "published" / "runs.jsonl").read_bytes() == record
    assert run_status(lake, "full")["state"] == "failed"
