"""The engine floor: the six KPI tables of the Spark jobs in the least PySpark that computes them.

    .venv/bin/python benchmarks/spark_floor.py --input DIR --out DIR   # prints seconds, JVM CPU s

Reads each of the four CSVs once with an explicit all-string schema (the contracts' columns, in
file order), casts the few columns the tables use, keeps the valid rentals (keys present, end after start, amount >= 0, vehicle, user
and pickup location known: on a clean generated batch these are exactly the rentals that break
no contract rule), joins the dimensions by broadcast and writes location_performance,
vehicle_type_performance, location_vehicle_type_performance, user_metrics, daily_metrics and
business_summary as Parquet, with the columns of docs/tables.md. No rule flags, no rejects, no
data quality, no lake: the least a Spark job must do for these tables, so `carrental run` /
this script says what our rules, staging and bookkeeping cost on top of the engine.

It shares no code with carrental.spark (the tables' columns and formulas are spelled out here;
only the input files' header comes from carrental.contracts), and runs
its session as `carrental run` does locally (local[*], UTC, the same driver memory and shuffle
partitions, no UI), so that the ratio compares work, not settings. benchmarks/run.py checks on
every run that its tables equal the pipeline's.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from process_stats import cpu_seconds, peak_rss_mb
from pyspark import SparkContext
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st
from reference_command import run_reference

from carrental.contracts import DATASETS

MONEY = st.DecimalType(12, 2)
HOURS = st.DecimalType(22, 6)
SECONDS = st.DecimalType(20, 0)


def session() -> SparkSession:
    return (
        SparkSession.builder.master("local[*]")
        .appName("engine-floor")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "4g")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2)))
        .getOrCreate()
    )


def read(spark: SparkSession, folder: Path, name: str) -> DataFrame:
    schema = st.StructType([st.StructField(c, st.StringType()) for c in DATASETS[name].header])
    return spark.read.csv(
        str(folder / f"{name}.csv"), header=True, schema=schema, quote='"', escape='"'
    )


def total_hours() -> F.Column:
    return (F.sum("seconds").cast(SECONDS) / F.lit(3600)).cast(HOURS)


def avg_hours() -> F.Column:
    return (F.sum("seconds").cast(SECONDS) / (F.count(F.lit(1)).cast(SECONDS) * 3600)).cast(HOURS)


def amount_stats(total: str) -> list[F.Column]:
    return [
        F.count(F.lit(1)).alias("rental_count"),
        F.sum("amount").alias(total),
        F.avg("amount").alias("avg_rental_amount"),
        F.min("amount").alias("min_rental_amount"),
        F.max("amount").alias("max_rental_amount"),
    ]


def tables(spark: SparkSession, folder: Path) -> dict[str, DataFrame]:
    vehicles = read(spark, folder, "vehicles").select("vehicle_id", "vehicle_type")
    locations = read(spark, folder, "locations").select(
        F.col("location_id").cast("int").alias("location_id"), "location_name", "city", "state"
    )
    users = read(spark, folder, "users").select("user_id", "first_name", "last_name", "email")
    time_format = "yyyy-MM-dd HH:mm:ss"
    rentals = (
        read(spark, folder, "rental_transactions")
        .select(
            "user_id",
            "vehicle_id",
            F.to_timestamp_ntz("rental_start_time", F.lit(time_format)).alias("start"),
            F.to_timestamp_ntz("rental_end_time", F.lit(time_format)).alias("end"),
            F.col("pickup_location").cast("int").alias("pickup_location"),
            F.col("total_amount").cast(MONEY).alias("amount"),
        )
        .filter(
            F.col("user_id").isNotNull()
            & F.col("vehicle_id").isNotNull()
            & (F.col("end") > F.col("start"))
            & (F.col("amount") >= 0)
        )
        .join(F.broadcast(vehicles), "vehicle_id")
        .join(F.broadcast(users.select("user_id")), "user_id", "left_semi")
        .join(
            F.broadcast(locations.select(F.col("location_id").alias("pickup_location"))),
            "pickup_location",
            "left_semi",
        )
        .withColumn("seconds", F.timestamp_diff("SECOND", "start", "end"))
    )
    per_user = rentals.groupBy("user_id").agg(
        *amount_stats("total_spent"),
        total_hours().alias("total_rental_hours"),
        avg_hours().alias("avg_rental_hours"),
        F.min("start").alias("first_rental_start"),
        F.max("start").alias("last_rental_start"),
    )
    return {
        "location_performance": rentals.groupBy(F.col("pickup_location").alias("location_id"))
        .agg(
            *amount_stats("total_revenue"),
            F.count_distinct("vehicle_id").alias("unique_vehicles"),
            F.count_distinct("user_id").alias("unique_users"),
            total_hours().alias("total_rental_hours"),
            avg_hours().alias("avg_rental_hours"),
        )
        .join(F.broadcast(locations), "location_id")
        .select(
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
        ),
        "vehicle_type_performance": rentals.groupBy("vehicle_type").agg(
            *amount_stats("total_revenue"),
            F.count_distinct("vehicle_id").alias("unique_vehicles"),
            total_hours().alias("total_rental_hours"),
            avg_hours().alias("avg_rental_hours"),
        ),
        "location_vehicle_type_performance": rentals.groupBy(
            F.col("pickup_location").alias("location_id"), "vehicle_type"
        ).agg(
            F.count(F.lit(1)).alias("rental_count"),
            F.sum("amount").alias("total_revenue"),
            avg_hours().alias("avg_rental_hours"),
        ),
        "user_metrics": per_user.join(users, "user_id")
        .withColumn(
            "spend_rank",
            F.row_number().over(Window.orderBy(F.col("total_spent").desc(), "user_id")),
        )
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
        ),
        "daily_metrics": rentals.groupBy(F.to_date("start").alias("rental_date")).agg(
            *amount_stats("total_revenue"),
            F.count_distinct("user_id").alias("unique_users"),
            F.count_distinct("vehicle_id").alias("unique_vehicles"),
        ),
        "business_summary": rentals.agg(
            F.coalesce(F.sum("amount"), F.lit(0).cast(st.DecimalType(22, 2))).alias(
                "total_revenue"
            ),
            F.count(F.lit(1)).alias("rental_count"),
            F.count_distinct("user_id").alias("unique_customers"),
            F.count_distinct("vehicle_id").alias("unique_vehicles_rented"),
            F.avg("amount").alias("avg_rental_amount"),
            avg_hours().alias("avg_rental_hours"),
            F.min(F.to_date("start")).alias("first_rental_date"),
            F.max(F.to_date("start")).alias("last_rental_date"),
        ),
    }


def write_tables(input_dir: Path, out_dir: Path) -> dict[str, float]:
    """Write every table to out_dir/<table>/; return the JVM's CPU seconds and peak memory."""
    spark = session()
    spark.sparkContext.setLogLevel("ERROR")
    for name, frame in tables(spark, input_dir).items():
        frame.write.mode("overwrite").parquet(str(out_dir / name))
    spark.stop()
    jvm = SparkContext._gateway.proc.pid  # the launcher execs java: the same process
    return {"jvm_cpu_s": cpu_seconds(jvm), "jvm_peak_mb": peak_rss_mb(jvm)}


if __name__ == "__main__":
    sys.exit(run_reference(__doc__.split("\n", 1)[0], write_tables))
