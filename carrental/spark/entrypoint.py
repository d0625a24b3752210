"""The command line shared by the EMR Serverless entry points in emr_jobs/ (identical flags)."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pyspark.sql import SparkSession

from carrental import lake
from carrental.spark.jobs import run_user_transaction_analysis, run_vehicle_location_performance
from carrental.spark.session import build_session

JOBS = {
    "vehicle_location_performance": run_vehicle_location_performance,
    "user_transaction_analysis": run_user_transaction_analysis,
}

log = logging.getLogger("carrental.spark")


def _run_id(text: str) -> str:
    try:
        return lake.check_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser(job: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{job}.py",
        description=f"Spark job {job}: reads the four raw CSVs, writes "
        + ", ".join(t for t, writer in lake.TABLES.items() if writer == job)
        + " as Parquet under OUTPUT/<table>/run_id=<RUN_ID>/.",
    )
    inputs = "a CSV file or a folder of them: local path or s3:// URI"
    parser.add_argument("--vehicles", required=True, metavar="URI", help=f"vehicles: {inputs}")
    parser.add_argument("--locations", required=True, metavar="URI", help=f"locations: {inputs}")
    parser.add_argument("--users", required=True, metavar="URI", help=f"users: {inputs}")
    parser.add_argument(
        "--rentals", required=True, metavar="URI", help=f"rental_transactions: {inputs}"
    )
    parser.add_argument(
        "--output",
        required=True,
        metavar="PROCESSED_URI",
        help="the lake's processed prefix, e.g. s3://bucket/processed",
    )
    parser.add_argument("--run-id", required=True, type=_run_id, metavar="ID", help="run id")
    return parser


def _headline(exc: Exception) -> str:
    """The first informative line of an error (Py4J wraps JVM errors in a generic first line)."""
    lines = [line.strip(" :") for line in str(exc).splitlines() if line.strip(" :")]
    informative = [line for line in lines if not line.startswith("An error occurred while calling")]
    return (informative or lines or [""])[0]


def main(job: str, argv: list[str] | None = None) -> int:
    """Run `job`; 0 on success, 1 (after one clear ERROR line, then the traceback) on failure."""
    args = build_parser(job).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    inputs = {
        "vehicles": args.vehicles,
        "locations": args.locations,
        "users": args.users,
        "rental_transactions": args.rentals,
    }
    started = time.perf_counter()
    try:
        embedded = SparkSession.getActiveSession() is not None
        spark = build_session(f"carrental-{job}")
        try:
            counts = JOBS[job](spark, inputs, args.output, args.run_id)
        finally:
            if not embedded:  # a session this process already had is its owner's to stop
                spark.stop()
    except Exception as exc:
        log.error("%s run %s FAILED: %s: %s", job, args.run_id, type(exc).__name__, _headline(exc))
        log.error("full error of %s run %s", job, args.run_id, exc_info=True)
        return 1
    written = ", ".join(f"{table} {rows:,} rows" for table, rows in counts.items())
    log.info(
        "%s run %s done in %.1f s: %s", job, args.run_id, time.perf_counter() - started, written
    )
    return 0
