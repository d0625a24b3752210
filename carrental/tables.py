"""Output tables: the one definition of every table the Spark jobs write.

What the input contracts (carrental.contracts) are for the four CSVs, these are for the jobs'
outputs: each table's name, writing job, grain, key and columns with their types and meanings.
The rest derives from them: lake.TABLES and lake.TABLE_KEYS, the column order and types that
spark.io.write_table enforces, the local catalog's tables, the report's number formats, the test
fixtures, and docs/tables.md (``carrental tables``).

Standard library only at module level: imported on Lambda and EMR Serverless (pyspark is
imported inside the one function that needs it).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from carrental.contracts import (
    LOCATIONS,
    MONEY_PRECISION,
    MONEY_SCALE,
    RENTAL_TRANSACTIONS,
    USERS,
    Dataset,
)

# The Spark jobs, in the order a local run runs them: one EMR Serverless job run each on AWS
# (emr_jobs/<job>.py, one branch of the workflow's Parallel state); carrental.spark.jobs.JOBS
# builds each one's tables.
VEHICLE_LOCATION_PERFORMANCE = "vehicle_location_performance"
USER_TRANSACTION_ANALYSIS = "user_transaction_analysis"
JOBS = (VEHICLE_LOCATION_PERFORMANCE, USER_TRANSACTION_ANALYSIS)

# Column types, spelled as Spark SQL names them (and as the Parquet files read back in Spark).
INT = "INT"
BIGINT = "BIGINT"
STRING = "STRING"
DATE = "DATE"
TIMESTAMP = "TIMESTAMP_NTZ"


def decimal(precision: int, scale: int) -> str:
    return f"DECIMAL({precision},{scale})"


# An amount as the contracts read it; Spark's exact SUM of DECIMAL(p,s) is DECIMAL(p+10,s) and
# its AVG is DECIMAL(p+4,s+4) (resultType in Spark's expressions/aggregate/Sum.scala and
# Average.scala; tests/spark/test_jobs.py checks the written types); hours keep six decimals.
AMOUNT = decimal(MONEY_PRECISION, MONEY_SCALE)
AMOUNT_SUM = decimal(MONEY_PRECISION + 10, MONEY_SCALE)
AMOUNT_AVERAGE = decimal(MONEY_PRECISION + 4, MONEY_SCALE + 4)
HOURS = decimal(22, 6)

_DECIMAL = re.compile(r"DECIMAL\((\d+),(\d+)\)")


@dataclass(frozen=True)
class OutputColumn:
    name: str
    type: str
    description: str

    @property
    def is_decimal(self) -> bool:
        return _DECIMAL.fullmatch(self.type) is not None


@dataclass(frozen=True)
class Table:
    """One output table. `key`: the columns that identify a row (none: the table has one row);
    tables are written sorted by them, so that the same inputs give byte-identical files.
    `grain` is the short form of `description` for the table list; `notes` follow the columns.
    `grows_with_history`: the table has rows per rental, so it is written in files of about the
    advisory size (rebalanced by its key); the others have a row per location, vehicle type,
    date, rule or input file, or (user_metrics) are ranked in one partition anyway: one file
    each, without the shuffle of a rebalance."""

    name: str
    job: str
    grain: str
    key: tuple[str, ...]
    description: str
    columns: tuple[OutputColumn, ...]
    notes: str = ""
    grows_with_history: bool = False

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"{self.name}: a column is listed twice: {names}")
        if self.job not in JOBS:
            raise ValueError(f"{self.name}: unknown job {self.job!r} (jobs: {', '.join(JOBS)})")
        unknown = [k for k in self.key if k not in names]
        if unknown:
            raise ValueError(f"{self.name}: key columns {unknown} are not columns of the table")
        for c in self.columns:
            if c.type not in {INT, BIGINT, STRING, DATE, TIMESTAMP} and not c.is_decimal:
                raise ValueError(f"{self.name}.{c.name}: unknown type {c.type!r}")

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


C = OutputColumn


def _rental_amounts(rentals: str, total: str = "total_revenue") -> tuple[OutputColumn, ...]:
    """The count and amount statistics of the metric tables: `rentals` says which are counted."""
    return (
        OutputColumn("rental_count", BIGINT, rentals),
        OutputColumn(total, AMOUNT_SUM, "sum of their `total_amount`"),
        OutputColumn("avg_rental_amount", AMOUNT_AVERAGE, f"{total} / rental_count"),
        OutputColumn("min_rental_amount", AMOUNT, "smallest `total_amount`"),
        OutputColumn("max_rental_amount", AMOUNT, "largest `total_amount`"),
    )


def _copied_from(dataset: Dataset, *names: str) -> tuple[OutputColumn, ...]:
    """Text columns a metric table takes from the dimension row of its key (each one a column of
    `dataset`: an unknown name raises)."""
    return tuple(
        OutputColumn(dataset.column(name).name, STRING, f"from {dataset.name}") for name in names
    )


def _as_read(dataset: Dataset) -> tuple[OutputColumn, ...]:
    """Every field of a row of `dataset`, in its header's order, as text."""
    first, *others = dataset.header
    return (
        OutputColumn(first, STRING, "the field as read (an empty field is null)"),
        *(OutputColumn(name, STRING, "as read") for name in others),
    )


_TOTAL_HOURS = C("total_rental_hours", HOURS, "sum of durations, hours")
_AVG_HOURS = C("avg_rental_hours", HOURS, "average duration, hours")

OUTPUT_TABLES: tuple[Table, ...] = (
    Table(
        name="location_performance",
        job=VEHICLE_LOCATION_PERFORMANCE,
        grain="pickup location with ≥ 1 valid rental",
        key=("location_id",),
        description="One row per pickup location with at least one valid rental.",
        columns=(
            C("location_id", INT, "`locations.location_id` of the pickup location"),
            *_copied_from(LOCATIONS, "location_name", "city", "state"),
            *_rental_amounts("valid rentals picked up here"),
            C("unique_vehicles", BIGINT, "distinct vehicles rented here"),
            C("unique_users", BIGINT, "distinct users who rented here"),
            _TOTAL_HOURS,
            _AVG_HOURS,
        ),
    ),
    Table(
        name="vehicle_type_performance",
        job=VEHICLE_LOCATION_PERFORMANCE,
        grain="vehicle_type with ≥ 1 valid rental",
        key=("vehicle_type",),
        description="One row per `vehicle_type` (basic, premium, high_end) with at least one "
        "valid rental.",
        columns=(
            C("vehicle_type", STRING, "the rented vehicle's type"),
            *_rental_amounts("valid rentals of vehicles of this type"),
            C("unique_vehicles", BIGINT, "distinct vehicles of this type rented"),
            _TOTAL_HOURS,
            _AVG_HOURS,
        ),
    ),
    Table(
        name="location_vehicle_type_performance",
        job=VEHICLE_LOCATION_PERFORMANCE,
        grain="(pickup location, vehicle_type) with ≥ 1 valid rental",
        key=("location_id", "vehicle_type"),
        description="One row per (pickup location, vehicle_type) with at least one valid rental.",
        columns=(
            C("location_id", INT, "pickup location"),
            C("vehicle_type", STRING, "the rented vehicle's type"),
            C("rental_count", BIGINT, "valid rentals"),
            C("total_revenue", AMOUNT_SUM, "sum of their `total_amount`"),
            _AVG_HOURS,
        ),
    ),
    Table(
        name="user_metrics",
        job=USER_TRANSACTION_ANALYSIS,
        grain="user with ≥ 1 valid rental",
        key=("user_id",),
        description="One row per user with at least one valid rental.",
        columns=(
            C("user_id", STRING, "`users.user_id` (a 10-character hex string, never a number)"),
            *_copied_from(USERS, "first_name", "last_name", "email"),
            *_rental_amounts("the user's valid rentals", "total_spent"),
            _TOTAL_HOURS,
            _AVG_HOURS,
            C("first_rental_start", TIMESTAMP, "earliest `rental_start_time`"),
            C("last_rental_start", TIMESTAMP, "latest `rental_start_time`"),
            C(
                "spend_rank",
                INT,
                "1 = highest total_spent; ties broken by user_id (ascending), so ranks are unique",
            ),
        ),
    ),
    Table(
        name="daily_metrics",
        job=USER_TRANSACTION_ANALYSIS,
        grain="rental start date with ≥ 1 valid rental",
        key=("rental_date",),
        description="One row per calendar date on which at least one valid rental started.",
        columns=(
            C("rental_date", DATE, "date of `rental_start_time`"),
            *_rental_amounts("valid rentals that started that day"),
            C("unique_users", BIGINT, "distinct users"),
            C("unique_vehicles", BIGINT, "distinct vehicles"),
        ),
    ),
    Table(
        name="business_summary",
        job=USER_TRANSACTION_ANALYSIS,
        grain="exactly one row per run",
        key=(),
        description="Exactly one row per run (with no valid rentals: zero counts and revenue, "
        "null averages and dates).",
        columns=(
            C("total_revenue", AMOUNT_SUM, "sum of `total_amount` of all valid rentals"),
            C("rental_count", BIGINT, "valid rentals"),
            C("unique_customers", BIGINT, "distinct users with a valid rental"),
            C("unique_vehicles_rented", BIGINT, "distinct vehicles with a valid rental"),
            C("avg_rental_amount", AMOUNT_AVERAGE, "total_revenue / rental_count"),
            _AVG_HOURS,
            C("first_rental_date", DATE, "earliest rental start date"),
            C("last_rental_date", DATE, "latest rental start date"),
        ),
    ),
    Table(
        name="rental_rejects",
        job=USER_TRANSACTION_ANALYSIS,
        grain="rental row that breaks a reject rule",
        key=("source_file", "row_number"),
        grows_with_history=True,
        description="One row per rental row that breaks at least one reject rule. Nothing is "
        "lost: the row's fields are kept as read, and where it came from.",
        columns=(
            *_as_read(RENTAL_TRANSACTIONS),
            C(
                "reject_reason",
                STRING,
                "every reject rule the row breaks, contract order, joined by `;` (e.g. "
                "`rental_start_time_format` or `pickup_location_format;user_id_exists`)",
            ),
            C(
                "source_file",
                STRING,
                "the file the row came from: its key in the lake "
                "(`raw/rental_transactions/<name>`) for a pipeline run, its path for a job run "
                "on CSV files",
            ),
            C(
                "row_number",
                BIGINT,
                "the row in that file: 1 = first data row after the header (line = row_number "
                "+ 1), as in `defects.json` and the upload validator's reports",
            ),
        ),
    ),
    Table(
        name="data_quality",
        job=USER_TRANSACTION_ANALYSIS,
        grain="(dataset, rule) of the contracts, every rule, zeros included",
        key=("dataset", "rule"),
        description="One row per rule of every dataset contract (vehicles, locations, users, "
        "rental_transactions), with zero counts, so the table is complete for every run.",
        columns=(
            C("dataset", STRING, "contract dataset name"),
            C("rule", STRING, "contract rule name"),
            C(
                "severity",
                STRING,
                "`reject` (row kept out of the metrics) or `warn` (row used, violation counted)",
            ),
            C(
                "violations",
                BIGINT,
                "rows breaking the rule (a row breaking several rules counts for each; warn "
                "rules count only rows that break no reject rule)",
            ),
        ),
        notes="A file whose rows cannot be split into the header's columns (a wrong number of "
        "fields) is not judged row by row: the job stops with an error that names the file, "
        "the rows and their text (the upload validator quarantines such files before they "
        "reach Spark).",
    ),
    Table(
        name="run_inputs",
        job=USER_TRANSACTION_ANALYSIS,
        grain="input file of the run",
        key=("input_order",),
        description="One row per input file of the run, in manifest order: the three "
        "snapshots, then the rental history in the order its files were first accepted. This "
        "is the run's manifest as a table, with what the run found in each file.",
        columns=(
            C("input_order", INT, "1, 2, …: the file's place in the manifest"),
            C("dataset", STRING, "contract dataset name"),
            C(
                "source_file",
                STRING,
                "the file's key in the lake (`raw/<dataset>/<name>`), or its path for a job run "
                "on CSV files",
            ),
            C(
                "content_sha256",
                STRING,
                "SHA-256 of the file's bytes as validated (null for a job run on CSV files)",
            ),
            C(
                "accepted_at",
                TIMESTAMP,
                "when this version of the file was accepted, UTC (null for a job run on CSV files)",
            ),
            C("rows", BIGINT, "data rows in the file"),
            C(
                "rejected_rows",
                BIGINT,
                "rows breaking a reject rule at run time (foreign keys and rental ids repeated "
                "from an earlier file included)",
            ),
            C(
                "status",
                STRING,
                "`used`, or `held_back`: more than the reject threshold of its rows break a "
                "reject rule, so the run left the whole file out (only rental files)",
            ),
            C(
                "reason",
                STRING,
                "why a file was held back: its share of rejected rows and, per rule, the count "
                "and the first rows; empty when used",
            ),
        ),
        notes="A held-back file counts nowhere else in the run: its rows are in neither the "
        "metrics, nor `rental_rejects`, nor `data_quality`. The pipeline quarantines it with "
        "this reason as its error report and takes it out of the inputs; a corrected file "
        "uploaded under the same name enters the next run.",
    ),
)

del C

TABLES: dict[str, Table] = {t.name: t for t in OUTPUT_TABLES}
# The metric tables: computed from the valid rentals and the dimensions alone (no rule flags,
# rejects or inputs), as the benchmarks' engine floor computes them too.
KPI_TABLES: tuple[str, ...] = (
    "location_performance",
    "vehicle_type_performance",
    "location_vehicle_type_performance",
    "user_metrics",
    "daily_metrics",
    "business_summary",
)

# The columns of any table that hold a DECIMAL, by name: the report writes them with two
# decimals (its queries keep the tables' column names).
DECIMAL_COLUMNS: frozenset[str] = frozenset(
    c.name for t in OUTPUT_TABLES for c in t.columns if c.is_decimal
)


def table(name: str) -> Table:
    try:
        return TABLES[name]
    except KeyError:
        raise KeyError(f"unknown table {name!r} (known: {', '.join(TABLES)})") from None


def spark_type(type_name: str):
    """The pyspark DataType of one of the column types above."""
    from pyspark.sql import types as st

    decimal_type = _DECIMAL.fullmatch(type_name)
    if decimal_type:
        return st.DecimalType(int(decimal_type[1]), int(decimal_type[2]))
    return {
        INT: st.IntegerType(),
        BIGINT: st.LongType(),
        STRING: st.StringType(),
        DATE: st.DateType(),
        TIMESTAMP: st.TimestampNTZType(),
    }[type_name]


def duckdb_type(type_name: str) -> str:
    """The DuckDB type that reads and writes the same Parquet type as Spark's `type_name`."""
    return {INT: "INTEGER", STRING: "VARCHAR", TIMESTAMP: "TIMESTAMP"}.get(type_name, type_name)


_INTRO = """\
# Output tables

Generated by `carrental tables` from `carrental/tables.py`; do not edit.

The data products of the two Spark jobs (`emr_jobs/`, code in `carrental/spark/`). Each table is
Parquet under `<processed>/<table>/run_id=<run id>/`, one folder per run: `run_id` is the
partition (Glue, Athena and the local DuckDB catalog read it from the folder name), not a column
in the files. Re-running a run id replaces that run's folder; a failed run never touches another
run's folder. The jobs write exactly the columns and types below, in this order; the tests check
what they write against them and check that each table's key is unique and never null
(`tests/spark/test_jobs.py`).

In a catalog (Glue + Athena, or the local DuckDB catalog of `carrental query`) every table
exists twice: `runs_<table>` holds every run's rows (filter on `run_id` to compare runs) and
`<table>` is a view of the *published* run's rows only, so `SELECT * FROM location_performance`
never double-counts. `published_runs` lists the published runs (`run_id`, `published_at`,
`manifest`, `is_current`). See docs/architecture.md, "Publishing".
"""

_WHICH_ROWS_COUNT = """\
## Which rows count

Rules and their severities come from the dataset contracts (`carrental contracts`).

- **Valid rental**: breaks no *reject* rule of `rental_transactions`, so its vehicle, user and
  pickup (and dropoff) location resolve. Every metric below counts valid rentals only. Rows that
  break *warn* rules (`pricing_matches_rate`, `rental_not_before_user_creation`,
  `rental_by_active_user`) are valid: they count in the metrics and in `data_quality`.
- **Dimension rows** (vehicles, locations, users) that break a reject rule of their own dataset
  (an empty or duplicate key, an unknown `vehicle_type`, a `location_id` that is not an integer)
  are dropped from the dimension and counted in `data_quality` under their dataset; rentals that
  point at them break `<key>_exists` and are rejected (orphans are never silently dropped).
- **Which rentals**: a pipeline run reads the rental *history* (every accepted rentals file; a
  file uploaded under an earlier one's name replaces it) with the *current* vehicles, locations
  and users (the latest accepted file of each), as its manifest lists them (`run_inputs`).
- **Uniqueness**: the first row with a key, in file order, is kept; every later row with that key
  breaks `<key>_unique`. File order: for the rental history, the order in which the files' names
  were first accepted (a correction keeps its file's place), rows by line; for a job run on CSV
  files, files by path. So a rental exported again in a later file is counted once, and the
  repeat shows in `rental_rejects` with the file it came from.
- **Held-back files**: a rental file with more than the reject threshold (5 %) of its rows
  breaking reject rules at run time (foreign keys and repeated ids included: what the upload
  validator cannot see) is left out of the run whole (`run_inputs`).
- **Empty fields** are null and break only `<column>_not_null` (if the column is required): no
  other rule judges an empty value.
- **Formats** are strict and the same as the upload validator's: dates and times match the
  contract pattern exactly and are real instants; integers are optionally negative digits that
  fit 32 bits; money has at most 10 integer digits and 2 decimals (never rounded); flags are 0/1.
- **Warn rules** are evaluated only on rows that break no reject rule. `rental_by_active_user`
  counts rentals whose user's `is_active` is not 1 (0, or not a valid flag).
  `pricing_matches_rate` counts rentals whose duration is not a whole number of hours or whose
  `total_amount` differs from hours × the hourly rate of the vehicle's type.
"""  # noqa: RUF001 (the documentation's multiplication sign)

_TYPES_AND_ROUNDING = f"""\
## Types and rounding

- Money is `DECIMAL` end to end: amounts `{AMOUNT}` (as in the contracts), sums
  `{AMOUNT_SUM}` (exact), averages `{AMOUNT_AVERAGE}` (rounded half up).
- Hours are exact: the integer seconds between start and end are summed and divided by 3600 once,
  then rounded half up to `{HOURS}`. An average is total seconds / (3600 × rentals).
- Timestamps are wall-clock time as written in the CSV (`{TIMESTAMP}`, no time zone; the Spark
  session time zone is UTC). Dates are the calendar date of `rental_start_time`.
- Counts are `{BIGINT}` (exact: `COUNT(DISTINCT …)`, never approximate).
"""  # noqa: RUF001 (the documentation's multiplication sign)


def _key_text(t: Table) -> str:
    if not t.key:
        return "Key: none (the table has one row)."
    return "Key: " + ", ".join(f"`{k}`" for k in t.key) + " (unique, never null)."


def _paragraph(text: str) -> str:
    return textwrap.fill(text, width=96, break_long_words=False, break_on_hyphens=False)


def to_markdown() -> str:
    """docs/tables.md, generated from the definitions above."""
    lines = [_INTRO, "| table | written by | key | grain |", "| --- | --- | --- | --- |"]
    for t in OUTPUT_TABLES:
        key = ", ".join(t.key) or "—"
        lines.append(f"| [`{t.name}`](#{t.name}) | {t.job} | {key} | {t.grain} |")
    lines += ["", _WHICH_ROWS_COUNT, _TYPES_AND_ROUNDING]
    for t in OUTPUT_TABLES:
        lines += [f"## {t.name}", "", _paragraph(t.description), "", _key_text(t), ""]
        lines += ["| column | type | meaning |", "| --- | --- | --- |"]
        lines += [f"| {c.name} | {c.type} | {c.description} |" for c in t.columns]
        lines.append("")
        if t.notes:
            lines += [_paragraph(t.notes), ""]
    return "\n".join(lines)
