"""`carrental run` end to end on generated data: real validation, real local Spark, real DuckDB.

Expected numbers come from an independent DuckDB computation over the raw CSVs, excluding the
rows that defects.json says were corrupted.
"""

from __future__ import annotations

import csv
import json
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from carrental.cli import main
from carrental.generate import generate
from carrental.local import catalog
from carrental.local.runner import StageError, run_pipeline
from carrental.report_html import REJECTS_SHOWN
from tests.local.report_page import assert_page_shows_summary, open_report

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("e2e_batch")
    generate(folder, scale=0.1, seed=5, dirty_rate=0.02)
    return folder


@pytest.fixture(scope="module")
def first_run(batch: Path, tmp_path_factory: pytest.TempPathFactory):
    lake_root = tmp_path_factory.mktemp("e2e_lake")
    return run_pipeline(batch, lake_root, run_id="first"), lake_root


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
            "report.html",
        ]
    )
    assert catalog.latest_published_run(lake_root) == "first"


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
        assert (
            main(
                [
                    "query",
                    "--lake",
                    str(lake_root),
                    "--format",
                    "json",
                    f"SELECT count(*) AS n FROM {table}",
                ]
            )
            == 0
        )
        assert json.loads(capsys.readouterr().out) == [{"n": rows}], table


def test_rerun_gives_the_same_tables_without_duplicates(batch, first_run, tmp_path):
    result, lake_root = first_run
    again = run_pipeline(batch, lake_root, run_id="second")
    assert again.tables == result.tables
    assert (again.report_dir / "summary.csv").read_bytes() == (
        result.report_dir / "summary.csv"
    ).read_bytes()
    con = catalog.open_catalog(lake_root)
    try:
        _, rows = catalog.run_query(
            con, "SELECT count(*), count(DISTINCT user_id) FROM user_metrics"
        )
    finally:
        con.close()
    assert rows[0][0] == rows[0][1] == result.tables["user_metrics"]


def test_a_rejected_file_is_quarantined_and_nothing_runs(batch, tmp_path, capsys):
    broken = tmp_path / "input"
    shutil.copytree(batch, broken)
    lines = (broken / "users.csv").read_text().splitlines()
    (broken / "users.csv").write_text("\n".join(line.rsplit(",", 1)[0] for line in lines) + "\n")
    lake_root = tmp_path / "lake"
    assert main(["run", "--input", str(broken), "--lake", str(lake_root)]) == 1
    err = capsys.readouterr().err
    assert "validate" in err and "users.csv" in err and "is_active" in err
    assert (lake_root / "quarantine" / "users" / "users.csv").read_bytes() == (
        broken / "users.csv"
    ).read_bytes()
    report = json.loads((lake_root / "quarantine" / "users" / "users.csv.errors.json").read_text())
    assert report["accepted"] is False
    assert not (lake_root / "processed").exists()
    assert not (lake_root / "catalog.duckdb").exists()


def test_a_failing_stage_leaves_the_previous_run_intact(batch, first_run, tmp_path, monkeypatch):
    _, lake_root = first_run
    published = catalog.latest_published_run(lake_root)
    report_dir = lake_root / "reports" / published
    before = {p.name: p.read_bytes() for p in report_dir.iterdir()}
    catalog_bytes = (lake_root / "catalog.duckdb").read_bytes()

    moved = tmp_path / "input"
    shutil.copytree(batch, moved)
    from carrental.local import runner

    validate = runner.validate_inputs

    def validate_then_lose_a_file(files, lake):
        verdicts = validate(files, lake)
        files["rental_transactions"].unlink()  # the input vanishes between validation and Spark
        return verdicts

    monkeypatch.setattr(runner, "validate_inputs", validate_then_lose_a_file)
    with pytest.raises(StageError) as failure:
        run_pipeline(moved, lake_root, run_id="doomed")
    assert failure.value.stage == "spark jobs"
    assert catalog.latest_published_run(lake_root) == published
    assert (lake_root / "catalog.duckdb").read_bytes() == catalog_bytes
    assert {p.name: p.read_bytes() for p in report_dir.iterdir()} == before
    con = catalog.open_catalog(lake_root)
    try:
        assert catalog.run_query(con, "SELECT DISTINCT run_id FROM business_summary")[1] == [
            (published,)
        ]
    finally:
        con.close()
