"""Benchmark (not a test): `carrental query` writing a large result, its time and peak memory.

    .venv/bin/python benchmarks/query_output.py                  # 3 M rows, json csv markdown table
    .venv/bin/python benchmarks/query_output.py --rows 500000 --formats json

Builds a lake whose user_metrics table holds --rows rows (written by DuckDB, with the table's
columns: names with non-ASCII letters, DECIMAL money, timestamps), catalogs it, then runs
`carrental query --format F "SELECT * FROM user_metrics"` for each format in a fresh process
with stdout going to a temporary file. Peak RSS (VmHWM) is the whole process's: DuckDB runs in it.
Results are fetched in batches and written as they come, so memory should not grow with the
row count (the table view shows --max-rows rows and counts the rest as Arrow batches).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_stats import cpu_seconds, peak_rss_mb

USER_METRICS = """
    SELECT lpad(printf('%x', i), 10, '0') AS user_id,
        ['Lisa', 'Gëorge', 'Zoë', 'Ryan'][i % 4 + 1] AS first_name,
        'Smith-' || i AS last_name, 'user' || i || '@example.com' AS email,
        (i % 7 + 1)::BIGINT AS rental_count, (i % 5000 + 0.25)::DECIMAL(22,2) AS total_spent,
        (i % 900 + 0.5)::DECIMAL(16,6) AS avg_rental_amount,
        (i % 100)::DECIMAL(12,2) AS min_rental_amount, (i % 1000)::DECIMAL(12,2) AS max_rental_amount,
        (i % 300)::DOUBLE AS total_rental_hours, (i % 30)::DOUBLE / 3 AS avg_rental_hours,
        TIMESTAMP '2024-01-01' + INTERVAL (i % 100000) MINUTE AS first_rental_start,
        TIMESTAMP '2024-03-01' + INTERVAL (i % 100000) MINUTE AS last_rental_start,
        i + 1 AS spend_rank
    FROM range({rows}) t(i)"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=3_000_000)
    parser.add_argument("--formats", nargs="+", default=["json", "csv", "markdown", "table"])
    parser.add_argument("--child", nargs=2, metavar=("LAKE", "FORMAT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure_in_this_process(Path(args.child[0]), args.child[1])
    with tempfile.TemporaryDirectory(prefix="carrental-query-bench-") as scratch:
        lake_root = Path(scratch) / "lake"
        build_lake(lake_root, args.rows)
        print(f"{'format':<10} {'rows':>11} {'seconds':>8} {'MB out':>8} {'peak RSS':>10}")
        results = []
        for fmt in args.formats:
            command = [sys.executable, __file__, "--child", str(lake_root), fmt]
            measured = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
            results.append({"format": fmt, "rows": args.rows, **measured})
            print(
                f"{fmt:<10} {args.rows:>11,} {measured['seconds']:>8.1f} "
                f"{measured['output_mb']:>8.0f} {measured['peak_rss_mb']:>7.0f} MB"
            )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"(1-minute load average: {load:.1f} on {os.cpu_count()} CPUs)")
    print(json.dumps(results))
    return 0


def build_lake(lake_root: Path, rows: int) -> None:
    """Every table of the lake with one row, user_metrics with `rows`; then catalog and publish."""
    import duckdb

    from carrental import lake
    from carrental.local.store import LocalLake

    run_id = "bench"
    processed = Path(lake.processed_prefix(str(lake_root)))
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    started = time.perf_counter()
    for table in lake.TABLES:
        folder = Path(lake.table_run_path(str(processed), table, run_id))
        folder.mkdir(parents=True)
        select = USER_METRICS.format(rows=rows if table == "user_metrics" else 1)
        con.execute(f"COPY ({select}) TO '{folder / 'part-0.parquet'}' (FORMAT parquet)")
    con.close()
    LocalLake(lake_root).publish(run_id)
    print(f"built a lake with {rows:,} user_metrics rows in {time.perf_counter() - started:.0f} s")


def measure_in_this_process(lake_root: Path, fmt: str) -> int:
    from carrental.cli import main as carrental

    with tempfile.TemporaryFile("w+b") as sink:
        saved = os.dup(1)
        os.dup2(sink.fileno(), 1)
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        try:
            code = carrental(
                ["query", "--lake", str(lake_root), "--format", fmt, "SELECT * FROM user_metrics"]
            )
            sys.stdout.flush()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        seconds = time.perf_counter() - started
        output_mb = os.fstat(sink.fileno()).st_size / 1e6
    if code != 0:
        raise SystemExit(f"carrental query --format {fmt} exited {code}")
    print(
        json.dumps(
            {
                "seconds": seconds,
                "cpu_seconds": cpu_seconds() - cpu_before,
                "output_mb": output_mb,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
