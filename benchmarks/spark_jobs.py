"""Benchmark (not a test): wall time, CPU and memory of the two Spark jobs on generated batches.

    .venv/bin/python benchmarks/spark_jobs.py                      # --scale 1 and --scale 50
    .venv/bin/python benchmarks/spark_jobs.py --scale 0.1 --scale 500

For each scale: generate a batch (seed 1, 2 % dirty rows) into a temporary folder, then, in a
fresh process (so every scale starts with a cold JVM, as a real run does), start a local
SparkSession and run vehicle_location_performance then user_transaction_analysis, each checking
the batch itself as the EMR entry points do. Reports wall seconds per step, the JVM's CPU
seconds and its peak resident memory (VmHWM: the Python driver's own RSS is small and not
counted). --shared also runs both jobs on one checked batch, as the local runner can.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_stats import cpu_seconds, peak_rss_mb

from carrental.contracts import DATASETS


def measure(batch: Path, shared: bool) -> dict[str, float]:
    """Runs in the child process: one cold session, the jobs, the numbers."""
    from carrental.spark.jobs import (
        JOBS,
        check_batch,
        run_job,
    )
    from carrental.spark.session import build_session
    from carrental.spark.sources import CsvInputs

    inputs = CsvInputs({name: str(batch / f"{name}.csv") for name in DATASETS})
    output = str(batch / "processed")
    started = time.perf_counter()
    spark = build_session("carrental-benchmark", master="local[*]")
    spark.sparkContext.setLogLevel("ERROR")
    pid = spark._jvm.ProcessHandle.current().pid()
    seconds = {"session start": time.perf_counter() - started}
    for job in JOBS:
        started = time.perf_counter()
        run_job(job, spark, inputs, output, "bench")
        seconds[job] = time.perf_counter() - started
    if shared:
        started = time.perf_counter()
        checked = check_batch(spark, inputs)
        for job in JOBS:
            run_job(job, spark, inputs, output, "bench-shared", batch=checked)
        checked.unpersist()
        seconds["both jobs, one checked batch"] = time.perf_counter() - started
    seconds["JVM CPU s"] = cpu_seconds(pid)
    seconds["JVM peak MB"] = peak_rss_mb(pid)
    spark.stop()
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable (1 and 50)")
    parser.add_argument("--shared", action="store_true", help="also time one shared batch")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.shared)))
        return 0
    from carrental.generate import generate

    for scale in args.scale or [1, 50]:
        with tempfile.TemporaryDirectory(prefix="spark_bench_") as scratch:
            counts = generate(Path(scratch), scale=scale, seed=1, dirty_rate=0.02)
            child = subprocess.run(
                [sys.executable, __file__, "--child", scratch]
                + (["--shared"] if args.shared else []),
                capture_output=True,
                text=True,
                check=True,
            )
            numbers = json.loads(child.stdout.strip().splitlines()[-1])
        print(
            f"--scale {scale:g}: {counts['rental_transactions']:,} rentals, "
            f"{counts['vehicles']:,} vehicles, {counts['users']:,} users"
        )
        for name, value in numbers.items():
            print(f"  {name:32} {value:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
