"""What Athena answers for one run's report queries, and the CSV files that must come out.

moto's Athena runs no SQL: the results are queued (moto's documented query-results API) and
handed out in the order the queries start. summary.csv and top_locations.csv carry hand-written
values with the exact CSV expected (money and hours with two decimals, counts as integers,
quoting of commas); the other reports get one row typed by column name (money, hours, counts,
dates, text) from their SQL's select list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import requests
import sqlglot

from carrental.lake import TABLES
from carrental.report import REPORTS, load_sql

RUN_ID = "batch-20260105T101500-3f9a1c"

# Precision and scale as Athena reports them in ColumnInfo (awswrangler reads both).
_PRECISION_SCALE = {
    "varchar": (2147483647, 0),
    "integer": (10, 0),
    "bigint": (19, 0),
    "double": (17, 0),
    "decimal": (18, 4),
    "date": (0, 0),
}


@dataclass(frozen=True)
class ResultSet:
    columns: list[tuple[str, str]]  # (name, Athena type)
    rows: list[list[str]]
    expected_csv: str

    def as_moto_result(self) -> dict:
        header = {"Data": [{"VarCharValue": name} for name, _ in self.columns]}
        rows = [{"Data": [{"VarCharValue": value} for value in row]} for row in self.rows]
        info = [
            {
                "Name": name,
                "Label": name,
                "Type": athena_type,
                "Precision": _PRECISION_SCALE[athena_type][0],
                "Scale": _PRECISION_SCALE[athena_type][1],
                "Nullable": "UNKNOWN",
            }
            for name, athena_type in self.columns
        ]
        return {"rows": [header, *rows], "column_info": info}


SUMMARY = ResultSet(
    columns=[("metric", "varchar"), ("value", "varchar"), ("value_type", "varchar")],
    rows=[
        ["total_revenue", "1324.50", "decimal"],
        ["rental_count", "20", "integer"],
        ["unique_customers", "16", "integer"],
        ["unique_vehicles_rented", "15", "integer"],
        ["avg_rental_amount", "66.23", "decimal"],
        ["avg_rental_hours", "3.10", "decimal"],
        ["first_rental_date", "2026-01-01", "date"],
        ["last_rental_date", "2026-01-05", "date"],
        ["top_location_id", "7", "integer"],
        ["top_location_name", "Airport, Terminal 1", "text"],
        ["top_location_city", "Springfield", "text"],
        ["top_location_revenue", "1234.50", "decimal"],
        ["most_rented_vehicle_type", "basic", "text"],
        ["most_rented_vehicle_type_rentals", "12", "integer"],
        ["top_spender_user_id", "0012345678", "text"],
        ["top_spender_name", "Lisa Parker", "text"],
        ["top_spender_total_spent", "310.00", "decimal"],
        ["rejected_rentals", "2", "integer"],
    ],
    expected_csv=(
        "metric,value,value_type\n"
        "total_revenue,1324.50,decimal\n"
        "rental_count,20,integer\n"
        "unique_customers,16,integer\n"
        "unique_vehicles_rented,15,integer\n"
        "avg_rental_amount,66.23,decimal\n"
        "avg_rental_hours,3.10,decimal\n"
        "first_rental_date,2026-01-01,date\n"
        "last_rental_date,2026-01-05,date\n"
        "top_location_id,7,integer\n"
        'top_location_name,"Airport, Terminal 1",text\n'
        "top_location_city,Springfield,text\n"
        "top_location_revenue,1234.50,decimal\n"
        "most_rented_vehicle_type,basic,text\n"
        "most_rented_vehicle_type_rentals,12,integer\n"
        "top_spender_user_id,0012345678,text\n"
        "top_spender_name,Lisa Parker,text\n"
        "top_spender_total_spent,310.00,decimal\n"
        "rejected_rentals,2,integer\n"
    ),
)

TOP_LOCATIONS = ResultSet(
    columns=[
        ("location_id", "integer"),
        ("location_name", "varchar"),
        ("city", "varchar"),
        ("state", "varchar"),
        ("rental_count", "bigint"),
        ("total_revenue", "decimal"),
        ("avg_rental_amount", "decimal"),
        ("unique_vehicles", "bigint"),
        ("unique_users", "bigint"),
        ("avg_rental_hours", "double"),
    ],
    rows=[
        [
            "7",
            "Airport, Terminal 1",
            "Springfield",
            "IL",
            "17",
            "1234.5",
            "72.6176",
            "15",
            "16",
            "3.25",
        ],
        ["12", "Main St", "Shelbyville", "IL", "3", "90", "30", "3", "2", "1.5"],
    ],
    expected_csv=(
        "location_id,location_name,city,state,rental_count,total_revenue,avg_rental_amount,"
        "unique_vehicles,unique_users,avg_rental_hours\n"
        '7,"Airport, Terminal 1",Springfield,IL,17,1234.50,72.62,15,16,3.25\n'
        "12,Main St,Shelbyville,IL,3,90.00,30.00,3,2,1.50\n"
    ),
)


# rental_rejects keeps a rejected row's fields as read: text, whatever their names say.
AS_READ = {"rejected_rentals.csv"}


def _generated_cell(report: str, column: str) -> tuple[str, str, str]:
    """(Athena type, value Athena returns, text the report must hold) for a column, by its name."""
    if report in AS_READ and column != "row_number":
        return "varchar", f"{column} as read", f"{column} as read"
    if re.search(r"(amount|revenue|spent|hours)$", column):
        return "decimal", "12.345", "12.35"  # two decimals, half up
    if re.search(r"(count|violations|rank|number|rows|order)$", column) or column.startswith(
        "unique_"
    ):
        return "bigint", "7", "7"
    if column.endswith("date"):
        return "date", "2026-01-05", "2026-01-05"
    return "varchar", f"{column} of the run", f"{column} of the run"


def _generated_result(report: str) -> ResultSet:
    columns = sqlglot.parse_one(load_sql(REPORTS[report]), read="athena").named_selects
    cells = [_generated_cell(report, column) for column in columns]
    return ResultSet(
        columns=[
            (column, athena_type)
            for column, (athena_type, _, _) in zip(columns, cells, strict=True)
        ],
        rows=[[value for _, value, _ in cells]],
        expected_csv=",".join(columns) + "\n" + ",".join(text for _, _, text in cells) + "\n",
    )


def view_results() -> list[ResultSet]:
    """What Athena answers for the workflow's CREATE OR REPLACE VIEW statements: no rows."""
    return [ResultSet(columns=[], rows=[], expected_csv="") for _ in TABLES]


def report_results() -> dict[str, ResultSet]:
    """One result set per report of REPORTS, in REPORTS order."""
    hand_written = {"summary.csv": SUMMARY, "top_locations.csv": TOP_LOCATIONS}
    return {report: hand_written.get(report) or _generated_result(report) for report in REPORTS}


def placeholder_count(sql: str) -> int:
    """The ? parameters of a query, counted by a SQL parser (comments and strings excluded)."""
    return len(list(sqlglot.parse_one(sql, read="athena").find_all(sqlglot.exp.Placeholder)))


def queue_athena_results(
    result_sets: list[ResultSet], endpoint: str = "http://motoapi.amazonaws.com"
) -> None:
    """Queue results for the next queries moto's Athena starts, in this order; `endpoint` is a
    moto server's, or (default) the address mock_aws intercepts."""
    response = requests.post(
        f"{endpoint}/moto-api/static/athena/query-results",
        json={"results": [result.as_moto_result() for result in result_sets]},
        timeout=10,
    )
    response.raise_for_status()


def athena_ends_query(monkeypatch, sql_file: str, status: str) -> None:
    """Athena ends the query of `sql_file` with `status` (FAILED or CANCELLED), as a query over
    the bytes-scanned cutoff or on a missing table would; moto itself never fails one."""
    from moto.athena.models import AthenaBackend

    sql = load_sql(sql_file)
    start = AthenaBackend.start_query_execution

    def ending(backend, query, *args, **kwargs):
        execution_id = start(backend, query, *args, **kwargs)
        if query == sql:
            backend.executions[execution_id].status = status
        return execution_id

    monkeypatch.setattr(AthenaBackend, "start_query_execution", ending)
