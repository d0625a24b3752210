"""The local catalog: crawl, atomic publish, pruning, and `carrental query`."""

import json
from pathlib import Path

import pytest

from carrental.cli import main
from carrental.local import catalog
from tests.local.conftest import TABLE_ROWS, write_run


def test_build_catalog_registers_every_table_with_its_rows(lake_with_run: Path):
    counts = catalog.build_catalog(lake_with_run, "run-a", lake_with_run / "c.duckdb")
    assert counts == {
        "location_performance": 2,
        "vehicle_type_performance": 2,
        "location_vehicle_type_performance": 2,
        "user_metrics": 2,
        "daily_metrics": 2,
        "business_summary": 1,
        "rental_rejects": 1,
        "data_quality": 3,
    }


def test_a_missing_table_fails_the_crawl_and_leaves_no_catalog(tmp_path: Path):
    write_run(tmp_path, "run-a", {k: v for k, v in TABLE_ROWS.items() if k != "daily_metrics"})
    target = tmp_path / "c.duckdb"
    with pytest.raises(catalog.CatalogError, match="daily_metrics: no Parquet files"):
        catalog.build_catalog(tmp_path, "run-a", target)
    assert not target.exists()


def _publish(lake_root: Path, run_id: str) -> None:
    write_run(lake_root, run_id)
    staged = lake_root / f"{run_id}.staging"
    counts = catalog.build_catalog(lake_root, run_id, staged)
    catalog.publish(lake_root, run_id, staged, counts)


def test_publish_switches_the_catalog_and_prunes_old_runs(tmp_path: Path):
    for run_id in ["r1", "r2", "r3", "r4"]:
        _publish(tmp_path, run_id)
    assert catalog.latest_published_run(tmp_path) == "r4"
    assert [r["run_id"] for r in catalog.published_runs(tmp_path)] == ["r1", "r2", "r3", "r4"]
    kept = sorted(p.name for p in (tmp_path / "processed" / "user_metrics").iterdir())
    assert kept == ["run_id=r2", "run_id=r3", "run_id=r4"]
    con = catalog.open_catalog(tmp_path)
    try:
        assert catalog.run_query(con, "SELECT DISTINCT run_id FROM user_metrics")[1] == [("r4",)]
    finally:
        con.close()


def test_an_unpublished_run_is_invisible(tmp_path: Path):
    _publish(tmp_path, "r1")
    write_run(tmp_path, "r2")  # e.g. Spark finished, then a later stage failed
    con = catalog.open_catalog(tmp_path)
    try:
        assert catalog.run_query(con, "SELECT count(*) FROM daily_metrics")[1] == [(2,)]
        assert catalog.run_query(con, "SELECT DISTINCT run_id FROM daily_metrics")[1] == [("r1",)]
    finally:
        con.close()


def test_query_command_formats(tmp_path: Path, capsys):
    _publish(tmp_path, "r1")
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
    _publish(tmp_path, "r1")
    # Trino-only syntax: approx_distinct, date_format with MySQL-style codes, try_cast
    sql = (
        "SELECT date_format(rental_date, '%Y/%m/%d') AS d, try_cast('x' AS integer) AS bad "
        "FROM daily_metrics ORDER BY rental_date LIMIT 1"
    )
    assert main(["query", "--lake", str(tmp_path), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "d,bad\n2024/01/01,\n"


def test_query_errors_exit_non_zero_with_the_engine_message(tmp_path: Path, capsys):
    _publish(tmp_path, "r1")
    assert main(["query", "--lake", str(tmp_path), "SELECT nope FROM user_metrics"]) == 1
    err = capsys.readouterr().err
    assert "SQL error (DuckDB binder)" in err and "nope" in err
    assert main(["query", "--lake", str(tmp_path), "SELECT FROM WHERE ("]) == 1
    assert "SQL syntax error" in capsys.readouterr().err
    assert main(["query", "--lake", str(tmp_path / "empty"), "SELECT 1"]) == 1
    assert "no catalog" in capsys.readouterr().err
