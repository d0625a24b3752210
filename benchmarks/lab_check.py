"""Check (not a test): both Spark jobs on the real lab data agree with an independent computation.

    .venv/bin/python benchmarks/lab_check.py DIR      # DIR holds the four lab CSVs

DIR is the folder of the public car-rental lab data (or any batch folder): vehicles.csv,
locations.csv, users.csv and rental_transactions.csv. Without it, or when a file is missing,
the check says so and exits 2 before Spark starts.

Runs both jobs on one local SparkSession (the batch checked once, as the local runner does),
then compares every output table, row for row and exactly (money to the cent, averages and
hours to the 6th decimal), with reference/kpis.py: plain Python for the row rules
and DuckDB for the aggregates, no code shared with carrental.spark. Prints the headline answers
(top location by revenue, most rented vehicle type, top spender) and exits 1 on any difference.
Tests cannot depend on the lab data, so this lives here.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))  # the independent reference (reference/) is not packaged

from carrental import lake  # noqa: E402
from carrental.contracts import DATASETS  # noqa: E402

SHOWN_DIFFERENCES = 5


def run_jobs(folder: Path, output: Path) -> dict[str, float]:
    from carrental.spark.jobs import (
        JOBS,
        check_batch,
        run_job,
    )
    from carrental.spark.session import build_session
    from carrental.spark.sources import CsvInputs

    spark = build_session("carrental-lab-check", master="local[*]")
    spark.sparkContext.setLogLevel("ERROR")
    inputs = CsvInputs({name: str(folder / f"{name}.csv") for name in DATASETS})
    seconds = {}
    try:
        started = time.perf_counter()
        batch = check_batch(spark, inputs)
        seconds["check_batch"] = time.perf_counter() - started
        for job in JOBS:
            started = time.perf_counter()
            run_job(job, spark, inputs, str(output), "lab", batch=batch)
            seconds[job] = time.perf_counter() - started
        batch.unpersist()
    finally:
        spark.stop()
    return seconds


def spark_rows(output: Path, table: str) -> tuple[list[str], list[tuple]]:
    import pyarrow.parquet as pq

    written = pq.read_table(lake.table_run_path(str(output), table, "lab"))
    rows = [tuple(r.values()) for r in written.to_pylist()]
    if table == "rental_rejects":  # the reference knows row numbers, not file URIs
        source = written.column_names.index("source_file")
        rows = [r[:source] + r[source + 1 :] for r in rows]
    return written.column_names, rows


def missing_inputs(folder: Path) -> list[str]:
    return [f"{name}.csv" for name in DATASETS if not (folder / f"{name}.csv").is_file()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "data", type=Path, help="folder with the lab's four CSVs (vehicles.csv, locations.csv, ...)"
    )
    args = parser.parse_args(argv)
    missing = missing_inputs(args.data)
    if missing:
        problem = f"lacks {', '.join(missing)}" if args.data.is_dir() else "is not a folder"
        print(
            f"lab_check: {args.data} {problem}: give the folder of the lab data, which holds "
            f"{', '.join(f'{name}.csv' for name in DATASETS)}",
            file=sys.stderr,
        )
        return 2
    # Spark, pyarrow and the reference are imported only now: a wrong folder is answered at
    # once, without loading them or starting a JVM.
    from reference.kpis import canonical, reference_tables

    with tempfile.TemporaryDirectory(prefix="lab_check_") as scratch:
        output = Path(scratch) / "processed"
        seconds = run_jobs(args.data, output)
        started = time.perf_counter()
        expected = reference_tables(args.data)
        reference_seconds = time.perf_counter() - started
        different = 0
        print(f"{'table':36} {'rows':>7}  agrees with the reference")
        for table in lake.TABLES:
            _, rows = spark_rows(output, table)
            mismatches = [
                (got, want)
                for got, want in zip(canonical(rows), canonical(expected[table]), strict=False)
                if got != want
            ]
            same = not mismatches and len(rows) == len(expected[table])
            different += not same
            print(f"{table:36} {len(rows):>7}  {'yes' if same else 'NO'}")
            for got, want in mismatches[:SHOWN_DIFFERENCES]:
                print(f"    spark     {got}\n    reference {want}")
        # ties as in sql/summary_report.sql: the lower location_id, the first vehicle_type
        _, locations = spark_rows(output, "location_performance")
        top_location = min(locations, key=lambda r: (-r[5], r[0]))
        _, vehicle_types = spark_rows(output, "vehicle_type_performance")
        top_type = min(vehicle_types, key=lambda r: (-r[1], r[0]))
        user_columns, users = spark_rows(output, "user_metrics")
        top_spender = next(r for r in users if r[user_columns.index("spend_rank")] == 1)
        _, quality = spark_rows(output, "data_quality")
    print()
    print(
        f"top location by revenue: {top_location[1]} ({top_location[2]}, location_id "
        f"{top_location[0]}): {top_location[5]} from {top_location[4]} rentals"
    )
    print(f"most rented vehicle type: {top_type[0]} ({top_type[1]} rentals, revenue {top_type[2]})")
    print(
        f"top spender: {top_spender[1]} {top_spender[2]} (user_id {top_spender[0]}): "
        f"{top_spender[5]} over {top_spender[4]} rentals"
    )
    broken = [f"{dataset}.{rule} ({severity}) {n}" for dataset, rule, severity, n in quality if n]
    print(f"data quality: {'; '.join(broken) or 'no rule broken'}")
    timings = ", ".join(f"{name} {s:.1f} s" for name, s in seconds.items())
    print(f"spark wall times: {timings}; reference {reference_seconds:.1f} s")
    print("ALL TABLES AGREE" if not different else f"{different} TABLES DIFFER")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main())
