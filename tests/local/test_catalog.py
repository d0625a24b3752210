"""The local catalog: runs_<table> and current views derived from the publish record, and
`carrental query`."""

import json
from pathlib import Path

import pytest

from carrental import lake
from carrental.cli import main
from carrental.local.store import LakeError, LocalLake
from tests.local.conftest import TABLE_ROWS, query, write_run

# Rows per table of one hand-made run (tests/local/conftest.py), counted by hand.
ROWS = {
    "location_performance": 2,
    "vehicle_type_performance": 2,
    "location_vehicle_type_performance": 2,
    "user_metrics": 2,
    "daily_metrics": 2,
    "business_summary": 1,
    "rental_rejects": 1,
    "data_quality": 3,
    "run_inputs": 2,
}


def publish(lake_root: Path, run_id: str) -> None:
    write_run(lake_root, run_id)
    LocalLake(lake_root).publish(run_id)


def test_every_table_is_registered_with_every_run(lake_with_run: Path):
    assert set(ROWS) == set(TABLE_ROWS) == set(lake.TABLES)
    for table, rows in ROWS.items():
        assert query(lake_with_run, f"SELECT count(*) FROM runs_{table}") == [(rows,)]
        # not published yet: the current view is empty
        assert query(lake_with_run, f"SELECT count(*) FROM {table}") == [(0,)]


def test_the_current_views_show_the_published_run_only(tmp_path: Path):
    publish(tmp_path, "r1")
    write_run(tmp_path, "r2")  # written, e.g. by a run that then failed: not published
    assert query(tmp_path, "SELECT DISTINCT run_id FROM daily_metrics") == [("r1",)]
    assert query(tmp_path, "SELECT count(*) FROM daily_metrics") == [(2,)]
    by_run = "SELECT run_id, count(*) FROM runs_daily_metrics GROUP BY 1 ORDER BY 1"
    assert query(tmp_path, by_run) == [("r1", 2), ("r2", 2)]
    LocalLake(tmp_path).publish("r2")
    assert query(tmp_path, "SELECT DISTINCT run_id FROM user_metrics") == [("r2",)]
    assert query(tmp_path, "SELECT run_id, is_current FROM published_runs") == [
        ("r1", False),
        ("r2", True),
    ]


def test_the_record_is_the_only_thing_publishing_writes(tmp_path: Path):
    write_run(tmp_path, "r1")
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    LocalLake(tmp_path).publish("r1")
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    changed = {p.relative_to(tmp_path).as_posix() for p in after if before.get(p) != after[p]}
    assert changed == {lake.PUBLISHED_RECORD}
    lines = (tmp_path / lake.PUBLISHED_RECORD).read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["r1"]


def test_a_corrupt_record_is_named(tmp_path: Path):
    publish(tmp_path, "r1")
    record = tmp_path / lake.PUBLISHED_RECORD
    record.write_text(record.read_text() + "{not json\n")
    with pytest.raises(LakeError, match=r"runs\.jsonl line 2 is not a published run"):
        LocalLake(tmp_path).published()


def test_query_command_formats(tmp_path: Path, capsys):
    publish(tmp_path, "r1")
    sql = (
        "SELECT location_name, total_revenue FROM location_performance ORDER BY total_revenue DESC"
    )
    assert main(["query", "--lake", str(tmp_path), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == (
        'location_name,total_revenue\n"Jackson, Velazquez and Gonzales",1300.00\nBean LLC,450.00\n'
    )
    assert main(["query", "--lake", str(tmp_path), "--format", "json", sql + " LIMIT 1"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"location_name": "Jackson, Velazquez and Gonzales", "total_revenue": "1300.00"}
    ]
    assert main(["query", "--lake", str(tmp_path), sql]) == 0
    out = capsys.readouterr().out
    assert "Bean LLC" in out and "2 rows" in out


def test_query_speaks_athena_sql(tmp_path: Path, capsys):
    publish(tmp_path, "r1")
    # Trino-only syntax: date_format with MySQL-style codes, try_cast
    sql = (
        "SELECT date_format(rental_date, '%Y/%m/%d') AS d, try_cast('x' AS integer) AS bad "
        "FROM daily_metrics ORDER BY rental_date LIMIT 1"
    )
    assert main(["query", "--lake", str(tmp_path), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "d,bad\n2024/01/01,\n"


def test_query_errors_exit_non_zero_with_the_engine_message(tmp_path: Path, capsys):
    publish(tmp_path, "r1")
    assert main(["query", "--lake", str(tmp_path), "SELECT nope FROM user_metrics"]) == 1
    err = capsys.readouterr().err
    assert "SQL error (DuckDB binder)" in err and "nope" in err
    assert main(["query", "--lake", str(tmp_path), "SELECT FROM WHERE ("]) == 1
    assert "SQL syntax error" in capsys.readouterr().err
    assert main(["query", "--lake", str(tmp_path / "empty"), "SELECT 1"]) == 1
    assert "no tables" in capsys.readouterr().err
