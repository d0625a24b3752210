"""The CSV report: which queries feed which file, and how every file is shaped.

Shared by `carrental run` (DuckDB) and the Report Lambda (Athena via awswrangler): the engines
return the same columns with different Python types (DuckDB floats, Athena Decimals, dates or
strings), so every column is normalised here to one text form and both paths write byte-identical
CSVs. pandas is available on both (the Lambda uses the AWS SDK for pandas layer).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from importlib import resources

import pandas as pd

# report file -> SQL file in carrental/sql/. summary.csv comes from the workflow's summary query.
REPORTS: dict[str, str] = {
    "summary.csv": "summary_report.sql",
    "top_locations.csv": "report_top_locations.sql",
    "top_users.csv": "report_top_users.sql",
    "vehicle_types.csv": "report_vehicle_types.sql",
    "daily_revenue.csv": "report_daily_revenue.sql",
    "data_quality.csv": "report_data_quality.sql",
    "rejected_rentals.csv": "report_rejected_rentals.sql",
    "inputs.csv": "report_run_inputs.sql",
}

# Columns with a fixed number of decimals; every other numeric column is an integer count.
TWO_DECIMALS = {
    "total_revenue",
    "total_spent",
    "avg_rental_amount",
    "min_rental_amount",
    "max_rental_amount",
    "total_rental_hours",
    "avg_rental_hours",
}
CENT = Decimal("0.01")

# Package data: the same files in a clone, an installed wheel and the Lambda layer.
SQL_DIR = resources.files("carrental") / "sql"


def load_sql(sql_file: str) -> str:
    return (SQL_DIR / sql_file).read_text(encoding="utf-8")


# What can hide a "?" that is not a placeholder: a string literal, a quoted name, a comment.
_NOT_CODE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.DOTALL)


def query_params(sql: str, run_id: str) -> list[str]:
    """Every ? placeholder of our report SQL is the run id (one parameter per placeholder)."""
    return [run_id] * _NOT_CODE.sub(" ", sql).count("?")


def _text(column: str, value: object) -> str:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if column in TWO_DECIMALS:
        return str(Decimal(str(value)).quantize(CENT, rounding=ROUND_HALF_UP))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def shape_report(report_name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """One text form per column, whatever engine produced `frame`."""
    if report_name not in REPORTS:
        raise KeyError(f"unknown report {report_name!r} (known: {', '.join(REPORTS)})")
    shaped = pd.DataFrame(
        {col: [_text(col, v) for v in frame[col].tolist()] for col in frame.columns},
        columns=list(frame.columns),
        dtype=object,
    )
    return shaped.reset_index(drop=True)
