"""The SparkSession both jobs run on: on EMR Serverless (cluster settings) or locally."""

from __future__ import annotations

import os

from pyspark.sql import SparkSession

# Settings that matter for correctness and cost, enforced everywhere (also on an already running session):
# wall-clock timestamps must mean the same on every machine, and adaptive query execution
# coalesces small shuffle partitions and turns joins with a small side into broadcast joins.
CORRECTNESS_SETTINGS = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    # Strict java.time parsing of the contracts' date patterns (LEGACY would accept 2024-2-1).
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
    # With pruning, the CSV reader splits only the columns a query uses and no longer notices a
    # row with too few or too many fields (carrental.spark.io reports those rows).
    "spark.sql.csv.parser.columnPruning.enabled": "false",
}

# Every session (local, spark-submit, EMR Serverless): shuffles sized from the data, not from a
# fixed count. spark-submit's default of 200 shuffle partitions wrote 51 Parquet files for the 60
# rows of rental_rejects; adaptive query execution merges small shuffle partitions up to the
# advisory size (parallelismFirst=false: respect that size instead of keeping one partition per
# core), and write_table rebalances each table before writing, so a small table is one file and
# a large one is split into files of about the advisory size. The jobs cache their checked
# inputs: without canChangeCachedPlanOutputPartitioning a cached plan keeps all 200 partitions.
# https://spark.apache.org/docs/4.0.2/sql-performance-tuning.html#coalescing-post-shuffle-partitions
SHUFFLE_SETTINGS = {
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.parallelismFirst": "false",
    "spark.sql.adaptive.advisoryPartitionSizeInBytes": "64m",
    "spark.sql.optimizer.canChangeCachedPlanOutputPartitioning": "true",
}

# Every session: no progress bars on the terminal (they garble logs and the README's commands).
QUIET_SETTINGS = {"spark.ui.showConsoleProgress": "false"}

# Local runs only: EMR Serverless sizes the driver and executors itself.
LOCAL_SETTINGS = {
    "spark.ui.enabled": "false",
    # A laptop's hostname often does not resolve (VPN, no DNS): talk to the driver over loopback.
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.host": "127.0.0.1",
    # In local mode the executors live in the driver JVM; 1 GB (the default) is too little for
    # cached inputs of a few million rentals. Only takes effect when this call starts the JVM.
    "spark.driver.memory": "4g",
    # Each job is a handful of small shuffles: a few partitions per core beats the default 200.
    "spark.sql.shuffle.partitions": str(2 * (os.cpu_count() or 2)),
}

# The local JVM's garbage collector. The default (G1) runs concurrent threads that a laptop's
# few cores pay for: measured on 2 cores, the serial collector gave the same run time at
# --scale 50 for 9 % less CPU, and 30 % less time at --scale 1 (benchmarks/results.md).
LOCAL_JAVA_OPTIONS = "-XX:+UseSerialGC"
# A run of few rows is mostly JVM warm-up: the optimising JIT compiler (C2) then costs more CPU
# than its faster code saves (measured at --scale 1: 40 % less time with the C1 compiler only;
# at --scale 50 C2 is worth its cost). Up to this many input rows a local run uses C1 only.
SMALL_INPUT_ROWS = 1_000_000
SMALL_INPUT_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


def build_session(
    app_name: str,
    *,
    master: str | None = None,
    shuffle_partitions: int | None = None,
    input_rows: int | None = None,
) -> SparkSession:
    """Get (or create) the session for a job.

    ``master=None`` (EMR Serverless, ``spark-submit``) leaves the cluster's settings alone apart
    from CORRECTNESS_SETTINGS, SHUFFLE_SETTINGS and QUIET_SETTINGS; ``master="local[*]"`` adds
    LOCAL_SETTINGS and the local JVM's options (LOCAL_JAVA_OPTIONS; for at most
    SMALL_INPUT_ROWS `input_rows`, SMALL_INPUT_JAVA_OPTIONS too). ``shuffle_partitions``
    overrides the shuffle partition count in both cases. JVM options take effect only when this
    call starts the JVM.
    """
    settings = {**QUIET_SETTINGS, **SHUFFLE_SETTINGS, **CORRECTNESS_SETTINGS}
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
        small = input_rows is not None and input_rows <= SMALL_INPUT_ROWS
        java = f"{LOCAL_JAVA_OPTIONS} {SMALL_INPUT_JAVA_OPTIONS}" if small else LOCAL_JAVA_OPTIONS
        settings = {**LOCAL_SETTINGS, "spark.driver.extraJavaOptions": java, **settings}
    if shuffle_partitions is not None:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    # getOrCreate hands back a running session as it is: set the runtime SQL settings on it.
    for key, value in settings.items():
        if key.startswith("spark.sql."):
            spark.conf.set(key, value)
    return spark
