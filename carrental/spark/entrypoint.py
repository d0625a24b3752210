"""The command line shared by the EMR Serverless entry points in emr_jobs/ (identical flags).

Two ways to name the inputs:
- ``--manifest URI --lake ROOT``: a run manifest (carrental.inputs) over the lake's staged
  layer; the run id is the manifest's and the tables go to ROOT/processed. This is what the
  pipeline runs, on EMR Serverless and locally.
- ``--vehicles … --locations … --users … --rentals … --output PROCESSED --run-id ID``: CSV
  files or folders, parsed by Spark (an ad-hoc run of one job, no lake needed).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from pyspark.sql import SparkSession

from carrental import lake
from carrental.contracts import DEFAULT_REJECT_THRESHOLD
from carrental.inputs import Manifest
from carrental.spark.jobs import run_job
from carrental.spark.session import build_session
from carrental.spark.sources import CsvInputs, StagedInputs

log = logging.getLogger("carrental.spark")


def _run_id(text: str) -> str:
    try:
        return lake.check_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def build_parser(job: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"{job}.py",
        description=f"Spark job {job}: writes "
        + ", ".join(t for t, writer in lake.TABLES.items() if writer == job)
        + " as Parquet under <processed>/<table>/run_id=<run id>/, from a run manifest over "
        "the lake's staged layer (--manifest, --lake) or from CSV files (--vehicles, "
        "--locations, --users, --rentals, --output, --run-id).",
    )
    manifest = parser.add_argument_group("from a run manifest (what the pipeline runs)")
    manifest.add_argument(
        "--manifest", metavar="URI", help="the run's manifest.json: local path or s3:// URI"
    )
    manifest.add_argument(
        "--lake", metavar="ROOT", help="the lake root the manifest's paths are under"
    )
    csv_inputs = parser.add_argument_group("from CSV files (an ad-hoc run)")
    inputs = "a CSV file or a folder of them: local path or s3:// URI"
    csv_inputs.add_argument("--vehicles", metavar="URI", help=f"vehicles: {inputs}")
    csv_inputs.add_argument("--locations", metavar="URI", help=f"locations: {inputs}")
    csv_inputs.add_argument("--users", metavar="URI", help=f"users: {inputs}")
    csv_inputs.add_argument("--rentals", metavar="URI", help=f"rental_transactions: {inputs}")
    csv_inputs.add_argument(
        "--output",
        metavar="PROCESSED_URI",
        help="the lake's processed prefix, e.g. s3://bucket/processed",
    )
    csv_inputs.add_argument("--run-id", type=_run_id, metavar="ID", help="run id")
    csv_inputs.add_argument(
        "--reject-threshold",
        type=_fraction,
        default=DEFAULT_REJECT_THRESHOLD,
        help="hold back a rentals file when more than this fraction of its rows break a "
        f"reject rule ({DEFAULT_REJECT_THRESHOLD})",
    )
    return parser


CSV_FLAGS = ("vehicles", "locations", "users", "rentals", "output", "run_id")


def parse_args(job: str, argv: list[str] | None) -> argparse.Namespace:
    """Exactly one way to name the inputs, complete (argparse exits 2 otherwise)."""
    parser = build_parser(job)
    args = parser.parse_args(argv)
    given_csv = [f for f in CSV_FLAGS if getattr(args, f) is not None]
    if args.manifest or args.lake:
        if given_csv:
            flags = ", ".join("--" + f.replace("_", "-") for f in given_csv)
            parser.error(f"--manifest/--lake cannot be combined with {flags}")
        if not (args.manifest and args.lake):
            parser.error("--manifest and --lake go together")
    elif len(given_csv) != len(CSV_FLAGS):
        missing = [f for f in CSV_FLAGS if f not in given_csv]
        parser.error(
            "give --manifest and --lake, or every CSV flag (missing: "
            + ", ".join("--" + f.replace("_", "-") for f in missing)
            + ")"
        )
    return args


def read_manifest(spark: SparkSession, uri: str) -> Manifest:
    """The manifest, read through Spark (EMRFS on EMR, the local file system here)."""
    text = spark.read.text(lake.hadoop_literal(uri), wholetext=True).first()[0]
    return Manifest.from_json(text)


def _headline(exc: Exception) -> str:
    """The first informative line of an error (Py4J wraps JVM errors in a generic first line)."""
    lines = [line.strip(" :") for line in str(exc).splitlines() if line.strip(" :")]
    informative = [line for line in lines if not line.startswith("An error occurred while calling")]
    return (informative or lines or [""])[0]


class _RunIdOnEveryLine(logging.Filter):
    """Puts the run id on every log record, so that one search by run id finds a run's whole
    story in the job's logs (README, "Deploy to AWS")."""

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        record.run_id = self.run_id
        return True


def main(job: str, argv: list[str] | None = None) -> int:
    """Run `job`; 0 on success, 1 (after one clear ERROR line, then the traceback) on failure."""
    args = parse_args(job, argv)
    run_id = args.run_id or args.manifest
    # until the manifest is read, the run is known by its manifest's URI
    run_id_filter = _RunIdOnEveryLine(run_id)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s run_id=%(run_id)s: %(message)s")
    )
    handler.addFilter(run_id_filter)
    # a no-op in a process whose logging is set up already (an embedding one)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    started = time.perf_counter()
    try:
        embedded = SparkSession.getActiveSession() is not None
        spark = build_session(f"carrental-{job}")
        try:
            if args.manifest:
                manifest = read_manifest(spark, args.manifest)
                run_id = run_id_filter.run_id = manifest.run_id
                # no checked layer: nothing prunes it on S3 (docs/architecture.md, "Check once")
                source = StagedInputs(args.lake, manifest, keep_checked=False)
                output = lake.processed_prefix(args.lake)
            else:
                paths = {
                    "vehicles": args.vehicles,
                    "locations": args.locations,
                    "users": args.users,
                    "rental_transactions": args.rentals,
                }
                source, output = CsvInputs(paths, args.reject_threshold), args.output
            counts = run_job(job, spark, source, output, run_id)
        finally:
            if not embedded:  # a session this process already had is its owner's to stop
                spark.stop()
    except Exception as exc:
        log.error("%s run %s FAILED: %s: %s", job, run_id, type(exc).__name__, _headline(exc))
        log.error("full error of %s run %s", job, run_id, exc_info=True)
        return 1
    written = ", ".join(f"{table} {rows:,} rows" for table, rows in counts.items())
    log.info("%s run %s done in %.1f s: %s", job, run_id, time.perf_counter() - started, written)
    return 0
