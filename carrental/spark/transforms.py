"""Pure DataFrame -> DataFrame transforms: the output tables of both jobs.

Inputs are checked datasets (`carrental.spark.rules.check_dataset`) or the valid rentals taken
from them (`valid_rentals`). Columns and types of every output are documented in docs/tables.md. Money stays DECIMAL: sums are DECIMAL(22, 2)
(Spark's exact sum of DECIMAL(12, 2)), averages DECIMAL(16, 6) rounded half up. Hours are
exact: integer seconds are summed, then divided by 3600 once and rounded half up to HOURS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental.contracts import DATASETS, RENTAL_TRANSACTIONS, Severity
from carrental.spark.io import ROW_NUMBER, SOURCE_FILE
from carrental.spark.rules import (
    REJECTED,
    SECONDS_PER_HOUR,
    raw,
    rental_seconds,
    valid_rows,
    violation,
)

HOURS = st.DecimalType(22, 6)
# Integer seconds as an exact decimal: the sum of any number of bigint seconds fits.
_SECONDS = st.DecimalType(20, 0)
RENTAL_SECONDS = "rental_seconds"
REJECT_REASON_SEPARATOR = ";"


def valid_rentals(checked_rentals: DataFrame) -> DataFrame:
    """Rentals that break no reject rule, so their vehicle, user and pickup location resolve;
    with the vehicle_type their vehicle brought along and their duration in seconds."""
    return valid_rows(checked_rentals).select(
        "user_id",
        "vehicle_id",
        "rental_start_time",
        "pickup_location",
        "total_amount",
        "vehicle_type",
        rental_seconds(F.col("rental_start_time"), F.col("rental_end_time")).alias(RENTAL_SECONDS),
    )


def _total_hours() -> Column:
    return (F.sum(RENTAL_SECONDS).cast(_SECONDS) / F.lit(SECONDS_PER_HOUR)).cast(HOURS)


def _avg_hours() -> Column:
    per_rental = F.count(F.lit(1)).cast(_SECONDS) * F.lit(SECONDS_PER_HOUR)
    return (F.sum(RENTAL_SECONDS).cast(_SECONDS) / per_rental).cast(HOURS)


def _amount_stats(total_name: str) -> list[Column]:
    return [
        F.count(F.lit(1)).alias("rental_count"),
        F.sum("total_amount").alias(total_name),
        F.avg("total_amount").alias("avg_rental_amount"),
        F.min("total_amount").alias("min_rental_amount"),
        F.max("total_amount").alias("max_rental_amount"),
    ]


def location_performance(rentals: DataFrame, locations: DataFrame) -> DataFrame:
    """One row per pickup location with at least one valid rental."""
    per_location = rentals.groupBy(F.col("pickup_location").alias("location_id")).agg(
        *_amount_stats("total_revenue"),
        F.count_distinct("vehicle_id").alias("unique_vehicles"),
        F.count_distinct("user_id").alias("unique_users"),
        _total_hours().alias("total_rental_hours"),
        _avg_hours().alias("avg_rental_hours"),
    )
    names = locations.select("location_id", "location_name", "city", "state")
    return per_location.join(F.broadcast(names), "location_id").select(
        "location_id",
        "location_name",
        "city",
        "state",
        "rental_count",
        "total_revenue",
        "avg_rental_amount",
        "min_rental_amount",
        "max_rental_amount",
        "unique_vehicles",
        "unique_users",
        "total_rental_hours",
        "avg_rental_hours",
    )


def vehicle_type_performance(rentals: DataFrame) -> DataFrame:
    """One row per vehicle_type with at least one valid rental."""
    return rentals.groupBy("vehicle_type").agg(
        *_amount_stats("total_revenue"),
        F.count_distinct("vehicle_id").alias("unique_vehicles"),
        _total_hours().alias("total_rental_hours"),
        _avg_hours().alias("avg_rental_hours"),
    )


def location_vehicle_type_performance(rentals: DataFrame) -> DataFrame:
    """One row per (pickup location, vehicle_type) with at least one valid rental."""
    return rentals.groupBy(F.col("pickup_location").alias("location_id"), "vehicle_type").agg(
        F.count(F.lit(1)).alias("rental_count"),
        F.sum("total_amount").alias("total_revenue"),
        _avg_hours().alias("avg_rental_hours"),
    )


def user_metrics(rentals: DataFrame, users: DataFrame) -> DataFrame:
    """One row per user with at least one valid rental; spend_rank 1 = the top spender, ties
    broken by user_id. The rank needs one global order: a single partition of (at most) one
    row per user, after the aggregation."""
    per_user = rentals.groupBy("user_id").agg(
        *_amount_stats("total_spent"),
        _total_hours().alias("total_rental_hours"),
        _avg_hours().alias("avg_rental_hours"),
        F.min("rental_start_time").alias("first_rental_start"),
        F.max("rental_start_time").alias("last_rental_start"),
    )
    names = users.select("user_id", "first_name", "last_name", "email")
    by_spend = Window.orderBy(F.col("total_spent").desc(), F.col("user_id"))
    return (
        per_user.join(names, "user_id")
        .withColumn("spend_rank", F.row_number().over(by_spend))
        .select(
            "user_id",
            "first_name",
            "last_name",
            "email",
            "rental_count",
            "total_spent",
            "avg_rental_amount",
            "min_rental_amount",
            "max_rental_amount",
            "total_rental_hours",
            "avg_rental_hours",
            "first_rental_start",
            "last_rental_start",
            "spend_rank",
        )
    )


def daily_metrics(rentals: DataFrame) -> DataFrame:
    """One row per calendar date (wall clock) on which at least one valid rental started."""
    return rentals.groupBy(F.to_date("rental_start_time").alias("rental_date")).agg(
        *_amount_stats("total_revenue"),
        F.count_distinct("user_id").alias("unique_users"),
        F.count_distinct("vehicle_id").alias("unique_vehicles"),
    )


def business_summary(rentals: DataFrame) -> DataFrame:
    """Exactly one row: the headline numbers of the run's valid rentals."""
    start_date = F.to_date("rental_start_time")
    return rentals.agg(
        F.coalesce(F.sum("total_amount"), F.lit(0).cast(st.DecimalType(22, 2))).alias(
            "total_revenue"
        ),
        F.count(F.lit(1)).alias("rental_count"),
        F.count_distinct("user_id").alias("unique_customers"),
        F.count_distinct("vehicle_id").alias("unique_vehicles_rented"),
        F.avg("total_amount").alias("avg_rental_amount"),
        _avg_hours().alias("avg_rental_hours"),
        F.min(start_date).alias("first_rental_date"),
        F.max(start_date).alias("last_rental_date"),
    )


def rental_rejects(checked_rentals: DataFrame) -> DataFrame:
    """Every rental row that breaks a reject rule: its fields as read (text), the names of all
    the reject rules it breaks in contract order joined by ';', and where it came from."""
    reject_rules = [r for r in RENTAL_TRANSACTIONS.rules if r.severity is Severity.REJECT]
    reason = F.concat_ws(
        REJECT_REASON_SEPARATOR,
        *[F.when(F.col(violation(r)), F.lit(r.name)) for r in reject_rules],
    )
    return checked_rentals.filter(F.col(REJECTED)).select(
        *[F.col(raw(c)).alias(c) for c in RENTAL_TRANSACTIONS.header],
        reason.alias("reject_reason"),
        F.col(SOURCE_FILE).alias("source_file"),
        ROW_NUMBER,
    )


RUN_INPUTS_SCHEMA = (
    "input_order int, dataset string, source_file string, content_sha256 string, "
    "accepted_at timestamp_ntz, rows bigint, rejected_rows bigint, status string, reason string"
)


def run_inputs(spark: SparkSession, statuses: Sequence) -> DataFrame:
    """One row per input file of the run (`jobs.InputStatus`, in manifest order): what it was,
    how many of its rows break a reject rule at run time, and whether the run used it."""
    rows = [
        (
            order,
            s.dataset,
            s.source_file,
            s.content_sha256,
            datetime.fromisoformat(s.accepted_at).astimezone(UTC).replace(tzinfo=None)
            if s.accepted_at
            else None,
            s.rows,
            s.rejected_rows,
            s.status,
            s.reason,
        )
        for order, s in enumerate(statuses, 1)
    ]
    # one small file, whatever the default parallelism
    return spark.createDataFrame(rows, RUN_INPUTS_SCHEMA).coalesce(1)


def data_quality(checked: Mapping[str, DataFrame]) -> DataFrame:
    """One row per (dataset, rule) of the contracts, zero counts included. A warn rule counts
    only rows that break no reject rule; a row breaking several rules counts for each."""
    per_dataset = []
    for name, frame in checked.items():
        ds = DATASETS[name]
        counts = [
            F.struct(
                F.lit(ds.name).alias("dataset"),
                F.lit(r.name).alias("rule"),
                F.lit(str(r.severity)).alias("severity"),
                F.count_if(violation(r)).alias("violations"),
            )
            for r in ds.rules
        ]
        per_dataset.append(frame.agg(F.array(*counts).alias("rules")))
    return reduce(DataFrame.unionByName, per_dataset).select(F.inline("rules"))
