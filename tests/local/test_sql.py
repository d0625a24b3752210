"""The SQL of sql/: valid Trino (what Athena runs), and right on DuckDB (what runs locally)."""

from decimal import Decimal
from pathlib import Path

import pytest
import sqlglot

from carrental.local import catalog
from carrental.report import REPO_SQL_DIR, REPORTS, load_sql, query_params
from tests.local.conftest import write_run

SQL_FILES = sorted(p.name for p in REPO_SQL_DIR.glob("*.sql"))


@pytest.mark.parametrize("sql_file", SQL_FILES)
def test_every_sql_file_parses_as_trino(sql_file):
    statements = sqlglot.parse(load_sql(sql_file), read="athena")
    assert len(statements) == 1
    assert statements[0].find(sqlglot.exp.Placeholder) is not None, "must filter by run id"


def test_every_report_query_exists_and_every_sql_file_is_used():
    assert sorted(REPORTS.values()) == SQL_FILES


def test_query_params_bind_every_placeholder_to_the_run_id():
    assert query_params("SELECT ? , ?", "r1") == ["r1", "r1"]
    sql = "-- is it ?\nSELECT '?' AS \"why?\", ? /* or ? */ FROM t WHERE a = 'it''s?'"
    assert query_params(sql, "r1") == ["r1"]


@pytest.fixture
def staged(lake_with_run: Path):
    """The catalog of a lake whose run-a is written but not published (as the report stage
    sees it)."""
    con = catalog.open_catalog(lake_with_run)
    yield con
    con.close()


def _run(con, sql_file, run_id="run-a"):
    sql = load_sql(sql_file)
    return catalog.run_query(con, sql, query_params(sql, run_id))


def test_summary_query_on_hand_made_tables(staged):
    columns, rows = _run(staged, "summary_report.sql")
    assert columns == ["metric", "value"]
    assert rows == [
        ("total_revenue", "1750.00"),
        ("rental_count", "5"),
        ("unique_customers", "2"),
        ("unique_vehicles_rented", "4"),
        ("avg_rental_amount", "350.00"),
        ("avg_rental_hours", "14.20"),
        ("first_rental_date", "2024-01-01"),
        ("last_rental_date", "2024-01-02"),
        ("highest_revenue_location", "Jackson, Velazquez and Gonzales (Modesto): 1300.00"),
        ("most_rented_vehicle_type", "basic: 3 rentals"),
        ("top_spender", "Lisa Parker (0012345678): 1300.00"),
        ("rejected_rentals", "1"),
    ]


def test_summary_query_sees_only_its_run(staged):
    assert _run(staged, "summary_report.sql", run_id="another-run")[1] == [
        ("rejected_rentals", "0")
    ]


def test_report_queries_order_and_filter(staged):
    _, top_locations = _run(staged, "report_top_locations.sql")
    assert [r[0] for r in top_locations] == [2702, 1154]
    _, top_users = _run(staged, "report_top_users.sql")
    assert [(r[0], r[1], r[6]) for r in top_users] == [
        (1, "0012345678", Decimal("1300.00")),
        (2, "12345e6789", Decimal("450.00")),
    ]
    _, quality = _run(staged, "report_data_quality.sql")
    assert [r[1] for r in quality] == [
        "rental_id_unique",
        "rental_start_time_format",
        "rental_by_active_user",
    ]


def test_report_queries_on_a_lake_with_two_runs(tmp_path: Path):
    write_run(tmp_path, "run-a")
    write_run(tmp_path, "run-b")
    con = catalog.open_catalog(tmp_path)
    try:
        assert catalog.run_query(con, "SELECT count(*) FROM runs_daily_metrics")[1] == [(4,)]
        _, daily = _run(con, "report_daily_revenue.sql", "run-b")
        summary = dict(_run(con, "summary_report.sql", "run-b")[1])
    finally:
        con.close()
    assert len(daily) == 2  # each query reads one run of tables that hold two
    assert summary["rental_count"] == "5" and summary["rejected_rentals"] == "1"
