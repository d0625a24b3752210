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

from carrental.contracts import (
    DATASETS,
    MONEY_PRECISION,
    MONEY_SCALE,
    RENTAL_TRANSACTIONS,
    Severity,
)
from carrental.spark.io import ROW_NUMBER, SOURCE_FILE
from carrental.spark.rules import (
    PRICING_CLASS_COLUMN,
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
        PRICING_CLASS_COLUMN,
        rental_seconds(F.col("rental_start_time"), F.col("rental_end_time")).alias(RENTAL_SECONDS),
    )


# The aggregates every KPI table is computed from, one frame of parts (AGGREGATE_PART) keyed by
# their grain. They merge: counts and sums add, extremes compare, and distinct vehicles and users
# add too, because a distinct pair (a location and a vehicle, say) is counted only where it
# first occurs in the history (`rental_aggregates` with `earlier`). So a history's aggregates
# are those of a prefix merged with those of the files after it.
AGGREGATE_PART = "part"
AGGREGATE_KEYS = {
    "location_type": ("pickup_location", PRICING_CLASS_COLUMN),
    "user": ("user_id",),
    "date": ("rental_date",),
    "location_vehicles": ("pickup_location",),
    "location_users": ("pickup_location",),
    "type_vehicles": (PRICING_CLASS_COLUMN,),
    "date_vehicles": ("rental_date",),
    "date_users": ("rental_date",),
}
# part -> (the pairs it counts distinct, their grain column in the table); vehicles or users
DISTINCT_PARTS = {
    "location_vehicles": ("pickup_location", "vehicle_id"),
    "location_users": ("pickup_location", "user_id"),
    "type_vehicles": (PRICING_CLASS_COLUMN, "vehicle_id"),
    "date_vehicles": ("rental_date", "vehicle_id"),
    "date_users": ("rental_date", "user_id"),
}
AMOUNT = st.DecimalType(MONEY_PRECISION, MONEY_SCALE)
# Spark's exact sum of DECIMAL(12, 2) and Spark's average of it (sum / count, rounded half up)
TOTAL = st.DecimalType(MONEY_PRECISION + 10, MONEY_SCALE)
AVERAGE = st.DecimalType(MONEY_PRECISION + 4, MONEY_SCALE + 4)
_COUNT = st.DecimalType(20, 0)
AGGREGATES_SCHEMA = st.StructType(
    [
        st.StructField(AGGREGATE_PART, st.StringType()),
        st.StructField("pickup_location", st.IntegerType()),
        st.StructField(PRICING_CLASS_COLUMN, st.StringType()),
        st.StructField("user_id", st.StringType()),
        st.StructField("rental_date", st.DateType()),
        st.StructField("rentals", st.LongType()),
        st.StructField("revenue", TOTAL),
        st.StructField("lowest", AMOUNT),
        st.StructField("highest", AMOUNT),
        st.StructField("seconds", st.LongType()),
        st.StructField("first_start", st.TimestampNTZType()),
        st.StructField("last_start", st.TimestampNTZType()),
        st.StructField("distinct", st.LongType()),
    ]
)
_STATS = ("rentals", "revenue", "lowest", "highest", "seconds")


def _part(frame: DataFrame, part: str) -> DataFrame:
    """One part in the common shape (the columns it does not use are null)."""
    columns = set(frame.columns)
    return frame.select(
        *[
            (
                F.lit(part)
                if f.name == AGGREGATE_PART
                else F.col(f.name)
                if f.name in columns
                else F.lit(None)
            )
            .cast(f.dataType)
            .alias(f.name)
            for f in AGGREGATES_SCHEMA
        ]
    )


def _stats() -> list[Column]:
    return [
        F.count(F.lit(1)).alias("rentals"),
        F.sum("total_amount").alias("revenue"),
        F.min("total_amount").alias("lowest"),
        F.max("total_amount").alias("highest"),
        F.sum(RENTAL_SECONDS).alias("seconds"),
    ]


def rental_aggregates(
    rentals: DataFrame, earlier: DataFrame | None = None, broadcast_keys: bool = False
) -> DataFrame:
    """The aggregates of valid rentals (`valid_rentals`). `earlier`: the valid rentals of the
    files before them; pairs those have are not counted again. Only the earlier rentals of the
    same vehicles or users are looked at (`broadcast_keys`: ship `rentals`' vehicles and users to
    every task, for a few rentals against a long history)."""
    dated = rentals.withColumn("rental_date", F.to_date("rental_start_time"))
    parts = [
        _part(dated.groupBy(*AGGREGATE_KEYS["location_type"]).agg(*_stats()), "location_type"),
        _part(
            dated.groupBy("user_id").agg(
                *_stats(),
                F.min("rental_start_time").alias("first_start"),
                F.max("rental_start_time").alias("last_start"),
            ),
            "user",
        ),
        _part(dated.groupBy("rental_date").agg(*_stats()), "date"),
    ]
    before = {}
    if earlier is not None:
        earlier = earlier.withColumn("rental_date", F.to_date("rental_start_time"))
        for who in ("vehicle_id", "user_id"):
            keys = dated.select(who).distinct()
            before[who] = earlier.join(
                F.broadcast(keys) if broadcast_keys else keys, who, "left_semi"
            )
    for part, (grain, who) in DISTINCT_PARTS.items():
        pairs = dated.select(grain, who).distinct()
        if who in before:
            pairs = pairs.join(before[who].select(grain, who), [grain, who], "left_anti")
        parts.append(_part(pairs.groupBy(grain).agg(F.count(F.lit(1)).alias("distinct")), part))
    return reduce(DataFrame.unionByName, parts)


def merge_aggregates(*aggregates: DataFrame) -> DataFrame:
    """The aggregates of a history from those of its consecutive parts, in order."""
    keys = [AGGREGATE_PART, "pickup_location", PRICING_CLASS_COLUMN, "user_id", "rental_date"]
    return (
        reduce(DataFrame.unionByName, aggregates)
        .groupBy(*keys)
        .agg(
            F.sum("rentals").alias("rentals"),
            F.sum("revenue").cast(TOTAL).alias("revenue"),
            F.min("lowest").alias("lowest"),
            F.max("highest").alias("highest"),
            F.sum("seconds").alias("seconds"),
            F.min("first_start").alias("first_start"),
            F.max("last_start").alias("last_start"),
            F.sum("distinct").alias("distinct"),
        )
    )


def _of(aggregates: DataFrame, part: str) -> DataFrame:
    return aggregates.filter(F.col(AGGREGATE_PART) == part)


def _total_hours(seconds: Column) -> Column:
    return (seconds.cast(_SECONDS) / F.lit(SECONDS_PER_HOUR)).cast(HOURS)


def _avg_hours(seconds: Column, rentals: Column) -> Column:
    return (seconds.cast(_SECONDS) / (rentals.cast(_SECONDS) * F.lit(SECONDS_PER_HOUR))).cast(HOURS)


def _average(total: Column, count: Column) -> Column:
    """Spark's avg of DECIMAL(12, 2) from its sum and count: the same division and rounding."""
    return (total.cast(TOTAL) / count.cast(_COUNT)).cast(AVERAGE)


def _amount_stats(total_name: str) -> list[Column]:
    """Per group of the aggregates: the rental count and the amounts."""
    return [
        F.sum("rentals").alias("rental_count"),
        F.sum("revenue").cast(TOTAL).alias(total_name),
        _average(F.sum("revenue"), F.sum("rentals")).alias("avg_rental_amount"),
        F.min("lowest").alias("min_rental_amount"),
        F.max("highest").alias("max_rental_amount"),
    ]


def _distinct(aggregates: DataFrame, part: str, name: str) -> DataFrame:
    return _of(aggregates, part).select(*AGGREGATE_KEYS[part], F.col("distinct").alias(name))


def location_performance_of(aggregates: DataFrame, locations: DataFrame) -> DataFrame:
    """One row per pickup location with at least one valid rental."""
    per_location = (
        _of(aggregates, "location_type")
        .groupBy("pickup_location")
        .agg(
            *_amount_stats("total_revenue"),
            _total_hours(F.sum("seconds")).alias("total_rental_hours"),
            _avg_hours(F.sum("seconds"), F.sum("rentals")).alias("avg_rental_hours"),
        )
        .join(_distinct(aggregates, "location_vehicles", "unique_vehicles"), "pickup_location")
        .join(_distinct(aggregates, "location_users", "unique_users"), "pickup_location")
        .withColumnRenamed("pickup_location", "location_id")
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


def vehicle_type_performance_of(aggregates: DataFrame) -> DataFrame:
    """One row per vehicle_type with at least one valid rental."""
    return (
        _of(aggregates, "location_type")
        .groupBy(PRICING_CLASS_COLUMN)
        .agg(
            *_amount_stats("total_revenue"),
            _total_hours(F.sum("seconds")).alias("total_rental_hours"),
            _avg_hours(F.sum("seconds"), F.sum("rentals")).alias("avg_rental_hours"),
        )
        .join(_distinct(aggregates, "type_vehicles", "unique_vehicles"), PRICING_CLASS_COLUMN)
        .select(
            PRICING_CLASS_COLUMN,
            "rental_count",
            "total_revenue",
            "avg_rental_amount",
            "min_rental_amount",
            "max_rental_amount",
            "unique_vehicles",
            "total_rental_hours",
            "avg_rental_hours",
        )
    )


def location_vehicle_type_performance_of(aggregates: DataFrame) -> DataFrame:
    """One row per (pickup location, vehicle_type) with at least one valid rental."""
    return _of(aggregates, "location_type").select(
        F.col("pickup_location").alias("location_id"),
        PRICING_CLASS_COLUMN,
        F.col("rentals").alias("rental_count"),
        F.col("revenue").alias("total_revenue"),
        _avg_hours(F.col("seconds"), F.col("rentals")).alias("avg_rental_hours"),
    )


def user_metrics_of(aggregates: DataFrame, users: DataFrame) -> DataFrame:
    """One row per user with at least one valid rental; spend_rank 1 = the top spender, ties
    broken by user_id. The rank needs one global order: a single partition of (at most) one
    row per user, after the aggregation."""
    per_user = _of(aggregates, "user").select(
        "user_id",
        F.col("rentals").alias("rental_count"),
        F.col("revenue").alias("total_spent"),
        _average(F.col("revenue"), F.col("rentals")).alias("avg_rental_amount"),
        F.col("lowest").alias("min_rental_amount"),
        F.col("highest").alias("max_rental_amount"),
        _total_hours(F.col("seconds")).alias("total_rental_hours"),
        _avg_hours(F.col("seconds"), F.col("rentals")).alias("avg_rental_hours"),
        F.col("first_start").alias("first_rental_start"),
        F.col("last_start").alias("last_rental_start"),
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


def daily_metrics_of(aggregates: DataFrame) -> DataFrame:
    """One row per calendar date (wall clock) on which at least one valid rental started."""
    return (
        _of(aggregates, "date")
        .groupBy("rental_date")
        .agg(*_amount_stats("total_revenue"))
        .join(_distinct(aggregates, "date_users", "unique_users"), "rental_date")
        .join(_distinct(aggregates, "date_vehicles", "unique_vehicles"), "rental_date")
    )


def business_summary_of(aggregates: DataFrame) -> DataFrame:
    """Exactly one row: the headline numbers of the run's valid rentals."""
    totals = _of(aggregates, "location_type").agg(
        F.coalesce(F.sum("revenue"), F.lit(0)).cast(TOTAL).alias("total_revenue"),
        F.coalesce(F.sum("rentals"), F.lit(0)).alias("rental_count"),
        _average(F.sum("revenue"), F.sum("rentals")).alias("avg_rental_amount"),
        _avg_hours(F.sum("seconds"), F.sum("rentals")).alias("avg_rental_hours"),
    )
    customers = _of(aggregates, "user").agg(
        F.count(F.lit(1)).alias("unique_customers"),
        F.to_date(F.min("first_start")).alias("first_rental_date"),
        F.to_date(F.max("last_start")).alias("last_rental_date"),
    )
    vehicles = _of(aggregates, "type_vehicles").agg(
        F.coalesce(F.sum("distinct"), F.lit(0)).alias("unique_vehicles_rented")
    )
    return (
        totals.crossJoin(customers)
        .crossJoin(vehicles)
        .select(
            "total_revenue",
            "rental_count",
            "unique_customers",
            "unique_vehicles_rented",
            "avg_rental_amount",
            "avg_rental_hours",
            "first_rental_date",
            "last_rental_date",
        )
    )


def location_performance(rentals: DataFrame, locations: DataFrame) -> DataFrame:
    """location_performance of valid rentals (`valid_rentals`)."""
    return location_performance_of(merge_aggregates(rental_aggregates(rentals)), locations)


def vehicle_type_performance(rentals: DataFrame) -> DataFrame:
    return vehicle_type_performance_of(merge_aggregates(rental_aggregates(rentals)))


def location_vehicle_type_performance(rentals: DataFrame) -> DataFrame:
    return location_vehicle_type_performance_of(merge_aggregates(rental_aggregates(rentals)))


def user_metrics(rentals: DataFrame, users: DataFrame) -> DataFrame:
    return user_metrics_of(merge_aggregates(rental_aggregates(rentals)), users)


def daily_metrics(rentals: DataFrame) -> DataFrame:
    return daily_metrics_of(merge_aggregates(rental_aggregates(rentals)))


def business_summary(rentals: DataFrame) -> DataFrame:
    return business_summary_of(merge_aggregates(rental_aggregates(rentals)))


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
