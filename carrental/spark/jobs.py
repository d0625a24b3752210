"""The two jobs: extract (read and check the four datasets, gate the rental files) -> pure
transforms -> load.

Both jobs check the whole batch the same way, so they agree on which rental files and rows are
valid; user_transaction_analysis also writes the batch's rejects, data quality and inputs.

The run-time gate: a rentals file whose rows break reject rules (foreign keys and repeats of an
earlier file's rental ids included: what the upload validator cannot see) in a share above the
reject threshold is *held back*: left out of the run entirely, recorded in run_inputs with the
reason, and quarantined by whoever publishes the run. Taking a file out can only lower the
other files' counts (their rows may have repeated its ids), so one re-check settles it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carrental import lake
from carrental.contracts import DATASETS, RENTAL_TRANSACTIONS, Severity
from carrental.inputs import HELD_BACK, USED
from carrental.spark import transforms
from carrental.spark.io import (
    MALFORMED,
    ROW_NUMBER,
    SOURCE_FILE,
    malformed_rows_error,
    write_table,
)
from carrental.spark.rules import (
    REJECTED,
    check_dataset,
    referenced_columns,
    valid_rows,
    violation,
)
from carrental.spark.sources import CsvInputs, StagedInputs

# Dimension lookups are shipped whole to every task instead of shuffling the rentals: even at
# --scale 500 the largest (vehicle_id, vehicle_type of 2.4 M vehicles) is about 140 MB.
BROADCAST_DATASETS = frozenset({"vehicles", "locations", "users"})
# The columns of each checked dataset that the output tables use (carrental.spark.transforms),
# beside the keys and columns that other datasets' rules read (carrental.spark.rules).
OUTPUT_COLUMNS = {
    "vehicles": {"vehicle_type"},
    "locations": {"location_name", "city", "state"},
    "users": {"first_name", "last_name", "email"},
    RENTAL_TRANSACTIONS.name: {
        "user_id",
        "vehicle_id",
        "rental_start_time",
        "rental_end_time",
        "pickup_location",
        "total_amount",
        "vehicle_type",
    },
}
# Rows listed per rule in a held-back file's reason (and malformed rows in an error), at most.
EXAMPLE_ROWS = 5
MALFORMED_EXAMPLES = 10

Source = StagedInputs | CsvInputs


@dataclass(frozen=True)
class InputStatus:
    """One input file as the run saw it (a row of run_inputs)."""

    dataset: str
    source_file: str
    rows: int
    rejected_rows: int
    status: str  # USED or HELD_BACK
    reason: str
    content_sha256: str | None = None
    accepted_at: str | None = None


@dataclass(frozen=True)
class CheckedBatch:
    """Every row the run uses of the four datasets with its rule flags, cached for the job's
    outputs, and the status of every input file. Both jobs can share one (see `check_batch`);
    its creator unpersists it."""

    source: Source
    checked: dict[str, DataFrame]
    inputs: list[InputStatus]

    def valid(self, dataset: str) -> DataFrame:
        return valid_rows(self.checked[dataset])

    @property
    def held_back(self) -> list[InputStatus]:
        return [s for s in self.inputs if s.status == HELD_BACK]

    def unpersist(self) -> None:
        for frame in self.checked.values():
            frame.unpersist()


def _check(
    spark: SparkSession,
    source: Source,
    name: str,
    checked: Mapping[str, DataFrame],
    exclude: frozenset[str] = frozenset(),
) -> DataFrame:
    ds = DATASETS[name]
    referenced = referenced_columns(DATASETS.values())
    return check_dataset(
        source.parsed(spark, ds, exclude),
        ds,
        keep=referenced.get(name, set()) | OUTPUT_COLUMNS[name],
        keep_raw=ds is RENTAL_TRANSACTIONS,  # the rejects table shows rentals as read
        valid={other: valid_rows(frame) for other, frame in checked.items()},
        broadcast=BROADCAST_DATASETS,
    ).cache()


def _file_counts(checked: Mapping[str, DataFrame]) -> list:
    """(dataset, file, rows, rejected rows, malformed rows) of every file: one pass over every
    dataset, which also fills the caches."""
    return reduce(
        DataFrame.unionByName,
        [
            frame.groupBy(F.lit(name).alias("dataset"), F.col(SOURCE_FILE).alias("file")).agg(
                F.count(F.lit(1)).alias("rows"),
                F.count_if(REJECTED).alias("rejected"),
                F.count_if(F.col(MALFORMED).isNotNull()).alias("malformed"),
            )
            for name, frame in checked.items()
        ],
    ).collect()


def _over_threshold(rows: int, rejected: int, threshold: float) -> bool:
    # the upload validator's rule: accepted while rejected / rows <= threshold
    return rows > 0 and rejected / rows > threshold


def _held_back_reason(rentals: DataFrame, file: str, rows: int, rejected: int, threshold: float):
    """Why a file is held back: its share of rejected rows and, per broken reject rule, the
    count and the first rows (a few small jobs, only for a held-back file)."""
    of_file = rentals.filter(F.col(SOURCE_FILE) == file)
    rules = [r for r in RENTAL_TRANSACTIONS.rules if r.severity is Severity.REJECT]
    counts = of_file.agg(*[F.count_if(violation(r)).alias(r.name) for r in rules]).first()
    broken = []
    for rule in rules:
        if counts[rule.name]:
            first = of_file.filter(F.col(violation(rule))).orderBy(ROW_NUMBER).limit(EXAMPLE_ROWS)
            numbers = ", ".join(str(r[ROW_NUMBER]) for r in first.select(ROW_NUMBER).collect())
            more = ", …" if counts[rule.name] > EXAMPLE_ROWS else ""
            broken.append(f"{rule.name} {counts[rule.name]:,} (rows {numbers}{more})")
    return (
        f"held back: {rejected:,} of {rows:,} rows ({rejected / rows:.1%}) break a reject rule "
        f"at run time, more than the {threshold:.1%} allowed: " + "; ".join(broken)
    )


def check_batch(spark: SparkSession, source: Source) -> CheckedBatch:
    """Read and check the four datasets of `source`, then gate the rental files. Datasets that
    others reference are checked first. Fails with InputError if a file has rows that cannot be
    split into the header's columns (only a CSV read can meet one).

    A process that runs both jobs on one batch (the local runner) can check it once and pass
    it to both: ``batch = check_batch(spark, source)``, ``run_...(..., batch=batch)``, then
    ``batch.unpersist()``."""
    referenced = referenced_columns(DATASETS.values())
    ordered = sorted(DATASETS, key=lambda name: name not in referenced)
    rentals = RENTAL_TRANSACTIONS.name
    threshold = source.reject_threshold
    checked: dict[str, DataFrame] = {}
    try:
        for name in ordered:
            checked[name] = _check(spark, source, name, checked)
        counts = _file_counts(checked)
        for name in DATASETS:
            if any(c["malformed"] for c in counts if c["dataset"] == name):
                examples = (
                    checked[name]
                    .filter(F.col(MALFORMED).isNotNull())
                    .select(SOURCE_FILE, ROW_NUMBER, MALFORMED)
                    .orderBy(SOURCE_FILE, ROW_NUMBER)
                    .limit(MALFORMED_EXAMPLES)
                    .collect()
                )
                raise malformed_rows_error(examples, DATASETS[name])
        held = {
            c["file"]: _held_back_reason(
                checked[rentals], c["file"], c["rows"], c["rejected"], threshold
            )
            for c in counts
            if c["dataset"] == rentals and _over_threshold(c["rows"], c["rejected"], threshold)
        }
        if held:
            checked[rentals].unpersist()
            checked[rentals] = _check(spark, source, rentals, checked, frozenset(held))
            used = _file_counts({rentals: checked[rentals]})
            counts = [c for c in counts if c["dataset"] != rentals or c["file"] in held] + used
    except BaseException:
        for frame in checked.values():
            frame.unpersist()
        raise
    return CheckedBatch(source, checked, _statuses(source, counts, held))


def _statuses(source: Source, counts: list, held: Mapping[str, str]) -> list[InputStatus]:
    described = source.described()
    order = {key: i for i, key in enumerate(described)}
    statuses = []
    for c in sorted(counts, key=lambda c: (order.get(c["file"], len(order)), c["file"])):
        known = described.get(c["file"])
        statuses.append(
            InputStatus(
                dataset=c["dataset"],
                source_file=c["file"],
                rows=c["rows"],
                rejected_rows=c["rejected"],
                status=HELD_BACK if c["file"] in held else USED,
                reason=held.get(c["file"], ""),
                content_sha256=known.sha256 if known else None,
                accepted_at=known.accepted_at if known else None,
            )
        )
    return statuses


def _write_job_tables(
    job: str, tables: Mapping[str, DataFrame], output: str, run_id: str
) -> dict[str, int]:
    expected = [t for t, writer in lake.TABLES.items() if writer == job]
    if sorted(tables) != sorted(expected):
        raise ValueError(f"{job} must write {expected}, not {sorted(tables)}")
    return {name: write_table(frame, output, name, run_id) for name, frame in tables.items()}


def _run(
    spark: SparkSession,
    source: Source,
    output: str,
    run_id: str,
    job: str,
    build_tables: Callable[[SparkSession, CheckedBatch], dict[str, DataFrame]],
    batch: CheckedBatch | None,
) -> dict[str, int]:
    lake.check_run_id(run_id)  # before any work: it becomes a folder name
    if batch is not None and batch.source != source:
        raise ValueError(f"{job}: the batch was checked from {batch.source}, not {source}")
    owned = batch is None
    checked = check_batch(spark, source) if batch is None else batch
    try:
        return _write_job_tables(job, build_tables(spark, checked), output, run_id)
    finally:
        if owned:
            checked.unpersist()


def _vehicle_location_tables(spark: SparkSession, batch: CheckedBatch) -> dict[str, DataFrame]:
    rentals = transforms.valid_rentals(batch.checked[RENTAL_TRANSACTIONS.name])
    return {
        "location_performance": transforms.location_performance(rentals, batch.valid("locations")),
        "vehicle_type_performance": transforms.vehicle_type_performance(rentals),
        "location_vehicle_type_performance": transforms.location_vehicle_type_performance(rentals),
    }


def _user_transaction_tables(spark: SparkSession, batch: CheckedBatch) -> dict[str, DataFrame]:
    rentals = transforms.valid_rentals(batch.checked[RENTAL_TRANSACTIONS.name])
    return {
        "rental_rejects": transforms.rental_rejects(batch.checked[RENTAL_TRANSACTIONS.name]),
        # four single-row aggregates: one file, not four
        "data_quality": transforms.data_quality(batch.checked).coalesce(1),
        "user_metrics": transforms.user_metrics(rentals, batch.valid("users")),
        "daily_metrics": transforms.daily_metrics(rentals),
        "business_summary": transforms.business_summary(rentals),
        "run_inputs": transforms.run_inputs(spark, batch.inputs),
    }


def run_vehicle_location_performance(
    spark: SparkSession,
    source: Source,
    output: str,
    run_id: str,
    *,
    batch: CheckedBatch | None = None,
) -> dict[str, int]:
    """Write location_performance, vehicle_type_performance and
    location_vehicle_type_performance of `run_id` under `output` (the processed prefix).
    Returns each table's row count. `batch`: an already checked batch of the same `source`."""
    return _run(
        spark,
        source,
        output,
        run_id,
        "vehicle_location_performance",
        _vehicle_location_tables,
        batch,
    )


def run_user_transaction_analysis(
    spark: SparkSession,
    source: Source,
    output: str,
    run_id: str,
    *,
    batch: CheckedBatch | None = None,
) -> dict[str, int]:
    """Write user_metrics, daily_metrics, business_summary, rental_rejects, data_quality and
    run_inputs of `run_id` under `output` (the processed prefix). Returns each table's row
    count. `batch`: an already checked batch of the same `source`."""
    return _run(
        spark, source, output, run_id, "user_transaction_analysis", _user_transaction_tables, batch
    )
