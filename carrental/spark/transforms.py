"""Pure DataFrame -> DataFrame transforms: the output tables of both jobs.

Inputs are checked datasets (`carrental.spark.rules.check_dataset`) or the valid rentals taken
from them (`valid_rentals`). Columns and types of every output are defined in
carrental/tables.py. Money stays DECIMAL: sums are DECIMAL(22, 2) (Spark's exact sum of
DECIMAL(12, 2)), averages DECIMAL(16, 6) rounded half up. Hours are exact: integer seconds are
summed, then divided by 3600 once and rounded half up to HOURS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from functools import reduce

from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental import tables
from carrental.contracts import (
    DATASETS,
    RENTAL_TRANSACTIONS,
    Severity,
)
from carrental.spark.io import ROW_NUMBER, SOURCE_FILE
from carrental.spark.rules import (
    REJECTED,
    SECONDS_PER_HOUR,
    raw,
    rental_seconds,
    valid_rows,
    violation,
)

HOURS = tables.spark_type(tables.HOURS)
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


# The aggregates every KPI table is computed from: one frame of parts (AGGREGATE_PART), each
# keyed by its grain, one row per key with the count of rentals, their amounts, seconds and
# start times, and the number of distinct vehicles and users. Aggregates merge
# (`merge_aggregates`): counts and sums add, extremes compare, and distinct counts add too,
# because a distinct pair (a location and a vehicle, say) is counted only where it first occurs
# in the history (`rental_aggregates` with `earlier`). So a history's aggregates are those of a
# prefix merged with those of the files after it, and every table is a filter of them.
AGGREGATE_PART = "part"
AGGREGATE_KEYS: dict[str, tuple[str, ...]] = {
    "location": ("pickup_location",),
    "vehicle_type": ("vehicle_type",),
    "location_type": ("pickup_location", "vehicle_type"),
    "user": ("user_id",),
    "date": ("rental_date",),
    "summary": (),
}
# part -> the columns whose distinct values per key it counts (VEHICLES, USERS)
VEHICLES, USERS = "vehicles", "users"
DISTINCT_COUNTS = {
    "location": (VEHICLES, USERS),
    "vehicle_type": (VEHICLES,),
    "date": (VEHICLES, USERS),
}
_COUNTED = {VEHICLES: "vehicle_id", USERS: "user_id"}
AMOUNT = tables.spark_type(tables.AMOUNT)
# Spark's exact sum of the amounts, and their average (the sum / the count, rounded half up)
TOTAL = tables.spark_type(tables.AMOUNT_SUM)
AVERAGE = tables.spark_type(tables.AMOUNT_AVERAGE)
_COUNT = st.DecimalType(20, 0)
_KEYS = {
    "pickup_location": st.IntegerType(),
    "vehicle_type": st.StringType(),
    "user_id": st.StringType(),
    "rental_date": st.DateType(),
}
AGGREGATES_SCHEMA = st.StructType(
    [
        st.StructField(AGGREGATE_PART, st.StringType()),
        *[st.StructField(name, kind) for name, kind in _KEYS.items()],
        st.StructField("rentals", st.LongType()),
        st.StructField("revenue", TOTAL),
        st.StructField("lowest", AMOUNT),
        st.StructField("highest", AMOUNT),
        st.StructField("seconds", st.LongType()),
        st.StructField("first_start", st.TimestampNTZType()),
        st.StructField("last_start", st.TimestampNTZType()),
        st.StructField(VEHICLES, st.LongType()),
        st.StructField(USERS, st.LongType()),
    ]
)
# Pairs counted distinct: the part and its key (AGGREGATES_SCHEMA's key columns), and the
# vehicle or the user (the other one null).
_PAIR_COLUMNS = [AGGREGATE_PART, *_KEYS, "_vehicle", "_user"]


def _shaped(part: str, values: dict[str, Column], schema: st.StructType) -> Column:
    """One row of `schema` for `part`: `values` where given, null elsewhere."""
    return F.struct(
        F.lit(part).alias(AGGREGATE_PART),
        *[
            values.get(f.name, F.lit(None)).cast(f.dataType).alias(f.name)
            for f in schema.fields[1:]
        ],
    )


def _pairs(rentals: DataFrame, counted: str | None = None) -> DataFrame:
    """The distinct (part, key, vehicle or user) pairs of the rentals (only of VEHICLES or
    USERS if `counted` says so)."""
    schema = st.StructType(
        [AGGREGATES_SCHEMA[AGGREGATE_PART]]
        + [AGGREGATES_SCHEMA[k] for k in _KEYS]
        + [st.StructField("_vehicle", st.StringType()), st.StructField("_user", st.StringType())]
    )
    rows = [
        _shaped(
            part,
            {
                **{key: F.col(key) for key in AGGREGATE_KEYS[part]},
                "_vehicle" if what == VEHICLES else "_user": F.col(_COUNTED[what]),
            },
            schema,
        )
        for part, kinds in DISTINCT_COUNTS.items()
        for what in kinds
        if counted in (None, what)
    ]
    return rentals.select(F.explode(F.array(*rows)).alias("_pair")).select("_pair.*").distinct()


def rental_aggregates(
    rentals: DataFrame, earlier: DataFrame | None = None, broadcast_keys: bool = False
) -> DataFrame:
    """The aggregates of valid rentals (`valid_rentals`), unmerged (`merge_aggregates`).
    `earlier`: the valid rentals of the files before these; a pair those have is not counted
    again. Only their rentals of the same vehicles or users are looked at (`broadcast_keys`:
    ship these rentals' vehicles and users to every task, for a few rentals against a long
    history)."""
    dated = rentals.withColumn("rental_date", F.to_date("rental_start_time"))
    one_rental = {
        "rentals": F.lit(1),
        "revenue": F.col("total_amount"),
        "lowest": F.col("total_amount"),
        "highest": F.col("total_amount"),
        "seconds": F.col(RENTAL_SECONDS),
        "first_start": F.col("rental_start_time"),
        "last_start": F.col("rental_start_time"),
    }
    per_part = dated.select(
        F.explode(
            F.array(
                *[
                    _shaped(part, {**{k: F.col(k) for k in keys}, **one_rental}, AGGREGATES_SCHEMA)
                    for part, keys in AGGREGATE_KEYS.items()
                ]
            )
        ).alias("_row")
    ).select("_row.*")
    pairs = _pairs(dated)
    if earlier is not None:
        earlier = earlier.withColumn("rental_date", F.to_date("rental_start_time"))
        seen = []
        for what in (VEHICLES, USERS):
            column = _COUNTED[what]
            keys = dated.select(column).distinct()
            same = earlier.join(F.broadcast(keys) if broadcast_keys else keys, column, "left_semi")
            seen.append(_pairs(same, what))
        before = reduce(DataFrame.unionByName, seen)
        match = [pairs[c].eqNullSafe(before[c]) for c in _PAIR_COLUMNS]
        pairs = pairs.join(before, match, "left_anti")
    counted = pairs.select(
        *[F.col(c) for c in (AGGREGATE_PART, *_KEYS)],
        *[
            F.when(F.col(pair).isNotNull(), F.lit(1)).cast(st.LongType()).alias(what)
            for pair, what in (("_vehicle", VEHICLES), ("_user", USERS))
        ],
    )
    return per_part.unionByName(counted, allowMissingColumns=True)


def merge_aggregates(*aggregates: DataFrame) -> DataFrame:
    """The aggregates of a history from those of its consecutive parts, in order."""
    return (
        reduce(DataFrame.unionByName, aggregates)
        .groupBy(AGGREGATE_PART, *_KEYS)
        .agg(
            F.sum("rentals").alias("rentals"),
            F.sum("revenue").cast(TOTAL).alias("revenue"),
            F.min("lowest").alias("lowest"),
            F.max("highest").alias("highest"),
            F.sum("seconds").alias("seconds"),
            F.min("first_start").alias("first_start"),
            F.max("last_start").alias("last_start"),
            F.sum(VEHICLES).alias(VEHICLES),
            F.sum(USERS).alias(USERS),
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


def _amounts(total_name: str) -> list[Column]:
    """The rental count and the amounts of a row of the aggregates."""
    return [
        F.col("rentals").alias("rental_count"),
        F.col("revenue").alias(total_name),
        _average(F.col("revenue"), F.col("rentals")).alias("avg_rental_amount"),
        F.col("lowest").alias("min_rental_amount"),
        F.col("highest").alias("max_rental_amount"),
    ]


def _hours() -> list[Column]:
    return [
        _total_hours(F.col("seconds")).alias("total_rental_hours"),
        _avg_hours(F.col("seconds"), F.col("rentals")).alias("avg_rental_hours"),
    ]


def location_performance_of(aggregates: DataFrame, locations: DataFrame) -> DataFrame:
    """One row per pickup location with at least one valid rental."""
    per_location = _of(aggregates, "location").select(
        F.col("pickup_location").alias("location_id"),
        *_amounts("total_revenue"),
        F.col(VEHICLES).alias("unique_vehicles"),
        F.col(USERS).alias("unique_users"),
        *_hours(),
    )
    names = locations.select("location_id", "location_name", "city", "state")
    return per_location.join(F.broadcast(names), "location_id").select(
        *tables.table("location_performance").column_names
    )


def vehicle_type_performance_of(aggregates: DataFrame) -> DataFrame:
    """One row per vehicle_type with at least one valid rental."""
    return _of(aggregates, "vehicle_type").select(
        "vehicle_type",
        *_amounts("total_revenue"),
        F.col(VEHICLES).alias("unique_vehicles"),
        *_hours(),
    )


def location_vehicle_type_performance_of(aggregates: DataFrame) -> DataFrame:
    """One row per (pickup location, vehicle_type) with at least one valid rental."""
    return _of(aggregates, "location_type").select(
        F.col("pickup_location").alias("location_id"),
        "vehicle_type",
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
        *_amounts("total_spent"),
        *_hours(),
        F.col("first_start").alias("first_rental_start"),
        F.col("last_start").alias("last_rental_start"),
    )
    names = users.select("user_id", "first_name", "last_name", "email")
    by_spend = Window.orderBy(F.col("total_spent").desc(), F.col("user_id"))
    return (
        per_user.join(names, "user_id")
        .withColumn("spend_rank", F.row_number().over(by_spend))
        .select(*tables.table("user_metrics").column_names)
    )


def daily_metrics_of(aggregates: DataFrame) -> DataFrame:
    """One row per calendar date (wall clock) on which at least one valid rental started."""
    return _of(aggregates, "date").select(
        "rental_date",
        *_amounts("total_revenue"),
        F.col(USERS).alias("unique_users"),
        F.col(VEHICLES).alias("unique_vehicles"),
    )


def business_summary_of(aggregates: DataFrame) -> DataFrame:
    """Exactly one row: the headline numbers of the run's valid rentals (zeros and nulls when
    there is none). Each vehicle has one type and each user one row, so the distinct vehicles
    are those of the types added up, and the distinct users the user rows."""
    wanted = F.col(AGGREGATE_PART)
    summary, users, types = (wanted == p for p in ("summary", "user", "vehicle_type"))
    return aggregates.filter(summary | users | types).agg(
        F.coalesce(F.sum(F.when(summary, F.col("revenue"))), F.lit(0))
        .cast(TOTAL)
        .alias("total_revenue"),
        F.coalesce(F.sum(F.when(summary, F.col("rentals"))), F.lit(0)).alias("rental_count"),
        F.count_if(users).alias("unique_customers"),
        F.coalesce(F.sum(F.when(types, F.col(VEHICLES))), F.lit(0)).alias("unique_vehicles_rented"),
        _average(
            F.sum(F.when(summary, F.col("revenue"))), F.sum(F.when(summary, F.col("rentals")))
        ).alias("avg_rental_amount"),
        _avg_hours(
            F.sum(F.when(summary, F.col("seconds"))), F.sum(F.when(summary, F.col("rentals")))
        ).alias("avg_rental_hours"),
        F.to_date(F.min(F.when(summary, F.col("first_start")))).alias("first_rental_date"),
        F.to_date(F.max(F.when(summary, F.col("last_start")))).alias("last_rental_date"),
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


RUN_INPUTS_SCHEMA = st.StructType(
    [st.StructField(c.name, tables.spark_type(c.type)) for c in tables.table("run_inputs").columns]
)


def run_inputs(spark: SparkSession, statuses: Sequence) -> DataFrame:
    """One row per input file of the run (`jobs.InputStatus`, in manifest order): what it was,
    how many of its rows break a reject rule at run time, and whether the run used it. The
    rows are literals of the plan (no Python worker has to ship them)."""
    rows = [
        (
            order,
            s.dataset,
            s.source_file,
            s.content_sha256,
            # the UTC wall clock, as text: a datetime literal would be read in the local zone
            datetime.fromisoformat(s.accepted_at)
            .astimezone(UTC)
            .replace(tzinfo=None)
            .isoformat(" ")
            if s.accepted_at
            else None,
            s.rows,
            s.rejected_rows,
            s.status,
            s.reason,
        )
        for order, s in enumerate(statuses, 1)
    ]
    structs = [
        F.struct(
            *[
                F.lit(v).cast(f.dataType).alias(f.name)
                for v, f in zip(row, RUN_INPUTS_SCHEMA, strict=True)
            ]
        )
        for row in rows
    ]
    return spark.range(1).select(F.inline(F.array(*structs)))


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
