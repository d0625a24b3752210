"""The two jobs: extract (read and check the four datasets) -> pure transforms -> load.

Both jobs check the whole batch the same way, so they agree on which rentals are valid;
user_transaction_analysis also writes the batch's rejects and data quality (once per run).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carrental import lake
from carrental.contracts import DATASETS, RENTAL_TRANSACTIONS
from carrental.spark import transforms
from carrental.spark.io import malformed_row_count, malformed_rows_error, read_dataset, write_table
from carrental.spark.rules import (
    PRICING_CLASS_COLUMN,
    check_dataset,
    referenced_columns,
    valid_rows,
)

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
        PRICING_CLASS_COLUMN,
    },
}


@dataclass(frozen=True)
class CheckedBatch:
    """Every row of the four datasets with its rule flags, cached for the job's outputs.
    Both jobs can share one (see `check_batch`); its creator unpersists it."""

    inputs: dict[str, str]
    checked: dict[str, DataFrame]

    def valid(self, dataset: str) -> DataFrame:
        return valid_rows(self.checked[dataset])

    def unpersist(self) -> None:
        for frame in self.checked.values():
            frame.unpersist()


def check_batch(spark: SparkSession, inputs: Mapping[str, str]) -> CheckedBatch:
    """Read and check the four datasets; `inputs` maps each dataset name to a file or folder
    (local path or s3:// URI). Datasets that others reference are checked first. Fails with
    InputError if a file has rows that cannot be split into the header's columns.

    A process that runs both jobs on one batch (the local runner) can check it once and pass
    it to both: ``batch = check_batch(spark, inputs)``, ``run_...(..., batch=batch)``, then
    ``batch.unpersist()``."""
    missing = [name for name in DATASETS if name not in inputs]
    unknown = [name for name in inputs if name not in DATASETS]
    if missing or unknown:
        raise ValueError(f"inputs: missing datasets {missing}, unknown datasets {unknown}")
    referenced = referenced_columns(DATASETS.values())
    ordered = sorted(DATASETS.values(), key=lambda ds: ds.name not in referenced)
    checked: dict[str, DataFrame] = {}
    try:
        for ds in ordered:
            checked[ds.name] = check_dataset(
                read_dataset(spark, inputs[ds.name], ds),
                ds,
                keep=referenced.get(ds.name, set()) | OUTPUT_COLUMNS[ds.name],
                keep_raw=ds is RENTAL_TRANSACTIONS,  # the rejects table shows rentals as read
                valid={name: valid_rows(done) for name, done in checked.items()},
                broadcast=BROADCAST_DATASETS,
            ).cache()
        # one pass over every dataset, which also fills the caches
        counts = reduce(
            DataFrame.unionByName,
            [
                frame.agg(F.lit(name).alias("dataset"), malformed_row_count().alias("rows"))
                for name, frame in checked.items()
            ],
        ).collect()
        for name, rows in counts:
            if rows:
                raise malformed_rows_error(checked[name], DATASETS[name])
    except BaseException:
        CheckedBatch(dict(inputs), checked).unpersist()
        raise
    return CheckedBatch(dict(inputs), checked)


def _write_job_tables(
    job: str, tables: Mapping[str, DataFrame], output: str, run_id: str
) -> dict[str, int]:
    expected = [t for t, writer in lake.TABLES.items() if writer == job]
    if sorted(tables) != sorted(expected):
        raise ValueError(f"{job} must write {expected}, not {sorted(tables)}")
    return {name: write_table(frame, output, name, run_id) for name, frame in tables.items()}


def _run(
    spark: SparkSession,
    inputs: Mapping[str, str],
    output: str,
    run_id: str,
    job: str,
    build_tables: Callable[[CheckedBatch], dict[str, DataFrame]],
    batch: CheckedBatch | None,
) -> dict[str, int]:
    lake.check_run_id(run_id)  # before any work: it becomes a folder name
    if batch is not None and batch.inputs != dict(inputs):
        raise ValueError(f"{job}: the batch was checked from {batch.inputs}, not {dict(inputs)}")
    owned = batch is None
    checked = check_batch(spark, inputs) if batch is None else batch
    try:
        return _write_job_tables(job, build_tables(checked), output, run_id)
    finally:
        if owned:
            checked.unpersist()


def _vehicle_location_tables(batch: CheckedBatch) -> dict[str, DataFrame]:
    rentals = transforms.valid_rentals(batch.checked[RENTAL_TRANSACTIONS.name])
    return {
        "location_performance": transforms.location_performance(rentals, batch.valid("locations")),
        "vehicle_type_performance": transforms.vehicle_type_performance(rentals),
        "location_vehicle_type_performance": transforms.location_vehicle_type_performance(rentals),
    }


def _user_transaction_tables(batch: CheckedBatch) -> dict[str, DataFrame]:
    rentals = transforms.valid_rentals(batch.checked[RENTAL_TRANSACTIONS.name])
    return {
        "rental_rejects": transforms.rental_rejects(batch.checked[RENTAL_TRANSACTIONS.name]),
        # four single-row aggregates: one file, not four
        "data_quality": transforms.data_quality(batch.checked).coalesce(1),
        "user_metrics": transforms.user_metrics(rentals, batch.valid("users")),
        "daily_metrics": transforms.daily_metrics(rentals),
        "business_summary": transforms.business_summary(rentals),
    }


def run_vehicle_location_performance(
    spark: SparkSession,
    inputs: Mapping[str, str],
    output: str,
    run_id: str,
    *,
    batch: CheckedBatch | None = None,
) -> dict[str, int]:
    """Write location_performance, vehicle_type_performance and
    location_vehicle_type_performance of `run_id` under `output` (the processed prefix).
    Returns each table's row count. `batch`: an already checked batch of the same `inputs`."""
    return _run(
        spark,
        inputs,
        output,
        run_id,
        "vehicle_location_performance",
        _vehicle_location_tables,
        batch,
    )


def run_user_transaction_analysis(
    spark: SparkSession,
    inputs: Mapping[str, str],
    output: str,
    run_id: str,
    *,
    batch: CheckedBatch | None = None,
) -> dict[str, int]:
    """Write user_metrics, daily_metrics, business_summary, rental_rejects and data_quality of
    `run_id` under `output` (the processed prefix). Returns each table's row count.
    `batch`: an already checked batch of the same `inputs`."""
    return _run(
        spark, inputs, output, run_id, "user_transaction_analysis", _user_transaction_tables, batch
    )
