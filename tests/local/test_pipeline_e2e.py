"""`carrental ingest` and `carrental run` end to end: real validation and staging, real local
Spark, real DuckDB, real files, the daily lifecycle of a lake.

Expected numbers come from independent computations: a DuckDB query over the raw CSVs (minus
the rows defects.json says were corrupted) for the headline KPIs, and
reference/kpis.py for the tables of a rental history.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from carrental import lake, tables
from carrental.cli import main
from carrental.local.runner import StageError, run_pipeline
from carrental.local.store import LakeBusy, LocalLake
from carrental.report_html import REJECTS_SHOWN
from reference.kpis import canonical, reference_tables
from tests.conftest import REPO_ROOT, generated_batch
from tests.local.conftest import query
from tests.local.report_page import assert_page_shows_summary, open_report
from tests.table_checks import defined_columns, key_violations, written_columns

pytestmark = pytest.mark.spark

DIMENSIONS = ("vehicles", "locations", "users")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_batch(tmp_path_factory, "e2e_batch", scale=0.1, seed=5, dirty_rate=0.02)


@pytest.fixture(scope="module")
def first_run(batch: Path, tmp_path_factory: pytest.TempPathFactory):
    lake_root = tmp_path_factory.mktemp("e2e_lake")
    return run_pipeline(lake_root, batch, run_id="first"), lake_root


def expected_summary(batch: Path) -> dict[str, str]:
    """The headline KPIs, computed from the CSVs without any pipeline code."""
    bad_rows = [d["row"] for d in json.loads((batch / "defects.json").read_text())["defects"]]
    con = duckdb.connect()
    con.execute(
        f"""
        CREATE TABLE rentals AS
        SELECT * EXCLUDE (row_number) FROM (
          SELECT *, row_number() OVER () AS row_number
          FROM read_csv('{batch / "rental_transactions.csv"}', all_varchar = true, header = true)
        ) WHERE row_number NOT IN ({",".join(map(str, bad_rows))});
        CREATE TABLE users AS SELECT * FROM read_csv('{batch / "users.csv"}', all_varchar = true);
        CREATE TABLE vehicles AS
          SELECT * FROM read_csv('{batch / "vehicles.csv"}', all_varchar = true, quote = '"',
                                 escape = '"');
        CREATE TABLE locations AS
          SELECT * FROM read_csv('{batch / "locations.csv"}', all_varchar = true);
        CREATE TABLE valid AS
          SELECT r.*, CAST(r.total_amount AS DECIMAL(12, 2)) AS amount,
                 epoch(CAST(rental_end_time AS TIMESTAMP)) / 3600.0
                   - epoch(CAST(rental_start_time AS TIMESTAMP)) / 3600.0 AS hours,
                 v.vehicle_type, l.location_name, l.city, u.first_name, u.last_name
          FROM rentals r
          JOIN vehicles v USING (vehicle_id)
          JOIN users u USING (user_id)
          JOIN locations l ON l.location_id = r.pickup_location;
        """
    )
    (revenue, count, users, vehicles, avg_amount, avg_hours, first, last) = con.execute(
        "SELECT sum(amount), count(*), count(DISTINCT user_id), count(DISTINCT vehicle_id), "
        "avg(amount), avg(hours), min(CAST(rental_start_time AS DATE)), "
        "max(CAST(rental_start_time AS DATE)) FROM valid"
    ).fetchall()[0]
    location = con.execute(
        "SELECT CAST(pickup_location AS INTEGER) AS id, location_name, city, "
        "sum(amount) AS revenue FROM valid GROUP BY pickup_location, location_name, city "
        "ORDER BY revenue DESC, id LIMIT 1"
    ).fetchall()[0]
    vehicle_type = con.execute(
        "SELECT vehicle_type, count(*) AS n FROM valid GROUP BY 1 ORDER BY n DESC, 1 LIMIT 1"
    ).fetchall()[0]
    spender = con.execute(
        "SELECT first_name, last_name, user_id, sum(amount) AS spent FROM valid "
        "GROUP BY ALL ORDER BY spent DESC, user_id LIMIT 1"
    ).fetchall()[0]
    cent = Decimal("0.01")
    return {
        "total_revenue": f"{revenue:.2f}",
        "rental_count": str(count),
        "unique_customers": str(users),
        "unique_vehicles_rented": str(vehicles),
        "avg_rental_amount": str(Decimal(avg_amount).quantize(cent)),
        "avg_rental_hours": str(Decimal(repr(avg_hours)).quantize(cent)),
        "first_rental_date": str(first),
        "last_rental_date": str(last),
        "top_location_id": str(location[0]),
        "top_location_name": location[1],
        "top_location_city": location[2],
        "top_location_revenue": f"{location[3]:.2f}",
        "most_rented_vehicle_type": vehicle_type[0],
        "most_rented_vehicle_type_rentals": str(vehicle_type[1]),
        "top_spender_user_id": spender[2],
        "top_spender_name": f"{spender[0]} {spender[1]}",
        "top_spender_total_spent": f"{spender[3]:.2f}",
        "rejected_rentals": str(len(bad_rows)),
    }


def read_summary(report_dir: Path) -> dict[str, str]:
    with open(report_dir / "summary.csv", newline="") as f:
        return {row["metric"]: row["value"] for row in csv.DictReader(f)}


def published_run(lake_root: Path) -> str | None:
    runs = LocalLake(lake_root).published()
    return next((r.run_id for r in runs if r.is_current), None)


def test_run_writes_the_report_the_raw_data_implies(batch, first_run):
    result, lake_root = first_run
    assert read_summary(result.report_dir) == expected_summary(batch)
    assert sorted(p.name for p in result.report_dir.iterdir()) == sorted(
        [
            "summary.csv",
            "top_locations.csv",
            "top_users.csv",
            "vehicle_types.csv",
            "daily_revenue.csv",
            "data_quality.csv",
            "rejected_rentals.csv",
            "inputs.csv",
            "report.html",
        ]
    )
    assert published_run(lake_root) == "first"
    manifest = LocalLake(lake_root).manifest("first")
    assert [f.dataset for f in manifest.inputs] == [*DIMENSIONS, "rental_transactions"]
    assert LocalLake(lake_root).status("first")["state"] == "published"


def defect_rows(batch: Path) -> list[list[str]]:
    """(row, broken rule) of every corrupted rental, in row order: defects.json's ground truth."""
    defects = json.loads((batch / "defects.json").read_text())["defects"]
    return [[str(d["row"]), d["rule"]] for d in sorted(defects, key=lambda d: d["row"])]


def test_the_rejected_rentals_report_lists_every_defect(batch, first_run):
    result, _ = first_run
    with open(result.report_dir / "rejected_rentals.csv", newline="") as f:
        listed = [[row["row_number"], row["reject_reason"]] for row in csv.DictReader(f)]
    assert listed == defect_rows(batch)


def test_the_report_page_shows_the_run_in_a_browser(batch, first_run, chromium, tmp_path):
    result, _ = first_run
    loaded = open_report(chromium, result.report_dir / "report.html", tmp_path / "report.png")
    assert_page_shows_summary(loaded, result.report_dir / "summary.csv")
    shown = loaded.evaluate(
        "[...document.querySelectorAll('table.rejects tbody tr')]"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent])"
    )
    assert shown == defect_rows(batch)[:REJECTS_SHOWN]


def test_every_table_answers_a_query(first_run, capsys):
    result, lake_root = first_run
    for table, rows in result.tables.items():
        sql = f"SELECT count(*) AS n FROM {table}"
        assert main(["query", "--lake", str(lake_root), "--format", "json", sql]) == 0
        assert json.loads(capsys.readouterr().out) == [{"n": rows}], table


def test_every_table_has_its_defined_columns_and_a_unique_key(first_run):
    _, lake_root = first_run
    for table in tables.TABLES:
        folder = Path(lake.table_run_path(str(lake_root / lake.PROCESSED), table, "first"))
        assert written_columns(folder) == defined_columns(table), table
        assert key_violations(folder, table) == [], table


def test_a_rerun_of_the_same_inputs_gives_the_same_tables(first_run):
    result, lake_root = first_run
    again = run_pipeline(lake_root, run_id="second")
    assert again.tables == result.tables
    for table in lake.TABLES:
        files = {
            run: sorted(
                p.read_bytes()
                for p in Path(lake_root, lake.PROCESSED, table, f"run_id={run}").glob("*.parquet")
            )
            for run in ("first", "second")
        }
        assert files["first"] == files["second"], table
    assert (again.report_dir / "summary.csv").read_bytes() == (
        result.report_dir / "summary.csv"
    ).read_bytes()
    # the current views show one run: nothing is counted twice
    rows = query(lake_root, "SELECT count(*), count(DISTINCT user_id) FROM user_metrics")
    assert rows[0][0] == rows[0][1] == result.tables["user_metrics"]
    assert query(lake_root, "SELECT count(DISTINCT run_id) FROM runs_user_metrics") == [(2,)]


def split(source: Path, folder: Path, cut: int) -> tuple[Path, Path]:
    header, *lines = source.read_text().splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    day1, day2 = folder / "day1.csv", folder / "day2.csv"
    day1.write_text("\n".join([header, *lines[:cut]]) + "\n")
    day2.write_text("\n".join([header, *lines[cut:]]) + "\n")
    return day1, day2


def assert_tables_match(lake_root: Path, run_id: str, expected: dict) -> None:
    for table in ("location_performance", "user_metrics", "daily_metrics", "business_summary"):
        found = query(
            lake_root, f"SELECT * EXCLUDE (run_id) FROM runs_{table} WHERE run_id = '{run_id}'"
        )
        assert canonical(found) == canonical(expected[table]), table


def test_daily_operation_adds_rentals_to_the_history(clean_batch, tmp_path, capsys):
    """Day 1: the dimensions and a first rentals file. Day 2: only a new rentals file; the run
    sees both files with the same dimensions. Day 3: a file of rentals of unknown vehicles is
    held back, quarantined, and leaves the published tables as they were."""
    day1, day2 = split(clean_batch / "rental_transactions.csv", tmp_path / "exports", 2000)
    lake_root = tmp_path / "lake"
    dims = [str(clean_batch / f"{d}.csv") for d in DIMENSIONS]
    assert (
        main(["ingest", "--lake", str(lake_root), *dims, str(day1), "--dataset", "vehicles"]) == 1
    )
    out = capsys.readouterr().out  # --dataset applies to every file: the others are rejected
    assert "vehicles.csv: accepted" in out and "REJECTED" in out
    quarantined = sorted(p.name for p in (lake_root / "quarantine" / "vehicles").iterdir())
    assert len(quarantined) == 6 and all(
        n.endswith(("-locations.csv", "-users.csv", "-day1.csv", ".errors.json"))
        for n in quarantined
    )
    for path in dims:
        assert main(["ingest", "--lake", str(lake_root), path]) == 0
    assert (
        main(["ingest", "--lake", str(lake_root), "--dataset", "rental_transactions", str(day1)])
        == 0
    )
    assert "accepted as raw/rental_transactions/day1.csv (added" in capsys.readouterr().out

    first = run_pipeline(lake_root, run_id="day-1")
    assert_tables_match(lake_root, "day-1", reference_tables(clean_batch, [day1]))

    assert (
        main(["ingest", "--lake", str(lake_root), "--dataset", "rental_transactions", str(day2)])
        == 0
    )
    second = run_pipeline(lake_root, run_id="day-2")
    both = reference_tables(clean_batch, [day1, day2])
    assert_tables_match(lake_root, "day-2", both)
    assert canonical(query(lake_root, "SELECT * EXCLUDE (run_id) FROM business_summary")) == (
        canonical(reference_tables(clean_batch)["business_summary"])
    )
    assert [(f.key, f.sha256) for f in LocalLake(lake_root).manifest("day-2").inputs[:3]] == [
        (f.key, f.sha256) for f in LocalLake(lake_root).manifest("day-1").inputs[:3]
    ]
    assert first.tables["business_summary"] == second.tables["business_summary"] == 1

    header, *rows = day1.read_text().splitlines()
    orphans = tmp_path / "exports" / "day3.csv"
    unknown_vehicle = [  # new rental ids (z…), a vehicle id no vehicle has
        ",".join(["z" + rental[1:], user, "ffffffffff", *rest])
        for rental, user, _, *rest in (row.split(",") for row in rows[:40])
    ]
    orphans.write_text("\n".join([header, *unknown_vehicle]) + "\n")
    assert (
        main(["ingest", "--lake", str(lake_root), "--dataset", "rental_transactions", str(orphans)])
        == 0
    )
    third = run_pipeline(lake_root, run_id="day-3")
    assert [h["source_file"] for h in third.held_back] == ["raw/rental_transactions/day3.csv"]
    assert "vehicle_id_exists 40" in third.held_back[0]["reason"]
    assert_tables_match(lake_root, "day-3", both)
    inputs = query(lake_root, "SELECT source_file, status FROM run_inputs ORDER BY input_order")
    assert inputs[-1] == ("raw/rental_transactions/day3.csv", "held_back")
    report = next((lake_root / "quarantine" / "rental_transactions").glob("*-day3.csv.errors.json"))
    assert json.loads(report.read_text())["verdict"] == "held_back"
    assert "raw/rental_transactions/day3.csv" not in LocalLake(lake_root).inputs().rentals
    assert published_run(lake_root) == "day-3"


def test_a_rejected_file_is_quarantined_and_nothing_runs(batch, tmp_path, capsys):
    broken = tmp_path / "input"
    broken.mkdir()
    for name in ("vehicles", "locations", "rental_transactions"):
        (broken / f"{name}.csv").write_bytes((batch / f"{name}.csv").read_bytes())
    lines = (batch / "users.csv").read_text().splitlines()
    (broken / "users.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    lake_root = tmp_path / "lake"
    for attempt in (1, 2):  # each rejection keeps its own evidence
        assert main(["run", "--input", str(broken), "--lake", str(lake_root)]) == 1
        err = capsys.readouterr().err
        assert "ingest" in err and "users.csv" in err and "is_active" in err
        evidence = sorted((lake_root / "quarantine" / "users").iterdir())
        assert len(evidence) == 2 * attempt
    copy = next(p for p in evidence if p.suffix == ".csv")
    assert copy.read_bytes() == (broken / "users.csv").read_bytes()
    report = json.loads(Path(f"{copy}.errors.json").read_text())
    assert report["accepted"] is False
    assert not (lake_root / "processed").exists()
    assert LocalLake(lake_root).published() == []


def snapshot(lake_root: Path) -> dict:
    run_id = published_run(lake_root)
    report_dir = lake_root / "reports" / run_id
    return {
        "record": (lake_root / lake.PUBLISHED_RECORD).read_bytes(),
        "report": {p.name: p.read_bytes() for p in report_dir.iterdir()},
        "summary": query(lake_root, "SELECT * FROM business_summary"),
    }


@pytest.mark.parametrize("stage", ["spark jobs", "summary + report", "publish"])
def test_a_failure_in_any_stage_publishes_nothing(first_run, stage, monkeypatch):
    _, lake_root = first_run
    before = snapshot(lake_root)
    from carrental.local import runner, store

    def fail(*args, **kwargs):
        raise OSError(f"injected failure in {stage}")

    target = {
        "spark jobs": (runner, "run_spark_jobs"),
        "summary + report": (runner, "shape_report"),
        "publish": (store.LocalLake, "publish"),
    }[stage]
    monkeypatch.setattr(*target, fail)
    run_id = f"doomed-{stage.split()[0]}"
    with pytest.raises((StageError, OSError), match="injected failure"):
        run_pipeline(lake_root, run_id=run_id)
    assert snapshot(lake_root) == before
    status = LocalLake(lake_root).status(run_id)
    assert status["state"] == "failed" and status["failed_stage"] == stage
    monkeypatch.undo()
    LocalLake(lake_root).clean_leftovers()
    assert not (lake_root / "reports" / run_id).exists()
    assert not list(Path(lake_root, lake.PROCESSED).glob(f"*/run_id={run_id}"))


def test_one_run_per_lake(first_run, capsys):
    _, lake_root = first_run
    holder = LocalLake(lake_root)
    with holder.run_lock():
        holder.hold_for("busy-run")
        with pytest.raises(LakeBusy, match="in use by run busy-run"):
            run_pipeline(lake_root)
        assert main(["run", "--lake", str(lake_root)]) == 1
        assert "in use by run busy-run (process" in capsys.readouterr().err


KILLED_DURING_PUBLISH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from carrental.local import store
    from carrental.local.runner import run_pipeline

    def killed(self, run_id):  # the report is in place, the record not yet written
        os.kill(os.getpid(), signal.SIGKILL)

    store.LocalLake.publish = killed
    run_pipeline(Path(sys.argv[1]), run_id="killed")
    """
)


def test_a_run_killed_while_publishing_leaves_nothing_a_rerun_trips_over(first_run):
    _, lake_root = first_run
    before = snapshot(lake_root)
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "PYSPARK_SUBMIT_ARGS": "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell",
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DURING_PUBLISH, str(lake_root)],
        env=env,
        capture_output=True,
        timeout=600,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (lake_root / "reports" / "killed").is_dir()  # written before the kill
    assert snapshot(lake_root) == before  # but nothing was published
    assert LocalLake(lake_root).status("killed")["state"] == "running"
    rerun = run_pipeline(lake_root, run_id="after-kill")
    assert published_run(lake_root) == "after-kill"
    assert LocalLake(lake_root).status("killed")["state"] == "interrupted"
    assert not (lake_root / "reports" / "killed").exists()
    assert not list(Path(lake_root, lake.PROCESSED).glob("*/run_id=killed"))
    assert (rerun.report_dir / "summary.csv").read_bytes() == before["report"]["summary.csv"]


def test_a_run_for_scripts_prints_json_and_a_working_query(first_run, capsys):
    result, lake_root = first_run
    assert main(["run", "--lake", str(lake_root), "--json", "--run-id", "for-scripts"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["run_id"] == "for-scripts" and printed["status"] == "published"
    assert printed["tables"] == result.tables
    assert Path(printed["report"]).is_file() and Path(printed["report"]).is_absolute()
    from carrental.local.console import query_command

    # as printed at the end of a run (here: `python -m carrental.cli`, the way pytest runs)
    answered = subprocess.run(
        shlex.split(query_command(lake_root)), capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert answered.returncode == 0, answered.stderr
    assert "location_name" in answered.stdout and "5 rows" in answered.stdout
