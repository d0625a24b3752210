"""A lake with hand-made Parquet tables (written by DuckDB), for catalog/SQL/report tests that
do not need Spark. Values are small and chosen so every expected number is worked out by hand.
Also the headless browser of the report page tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from carrental import lake, tables
from carrental.local import catalog
from tests.local.chromium import Chromium, find_chromium


def query(lake_root: Path, sql: str) -> list[tuple]:
    """The rows `sql` gives on the lake's catalog."""
    con = catalog.open_catalog(lake_root)
    try:
        return catalog.run_query(con, sql)[1]
    finally:
        con.close()


def values(table: str, rows: str) -> str:
    """A SELECT of `rows` (SQL VALUES tuples), named with `table`'s columns in their order."""
    return f"SELECT * FROM (VALUES {rows}) AS t({', '.join(tables.table(table).column_names)})"


# One SELECT per table, values only: write_run gives them the table's columns and types
# (carrental.tables), as the Spark jobs write them.
TABLE_ROWS = {
    "location_performance": values(
        "location_performance",
        """(1154, 'Bean LLC', 'Fontana', 'CA', 3, 450.00, 150.00, 100.00, 200.00, 2, 3, 30.0,
            10.0),
           (2702, 'Jackson, Velazquez and Gonzales', 'Modesto', 'CA', 2, 1300.00, 650.00,
            600.00, 700.00, 2, 1, 26.0, 13.0)""",
    ),
    "vehicle_type_performance": values(
        "vehicle_type_performance",
        """('basic', 3, 450.00, 150.00, 100.00, 200.00, 2, 45.0, 15.0),
           ('high_end', 2, 1300.00, 650.00, 600.00, 700.00, 2, 26.0, 13.0)""",
    ),
    "location_vehicle_type_performance": values(
        "location_vehicle_type_performance",
        """(1154, 'basic', 3, 450.00, 15.0),
           (2702, 'high_end', 2, 1300.00, 13.0)""",
    ),
    "user_metrics": values(
        "user_metrics",
        """('0012345678', 'Lisa', 'Parker', 'lisa.parker@gmail.com', 2, 1300.00, 650.00, 600.00,
            700.00, 26.0, 13.0, TIMESTAMP '2024-01-02 08:00:00',
            TIMESTAMP '2024-02-01 09:00:00', 1),
           ('12345e6789', 'Andrew', 'Mcclain', 'andrew.mcclain@yahoo.com', 3, 450.00, 150.00,
            100.00, 200.00, 45.0, 15.0, TIMESTAMP '2024-01-01 10:00:00',
            TIMESTAMP '2024-03-01 10:00:00', 2)""",
    ),
    "daily_metrics": values(
        "daily_metrics",
        """(DATE '2024-01-01', 1, 100.00, 100.00, 100.00, 100.00, 1, 1),
           (DATE '2024-01-02', 4, 1650.00, 412.50, 150.00, 700.00, 2, 3)""",
    ),
    "business_summary": """
        SELECT 1750.00 AS total_revenue, 5 AS rental_count, 2 AS unique_customers,
          4 AS unique_vehicles_rented, 350.00 AS avg_rental_amount, 14.2 AS avg_rental_hours,
          DATE '2024-01-01' AS first_rental_date, DATE '2024-01-02' AS last_rental_date""",
    "rental_rejects": values(
        "rental_rejects",
        """('r1', 'u1', 'v1', 'yesterday', '2024-01-01 10:00:00', '1154',
            '2702', '10.0', 'rental_start_time_format',
            'file:///batch/rental_transactions.csv', 7)""",
    ),
    "data_quality": values(
        "data_quality",
        """('rental_transactions', 'rental_start_time_format', 'reject', 1),
           ('rental_transactions', 'rental_by_active_user', 'warn', 2),
           ('rental_transactions', 'rental_id_unique', 'reject', 0)""",
    ),
    "run_inputs": values(
        "run_inputs",
        """(1, 'vehicles', 'raw/vehicles/vehicles.csv', repeat('a', 64), TIMESTAMP '2024-03-01',
            4, 0, 'used', ''),
           (2, 'rental_transactions', 'raw/rental_transactions/day1.csv', repeat('b', 64),
            TIMESTAMP '2024-03-02', 6, 1, 'used', '')""",
    ),
}


# The same run when no rental is valid, as the Spark jobs write it: every metric table empty
# (same columns and types), business_summary one row of zeros and nulls, every rental rejected.
NO_VALID_RENTAL_ROWS = {
    **{
        table: f"SELECT * FROM ({TABLE_ROWS[table]}) WHERE false"
        for table in (
            "location_performance",
            "vehicle_type_performance",
            "location_vehicle_type_performance",
            "user_metrics",
            "daily_metrics",
        )
    },
    "business_summary": """
        SELECT 0.00 AS total_revenue, 0 AS rental_count, 0 AS unique_customers,
          0 AS unique_vehicles_rented, NULL AS avg_rental_amount, NULL AS avg_rental_hours,
          NULL AS first_rental_date, NULL AS last_rental_date""",
    "rental_rejects": values(
        "rental_rejects",
        """('r1', 'u1', 'v1', 'yesterday', '2024-01-01 10:00:00', '1154', '2702', '10.0',
            'rental_start_time_format', 'file:///batch/rental_transactions.csv', 1),
           ('r2', 'nobody', 'v2', '2024-01-01 10:00:00', '2024-01-01 12:00:00', '1154', '2702',
            '20.00', 'user_id_exists', 'file:///batch/rental_transactions.csv', 2)""",
    ),
    "data_quality": values(
        "data_quality",
        """('rental_transactions', 'rental_start_time_format', 'reject', 1),
           ('rental_transactions', 'user_id_exists', 'reject', 1),
           ('rental_transactions', 'rental_id_unique', 'reject', 0)""",
    ),
    "run_inputs": TABLE_ROWS["run_inputs"],
}


def defined_rows(con: duckdb.DuckDBPyConnection, table: str, select: str) -> str:
    """`select` with exactly `table`'s columns, in its definition's order and with its types."""
    definition = tables.table(table)
    given = [d[0] for d in con.execute(f"SELECT * FROM ({select}) LIMIT 0").description]
    if sorted(given) != sorted(definition.column_names):
        raise ValueError(f"{table}: the fixture has {given}, the table {definition.column_names}")
    columns = ", ".join(
        f'CAST("{c.name}" AS {tables.duckdb_type(c.type)}) AS "{c.name}"'
        for c in definition.columns
    )
    return f"SELECT {columns} FROM ({select})"


def write_run(lake_root: Path, run_id: str, rows: dict[str, str] = TABLE_ROWS) -> None:
    con = duckdb.connect()
    for table, select in rows.items():
        folder = Path(lake.table_run_path(str(lake_root / lake.PROCESSED), table, run_id))
        folder.mkdir(parents=True, exist_ok=True)
        con.execute(
            f"COPY ({defined_rows(con, table, select)}) TO '{folder / 'part-00000.parquet'}' "
            "(FORMAT parquet)"
        )
    con.close()


@pytest.fixture
def lake_with_run(tmp_path: Path) -> Path:
    write_run(tmp_path, "run-a")
    return tmp_path


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """One headless browser for the session (skips, or fails in CI, when there is none)."""
    browser = Chromium(find_chromium())
    yield browser
    browser.close()
