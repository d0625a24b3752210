"""Extract and load: contract-shaped CSV reads with file row numbers, and per-run Parquet writes."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental import lake
from carrental.contracts import Dataset, spark_schema

log = logging.getLogger(__name__)

# Where each row came from, added to every dataset read. Rows of one file block are read in line
# order by one task, so (file, block start, id within the task) sorts rows in file order.
SOURCE_FILE = "_source_file"
BLOCK_START = "_block_start"
BLOCK_ROW = "_block_row"
FILE_ORDER = (SOURCE_FILE, BLOCK_START, BLOCK_ROW)
# The whole line of a row whose field count does not match the header (else null).
MALFORMED = "_malformed_line"
ROW_NUMBER = "row_number"  # 1 = the first data row after the header, as in defects.json

# RFC 4180: a quote inside a quoted field is doubled. Spark's default escape character is a
# backslash, which would corrupt values such as "\HERPA, CHHIRING" (a real registration name).
# One line per row, so that big files are split into blocks read in parallel.
CSV_OPTIONS = {
    "header": "true",
    "quote": '"',
    "escape": '"',
    "encoding": "UTF-8",
    "multiLine": "false",
    "inferSchema": "false",
}

# Malformed rows listed in the error message, at most.
ERROR_EXAMPLES = 10


class InputError(ValueError):
    """An input file that the upload validator should have quarantined."""


def read_dataset(spark: SparkSession, path: str, ds: Dataset) -> DataFrame:
    """Read a dataset's CSV file (or folder of CSV files) as raw text, in contract column order.

    Every column is a string (``spark_schema(ds, raw=True)``; ids stay ids, bad values stay
    verbatim for rental_rejects); an empty field reads as null. Columns are matched by header
    name, so a file may order them differently; every file of a folder must use the same order.
    Adds SOURCE_FILE / BLOCK_START / BLOCK_ROW (file order) and MALFORMED. `path` means exactly
    that file or folder: glob characters in it are escaped (lake.hadoop_literal).
    """
    unreadable = lake.hadoop_unreadable(path)
    if unreadable:
        raise InputError(f"{ds.name}: {unreadable}")
    header = _header(spark, path, ds)
    raw = spark_schema(ds, raw=True)
    schema = st.StructType(
        [raw[name] for name in header] + [st.StructField(MALFORMED, st.StringType())]
    )
    frame = (
        spark.read.options(**CSV_OPTIONS)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", MALFORMED)
        # check the header of every file against the schema instead of trusting column positions
        .option("enforceSchema", "false")
        .schema(schema)
        .csv(lake.hadoop_literal(path))
    )
    return frame.select(
        *ds.header,
        MALFORMED,
        F.col("_metadata.file_path").alias(SOURCE_FILE),
        F.col("_metadata.file_block_start").alias(BLOCK_START),
        # must sit directly on the scan: it numbers rows in the order each task reads them
        F.monotonically_increasing_id().alias(BLOCK_ROW),
    )


def _local_header(path: str) -> list[str] | None:
    """The header of a local file (or of the first file of a local folder), read directly:
    asking Spark costs a job and one to two seconds of planning per dataset. None for remote
    URIs, which Spark reads."""
    if "://" in path and not path.startswith("file://"):
        return None
    location = Path(path.removeprefix("file://"))
    if location.is_dir():
        files = sorted(
            f for f in location.iterdir() if f.is_file() and not f.name.startswith((".", "_"))
        )
        if not files:
            return None
        location = files[0]
    with open(location, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), [])


def _header(spark: SparkSession, path: str, ds: Dataset) -> list[str]:
    found = _local_header(path)
    if found is None:
        # Without a schema and with inferSchema off, Spark reads just the first line for the names.
        found = spark.read.options(**CSV_OPTIONS).csv(lake.hadoop_literal(path)).columns
    missing = [c for c in ds.header if c not in found]
    unexpected = [c for c in found if c not in ds.header]
    if missing or unexpected:
        raise InputError(
            f"{path}: the header of {ds.name} does not match its contract: "
            f"missing columns {missing}, unexpected columns {unexpected} "
            f"(expected {', '.join(ds.header)})"
        )
    return found


def with_row_numbers(rows: DataFrame, all_rows: DataFrame) -> DataFrame:
    """Add ROW_NUMBER (line in its file minus the header) to `rows`, a subset of `all_rows`.

    Counts the rows of every file block of `all_rows` (a tiny table: one row per block), so the
    data is never moved to one partition to be numbered.
    """
    earlier_blocks = (
        Window.partitionBy(SOURCE_FILE)
        .orderBy(BLOCK_START)
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    blocks = (
        all_rows.groupBy(SOURCE_FILE, BLOCK_START)
        .agg(F.count(F.lit(1)).alias("_block_rows"), F.min(BLOCK_ROW).alias("_first_block_row"))
        .withColumn("_rows_before", F.coalesce(F.sum("_block_rows").over(earlier_blocks), F.lit(0)))
        .drop("_block_rows")
    )
    return (
        rows.join(F.broadcast(blocks), [SOURCE_FILE, BLOCK_START])
        .withColumn(
            ROW_NUMBER,
            F.col("_rows_before") + F.col(BLOCK_ROW) - F.col("_first_block_row") + F.lit(1),
        )
        .drop("_rows_before", "_first_block_row")
    )


def malformed_row_count() -> Column:
    """Aggregate: how many rows have a different number of fields than the header."""
    return F.count_if(F.col(MALFORMED).isNotNull())


def malformed_rows_error(rows: DataFrame, ds: Dataset) -> InputError:
    """The error for a dataset with malformed rows, naming files, rows and lines. Such rows
    cannot be split into columns, so no rule can judge them: the upload validator rejects
    their files, and a job that meets one stops."""
    examples = (
        with_row_numbers(rows.filter(F.col(MALFORMED).isNotNull()), rows)
        .select(SOURCE_FILE, ROW_NUMBER, MALFORMED)
        .orderBy(SOURCE_FILE, ROW_NUMBER)
        .limit(ERROR_EXAMPLES)
        .collect()
    )
    listed = "; ".join(f"{r[SOURCE_FILE]} row {r[ROW_NUMBER]}: {r[MALFORMED]!r}" for r in examples)
    return InputError(
        f"{ds.name}: rows with a different number of fields than the header's "
        f"{len(ds.header)} (first {len(examples)}): {listed}"
    )


def file_order() -> list[Column]:
    return [F.col(c) for c in FILE_ORDER]


def write_table(frame: DataFrame, output: str, table: str, run_id: str) -> int:
    """Write one table of one run as Parquet to ``<output>/<table>/run_id=<run_id>/``.

    Overwrites that folder only: re-running a run id replaces its rows, other runs are never
    touched. Returns the number of rows written (counted while writing, not by another job).
    The rows are rebalanced first: adaptive execution (session.SHUFFLE_SETTINGS) then writes
    files of about the advisory size, one file for a small table, whatever the partitioning of
    the plan that produced it.
    """
    if table not in lake.TABLES:
        raise ValueError(f"unknown table {table!r} (known: {', '.join(lake.TABLES)})")
    path = lake.table_run_path(output, table, run_id)
    written = Observation()
    counted = frame.hint("rebalance").observe(written, F.count(F.lit(1)).alias("rows"))
    counted.write.mode("overwrite").parquet(path)
    rows = written.get["rows"]
    log.info("wrote %s: %d rows", path, rows)
    return rows
