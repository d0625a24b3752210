"""The local catalog: DuckDB playing Glue + Athena for `carrental run` and `carrental query`.

Built in memory each time it is opened, from the lake folder itself, with the names the Glue
catalog has (carrental.publishing): ``runs_<table>`` over every run's Parquet folders
(``processed/<table>/run_id=<id>/``, hive partitioning, so ``run_id`` is a column as in the
crawled Glue tables), ``published_runs`` over the publish record, and the current view
``<table>`` of each table, the Athena view definition transpiled by sqlglot. So the catalog can
never disagree with the publish record: it reads it at query time.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import sqlglot
import sqlglot.errors

from carrental import lake
from carrental.publishing import PUBLISHED_RUNS_TABLE, RECORD_COLUMNS, runs_table, view_sql


class CatalogError(RuntimeError):
    pass


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def to_duckdb_sql(athena_sql: str) -> str:
    """Athena (Trino) SQL -> DuckDB SQL. Raises sqlglot.errors.ParseError on bad SQL."""
    statements = sqlglot.transpile(athena_sql, read="athena", write="duckdb")
    if len(statements) != 1:
        raise CatalogError(f"expected one SQL statement, got {len(statements)}")
    return statements[0]


def table_files(lake_root: Path, table: str) -> str:
    """The glob of every run's Parquet files of `table`."""
    return str(Path(lake.processed_prefix(str(lake_root.resolve()))) / table / "*" / "*.parquet")


def open_catalog(lake_root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake's tables and views; CatalogError if the lake has no
    table yet."""
    con = duckdb.connect()
    try:
        registered = []
        for table in lake.TABLES:
            files = table_files(lake_root, table)
            if not any(Path(lake_root, lake.PROCESSED, table).glob("run_id=*/*.parquet")):
                continue
            con.execute(
                f"CREATE VIEW {runs_table(table)} AS SELECT * FROM read_parquet("
                f"{_sql_literal(files)}, hive_partitioning = true, union_by_name = true, "
                "hive_types = {'run_id': VARCHAR})"
            )
            registered.append(table)
        if not registered:
            raise CatalogError(
                f"no tables in {lake_root}: run the pipeline first "
                f"(carrental run --lake {lake_root})"
            )
        record = lake_root.resolve() / lake.PUBLISHED_RECORD
        columns = ", ".join(
            f"{name}: {_sql_literal(kind)}" for name, kind in RECORD_COLUMNS.items()
        )
        names = ", ".join(RECORD_COLUMNS)
        source = (
            f"read_json({_sql_literal(str(record))}, format = 'newline_delimited', "
            f"columns = {{{columns}}})"
            if record.exists()
            else "(SELECT "
            + ", ".join(f"NULL::{k} AS {n}" for n, k in RECORD_COLUMNS.items())
            + " WHERE false)"
        )
        con.execute(f"CREATE VIEW {PUBLISHED_RUNS_TABLE} AS SELECT {names} FROM {source}")
        for table in registered:
            con.execute(to_duckdb_sql(view_sql(table)))
    except BaseException:
        con.close()
        raise
    return con


def run_query(con: duckdb.DuckDBPyConnection, athena_sql: str, params: list | None = None):
    """Run Athena SQL on the catalog; returns (column names, rows as Python values)."""
    try:
        cursor = con.execute(to_duckdb_sql(athena_sql), params or [])
    except sqlglot.errors.ParseError as exc:
        raise CatalogError(f"SQL error (sqlglot, Athena dialect): {exc}") from None
    except duckdb.Error as exc:
        raise CatalogError(f"SQL error (DuckDB): {exc}") from None
    columns = [d[0] for d in cursor.description]
    return columns, cursor.fetchall()
