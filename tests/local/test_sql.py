"""The SQL of carrental/sql/: valid Trino (what Athena runs), and right on DuckDB (what runs locally)."""

from decimal import Decimal
from pathlib import Path

import pytest
import sqlglot

from carrental.local import catalog
from carrental.report import REPORTS, SQL_DIR, load_sql, query_params
from tests.local.conftest import NO_VALID_RENTAL_ROWS, write_run

SQL_FILES = sorted(p.name for p in SQL_DIR.iterdir() if p.name.endswith(".sql"))


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


# summary.csv's rows, in order, with their value types: the same for every run.
SUMMARY_METRICS = [
    ("total_revenue", "decimal"),
    ("rental_count", "integer"),
    ("unique_customers", "integer"),
    ("unique_vehicles_rented", "integer"),
    ("avg_rental_amount", "decimal"),
    ("avg_rental_hours", "decimal"),
    ("first_rental_date", "date"),
    ("last_rental_date", "date"),
    ("top_location_id", "integer"),
    ("top_location_name", "text"),
    ("top_location_city", "text"),
    ("top_location_revenue", "decimal"),
    ("most_rented_vehicle_type", "text"),
    ("most_rented_vehicle_type_rentals", "integer"),
    ("top_spender_user_id", "text"),
    ("top_spender_name", "text"),
    ("top_spender_total_spent", "decimal"),
    ("rejected_rentals", "integer"),
]


def _summary(con, run_id="run-a") -> dict[str, str | None]:
    columns, rows = _run(con, "summary_report.sql", run_id)
    assert columns == ["metric", "value", "value_type"]
    assert [(metric, value_type) for metric, _, value_type in rows] == SUMMARY_METRICS
    return {metric: value for metric, value, _ in rows}


def test_summary_query_on_hand_made_tables(staged):
    assert _summary(staged) == {
        "total_revenue": "1750.00",
        "rental_count": "5",
        "unique_customers": "2",
        "unique_vehicles_rented": "4",
        "avg_rental_amount": "350.00",
        "avg_rental_hours": "14.20",
        "first_rental_date": "2024-01-01",
        "last_rental_date": "2024-01-02",
        "top_location_id": "2702",
        "top_location_name": "Jackson, Velazquez and Gonzales",
        "top_location_city": "Modesto",
        "top_location_revenue": "1300.00",
        "most_rented_vehicle_type": "basic",
        "most_rented_vehicle_type_rentals": "3",
        "top_spender_user_id": "0012345678",
        "top_spender_name": "Lisa Parker",
        "top_spender_total_spent": "1300.00",
        "rejected_rentals": "1",
    }


def test_summary_query_sees_only_its_run(staged):
    values = _summary(staged, run_id="another-run")
    assert values.pop("rejected_rentals") == "0"
    assert set(values.values()) == {None}


COUNTED_WITHOUT_RENTALS = {
    "total_revenue",
    "rental_count",
    "unique_customers",
    "unique_vehicles_rented",
    "rejected_rentals",
}


def test_summary_has_the_same_rows_when_no_rental_is_valid(tmp_path: Path):
    write_run(tmp_path, "run-z", NO_VALID_RENTAL_ROWS)
    con = catalog.open_catalog(tmp_path)
    try:
        values = _summary(con, "run-z")
    finally:
        con.close()
    counts = {m: values.pop(m) for m in list(values) if m in COUNTED_WITHOUT_RENTALS}
    assert counts == {
        "total_revenue": "0.00",
        "rental_count": "0",
        "unique_customers": "0",
        "unique_vehicles_rented": "0",
        "rejected_rentals": "2",
    }
    assert set(values.values()) == {None}  # nothing to average, no top anything


def test_rejected_rentals_query_lists_rows_with_their_reasons(staged):
    columns, rows = _run(staged, "report_rejected_rentals.sql")
    assert columns[:3] == ["source_file", "row_number", "reject_reason"]
    assert rows == [
        (
            "file:///batch/rental_transactions.csv",
            7,
            "rental_start_time_format",
            "r1",
            "u1",
            "v1",
            "yesterday",
            "2024-01-01 10:00:00",
            "1154",
            "2702",
            "10.0",
        )
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
        summary = {row[0]: row[1] for row in _run(con, "summary_report.sql", "run-b")[1]}
    finally:
        con.close()
    assert len(daily) == 2  # each query reads one run of tables that hold two
    assert summary["rental_count"] == "5" and summary["rejected_rentals"] == "1"
