"""Schema tests of written tables against their definitions (carrental.tables), as dbt's
`unique` and `not_null` tests: read back with pyarrow and DuckDB, never with the Spark code that
wrote them."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from carrental import tables

# Arrow's names of the Parquet types Spark writes -> the definitions' type names.
_ARROW_TYPE_NAMES = {
    "int32": tables.INT,
    "int64": tables.BIGINT,
    "string": tables.STRING,
    "date32[day]": tables.DATE,
    "timestamp[us]": tables.TIMESTAMP,
}


def _type_name(arrow_type) -> str:
    text = str(arrow_type)
    decimal = re.fullmatch(r"decimal128\((\d+), (\d+)\)", text)
    return tables.decimal(int(decimal[1]), int(decimal[2])) if decimal else _ARROW_TYPE_NAMES[text]


def written_columns(folder: Path) -> list[tuple[str, str]]:
    """(column, type) of the Parquet files of one table run folder, as the files hold them."""
    schemas = {
        tuple((f.name, _type_name(f.type)) for f in pq.read_schema(file))
        for file in sorted(folder.glob("*.parquet"))
    }
    if len(schemas) != 1:
        raise AssertionError(f"{folder}: expected files with one schema, found {schemas}")
    return list(schemas.pop())


def defined_columns(table: str) -> list[tuple[str, str]]:
    return [(c.name, c.type) for c in tables.table(table).columns]


def key_violations(folder: Path, table: str) -> list[str]:
    """What breaks the table's key in one run folder: null key values, repeated keys, or, for a
    table without a key, a row count other than one. Empty when the key holds."""
    key = tables.table(table).key
    files = str(folder / "*.parquet")
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{files}')")
        if not key:
            (rows,) = con.execute("SELECT count(*) FROM t").fetchone()
            return [] if rows == 1 else [f"{table}: {rows} rows, expected exactly one"]
        columns = ", ".join(f'"{k}"' for k in key)
        any_null = " OR ".join(f'"{k}" IS NULL' for k in key)
        (nulls,) = con.execute(f"SELECT count(*) FROM t WHERE {any_null}").fetchone()
        repeated = con.execute(
            f"SELECT {columns}, count(*) FROM t GROUP BY {columns} HAVING count(*) > 1 LIMIT 5"
        ).fetchall()
    problems = [f"{table}: {nulls} rows with a null in key {key}"] if nulls else []
    if repeated:
        problems.append(f"{table}: key {key} repeated (values and counts: {repeated})")
    return problems
