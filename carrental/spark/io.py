"""Extract and load: contract-shaped reads of CSV files and of the staged layer (both with the
file and row each row came from), and per-run Parquet writes."""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

from pyspark.sql import Column, DataFrame, Observation, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental import checked, lake, tables
from carrental.contracts import Dataset, spark_schema
from carrental.staging import ROW_NUMBER, has_raw_text, raw

log = logging.getLogger(__name__)

# Where each row came from, on every dataset read: the file (its key in the lake, or its path),
# the file's place in the history (0 for a CSV read: files by path), and the row's number in
# its file (1 = the first data row after the header, as in defects.json). File order is
# (FILE_INDEX, SOURCE_FILE, ROW_NUMBER).
SOURCE_FILE = "_source_file"
FILE_INDEX = "_file_index"
FILE_ORDER = (FILE_INDEX, SOURCE_FILE, ROW_NUMBER)
# CSV reads only: rows of one file block are read in line order by one task, so (file, block
# start, id within the task) sorts rows in file order; with_row_numbers turns that into numbers.
BLOCK_START = "_block_start"
BLOCK_ROW = "_block_row"
# The whole line of a row whose field count does not match the header (else null).
MALFORMED = "_malformed_line"

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
    text = spark_schema(ds, raw=True)
    schema = st.StructType(
        [text[name] for name in header] + [st.StructField(MALFORMED, st.StringType())]
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


def staged_spark_schema(ds: Dataset) -> st.StructType:
    """The staged Parquet files' schema (carrental.staging.staged_schema) in Spark's types."""
    typed = spark_schema(ds)
    return st.StructType(
        [*typed.fields]
        + [st.StructField(raw(c.name), st.StringType()) for c in ds.columns if has_raw_text(c)]
        + [st.StructField(ROW_NUMBER, st.LongType(), nullable=False)]
    )


def read_staged(
    spark: SparkSession, root: str, files: Sequence, ds: Dataset, start: int = 0
) -> DataFrame:
    """Read staged files of one dataset (carrental.inputs.InputFile, in history order) as the
    parsed frame the rule checks take: the typed contract columns, the text of every column
    (raw(<column>)), MALFORMED (always null: the validator rejects such files), SOURCE_FILE
    (the file's key), FILE_INDEX (its place in the history: `start` + its place in `files`)
    and ROW_NUMBER.

    A staged file is named by its content, so two history entries with the same content read
    the same file twice: the join below gives each of its rows once per entry."""
    paths = sorted({lake.hadoop_literal(lake.join(root, f.staged)) for f in files})
    # staged file name -> its history entries: literals in the plan, no Spark job to ship them
    entries: dict[str, list[Column]] = {}
    for index, f in enumerate(files):
        entry = F.struct(F.lit(start + index).alias(FILE_INDEX), F.lit(f.key).alias(SOURCE_FILE))
        entries.setdefault(PurePosixPath(f.staged).name, []).append(entry)
    # (fields nullable, as those of a column read from a file: rows read back from the checked
    # layer must give the same output schema as rows checked now)
    nullable = f"array<struct<{FILE_INDEX}:int,{SOURCE_FILE}:string>>"
    by_name = F.create_map(
        *[v for name, es in entries.items() for v in (F.lit(name), F.array(*es).cast(nullable))]
    )
    rows = (
        spark.read.schema(staged_spark_schema(ds))
        .parquet(*paths)
        .withColumn("_entry", F.explode(F.element_at(by_name, F.col("_metadata.file_name"))))
    )
    return rows.select(
        *[c.name for c in ds.columns],
        *[F.col(raw(c.name) if has_raw_text(c) else c.name).alias(raw(c.name)) for c in ds.columns],
        F.lit(None).cast(st.StringType()).alias(MALFORMED),
        *[F.col(f"_entry.{c}").alias(c) for c in (FILE_INDEX, SOURCE_FILE)],
        ROW_NUMBER,
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


def with_row_numbers(rows: DataFrame) -> DataFrame:
    """Number the rows of a CSV read (ROW_NUMBER: line in its file minus the header) and add
    FILE_INDEX 0; drops BLOCK_START and BLOCK_ROW.

    Counts the rows of every file block (a tiny table: one row per block) and adds the counts of
    the blocks before each row's, so the data is never moved to one partition to be numbered.
    """
    earlier_blocks = (
        Window.partitionBy(SOURCE_FILE)
        .orderBy(BLOCK_START)
        .rowsBetween(Window.unboundedPreceding, -1)
    )
    blocks = (
        rows.groupBy(SOURCE_FILE, BLOCK_START)
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
        .withColumn(FILE_INDEX, F.lit(0))
        .drop("_rows_before", "_first_block_row", BLOCK_START, BLOCK_ROW)
    )


def malformed_rows_error(examples: Sequence, ds: Dataset) -> InputError:
    """The error for a dataset with malformed rows, naming files, rows and lines (`examples`:
    rows with SOURCE_FILE, ROW_NUMBER, MALFORMED). Such rows cannot be split into columns, so no
    rule can judge them: the upload validator rejects their files, and a job that meets one
    stops."""
    listed = "; ".join(f"{r[SOURCE_FILE]} row {r[ROW_NUMBER]}: {r[MALFORMED]!r}" for r in examples)
    return InputError(
        f"{ds.name}: rows with a different number of fields than the header's "
        f"{len(ds.header)} (first {len(examples)}): {listed}"
    )


def file_order() -> list[Column]:
    return [F.col(c) for c in FILE_ORDER]


def write_table(frame: DataFrame, output: str, table: str, run_id: str) -> int:
    """Write one table of one run as Parquet to ``<output>/<table>/run_id=<run_id>/``.

    Writes the columns of the table's definition (carrental.tables), in its order and with its
    types: a frame that lacks one, has another or gives one another type is a bug in the job,
    reported before anything is written (never cast: a cast would hide it, or lose values).
    Overwrites that folder only: re-running a run id replaces its rows, other runs are never
    touched. Returns the number of rows written (counted while writing, not by another job).
    A table that grows with the rental history is rebalanced by its key first: adaptive execution
    (session.SHUFFLE_SETTINGS) then writes files of about the advisory size, whatever the
    partitioning of the plan that produced it; any other table is one file. Rows are sorted by
    the table's key within each file: the order in which shuffled rows arrive varies from run to
    run, and the same inputs must give byte-identical files.
    """
    definition = tables.table(table)
    path = lake.table_run_path(output, table, run_id)
    defined, keys = _defined_columns(frame, definition), definition.key
    balanced = (
        defined.hint("rebalance", *keys) if definition.grows_with_history else defined.coalesce(1)
    )
    if keys:
        balanced = balanced.sortWithinPartitions(*keys)
    written = Observation()
    # A write path is not a glob (only reads expand patterns): no escaping here.
    counted = balanced.observe(written, F.count(F.lit(1)).alias("rows"))
    counted.write.mode("overwrite").parquet(path)
    rows = written.get["rows"]
    log.info("wrote %s: %d rows", path, rows)
    return rows


def _defined_columns(frame: DataFrame, definition: tables.Table) -> DataFrame:
    """`frame` with the definition's columns in its order; ValueError naming every column that
    is missing, unexpected or of another type."""
    found = {f.name: f.dataType for f in frame.schema.fields}
    missing = [c.name for c in definition.columns if c.name not in found]
    unexpected = [name for name in found if name not in definition.column_names]
    mistyped = [
        f"{c.name} is {found[c.name].simpleString()}, defined as {c.type}"
        for c in definition.columns
        if c.name in found and found[c.name] != tables.spark_type(c.type)
    ]
    if missing or unexpected or mistyped:
        problems = [
            *([f"missing columns {missing}"] if missing else []),
            *([f"unexpected columns {unexpected}"] if unexpected else []),
            *mistyped,
        ]
        raise ValueError(
            f"{definition.name}: the frame does not match the table's definition "
            f"(carrental/tables.py): {'; '.join(problems)}"
        )
    return frame.select(*definition.column_names)


class CheckedLayer:
    """The checked layer of a lake (carrental.checked), through the session's Hadoop file
    system: local folders here, EMRFS on EMR Serverless."""

    def __init__(self, spark: SparkSession, root: str) -> None:
        self.spark = spark
        self.root = root

    def _fs_path(self, uri: str):
        jvm = self.spark._jvm
        path = jvm.org.apache.hadoop.fs.Path(uri)
        return path.getFileSystem(self.spark._jsc.hadoopConfiguration()), path

    def markers(self, dataset: str) -> dict[str, checked.Marker]:
        """The complete entries of a dataset, by entry name."""
        fs, folder = self._fs_path(
            lake.join(checked.dataset_prefix(self.root, dataset), checked.COMPLETE)
        )
        if not fs.exists(folder):
            return {}
        found: dict[str, checked.Marker] = {}
        names = sorted(status.getPath().getName() for status in fs.listStatus(folder))
        for name in names:
            marker = checked.Marker.parse(name)
            if marker is not None:
                found.setdefault(marker.entry, marker)
        return found

    def read(self, dataset: str, markers: Sequence[checked.Marker]) -> DataFrame:
        """The rows of complete entries (every entry of a dataset has the same columns)."""
        paths = [lake.hadoop_literal(checked.data_path(self.root, dataset, m)) for m in markers]
        return self.spark.read.parquet(*paths)

    def write(
        self, dataset: str, rows: DataFrame, statuses: Mapping[str, str], run_id: str
    ) -> None:
        """Write `rows` (with an ENTRY_PARTITION column naming each row's entry) as new entries,
        then one marker per entry of `statuses` (entry -> status): an entry is complete only
        once all its data is written."""
        write = checked.new_write(run_id)
        target = lake.join(checked.dataset_prefix(self.root, dataset), checked.ROWS, write)
        # a name no write used before (a write path is not a glob: no escaping)
        rows.write.partitionBy(checked.ENTRY_PARTITION).parquet(target)
        for entry, status in statuses.items():
            marker = checked.Marker(entry, status, write)
            fs, path = self._fs_path(checked.marker_path(self.root, dataset, marker))
            fs.create(path, False).close()
        log.info("checked %s: %d entries in %s", dataset, len(statuses), target)
