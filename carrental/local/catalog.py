"""The local catalog: a DuckDB file that plays Glue + Athena for `carrental run` and `query`.

"Crawling" a run registers one view per output table, named as in DESIGN.md, over that run's
Parquet folder (`processed/<table>/run_id=<id>/`, read with hive partitioning so `run_id` is a
column, as in the Glue tables). Only the latest *published* run is visible.

Publishing is atomic: a run's catalog is built in a temporary file, the report is written from
it, and only then does it replace `catalog.duckdb` (os.replace) and get recorded in
`processed/_published.json`. A run that fails at any stage leaves the previous catalog, tables
and report untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from carrental import lake
from carrental.local import query

CATALOG_FILE = "catalog.duckdb"
PUBLISHED_FILE = "_published.json"
KEEP_PUBLISHED_RUNS = 3  # older runs' Parquet folders are deleted after a successful publish


class CatalogError(RuntimeError):
    pass


def catalog_path(lake_root: Path) -> Path:
    return lake_root / CATALOG_FILE


def published_runs(lake_root: Path) -> list[dict]:
    path = Path(lake.processed_prefix(str(lake_root))) / PUBLISHED_FILE
    if not path.exists():
        return []
    return json.loads(path.read_text())["runs"]


def latest_published_run(lake_root: Path) -> str | None:
    runs = published_runs(lake_root)
    return runs[-1]["run_id"] if runs else None


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def build_catalog(lake_root: Path, run_id: str, target: Path) -> dict[str, int]:
    """Register every table of `run_id` as a view in a new DuckDB file `target`.

    Fails (CatalogError) if a table's folder is missing or has no Parquet file: the crawl must
    not publish half a run. Returns the row count of each table.
    """
    target.unlink(missing_ok=True)
    processed = lake.processed_prefix(str(lake_root.resolve()))
    counts: dict[str, int] = {}
    con = duckdb.connect(str(target))
    try:
        for table in lake.TABLES:
            folder = Path(lake.table_run_path(processed, table, run_id))
            if not any(folder.glob("*.parquet")):
                raise CatalogError(f"table {table}: no Parquet files in {folder}")
            pattern = _sql_literal(str(folder / "*.parquet"))
            con.execute(
                f"CREATE VIEW {table} AS SELECT * FROM "
                f"read_parquet({pattern}, hive_partitioning = true, "
                "hive_types = {'run_id': VARCHAR})"
            )
            counts[table] = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
    except BaseException:
        con.close()
        target.unlink(missing_ok=True)
        raise
    con.close()
    return counts


def publish(lake_root: Path, run_id: str, staged_catalog: Path, tables: dict[str, int]) -> None:
    """Make `run_id` the visible run: swap in its catalog, record it, prune old runs."""
    os.replace(staged_catalog, catalog_path(lake_root))
    processed = Path(lake.processed_prefix(str(lake_root)))
    runs = [r for r in published_runs(lake_root) if r["run_id"] != run_id]
    runs.append({"run_id": run_id, "published_at": datetime.now(UTC).isoformat(), "tables": tables})
    manifest = processed / PUBLISHED_FILE
    staged_manifest = manifest.with_suffix(".json.tmp")
    staged_manifest.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    os.replace(staged_manifest, manifest)
    _prune(processed, keep={r["run_id"] for r in runs[-KEEP_PUBLISHED_RUNS:]})


def _prune(processed: Path, keep: set[str]) -> None:
    for table in lake.TABLES:
        for folder in (processed / table).glob("run_id=*"):
            if folder.name.removeprefix("run_id=") not in keep:
                shutil.rmtree(folder, ignore_errors=True)


def to_duckdb_sql(athena_sql: str) -> str:
    """Athena (Trino) SQL -> DuckDB SQL (one read-only statement, else a query.QueryError)."""
    return query.translate(athena_sql)


def open_catalog(lake_root: Path, catalog: Path | None = None) -> duckdb.DuckDBPyConnection:
    path = catalog or catalog_path(lake_root)
    if not path.exists():
        raise CatalogError(
            f"no catalog at {path}: run the pipeline first (carrental run --input DIR "
            f"--lake {lake_root})"
        )
    return duckdb.connect(str(path), read_only=True)


def run_query(con: duckdb.DuckDBPyConnection, athena_sql: str, params: list | None = None):
    """Run Athena SQL on the catalog; returns (column names, rows as Python values)."""
    result = query.execute(con, athena_sql, params)
    return result.columns, result.fetchall()
