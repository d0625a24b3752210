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

from carrental import lake, tables
from carrental.local import query
from carrental.publishing import (
    PUBLISHED_RUNS_TABLE,
    RECORD_COLUMNS,
    RecordError,
    parse_record,
    runs_table,
    view_sql,
)


class CatalogError(RuntimeError):
    pass


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def to_duckdb_sql(athena_sql: str) -> str:
    """Athena (Trino) SQL -> DuckDB SQL (one read-only statement, else a query.QueryError)."""
    return query.translate(athena_sql)


def readable_folders(lake_root: Path) -> list[Path]:
    """The folders the catalog's views read: the only ones a query may read."""
    root = lake_root.resolve()
    return [root / lake.PROCESSED, (root / lake.PUBLISHED_RECORD).parent]


def table_files(lake_root: Path, table: str) -> str:
    """The glob of every run's Parquet files of `table`."""
    return str(Path(lake.processed_prefix(str(lake_root.resolve()))) / table / "*" / "*.parquet")


def open_catalog(lake_root: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake's tables and views; CatalogError if the lake has no
    table yet."""
    con = duckdb.connect()
    try:
        registered = []
        for table in tables.TABLES:
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
        if record.exists():  # a damaged record is named here, not as a DuckDB JSON error
            try:
                parse_record(record.read_text(encoding="utf-8"), str(record))
            except (OSError, UnicodeDecodeError) as exc:
                raise CatalogError(
                    f"{record} cannot be read ({exc.__class__.__name__}: {exc}); "
                    "restore it from a backup"
                ) from None
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
        for table in registered:  # our own DDL: not a user's query, not held to query's rules
            con.execute(sqlglot.transpile(view_sql(table), read="athena", write="duckdb")[0])
    except RecordError as exc:
        con.close()
        raise CatalogError(str(exc)) from None
    except BaseException:
        con.close()
        raise
    return con


def run_query(con: duckdb.DuckDBPyConnection, athena_sql: str, params: list | None = None):
    """Run Athena SQL on the catalog; returns (column names, rows as Python values)."""
    result = query.execute(con, athena_sql, params)
    return result.columns, result.fetchall()
