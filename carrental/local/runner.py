"""`carrental ingest` and `carrental run`: the cloud workflow's lifecycle on a lake folder.

    ingest    validate each file (the upload validator), stage it as typed Parquet and add it
              to the lake's inputs; a rejected file goes to quarantine
    run       lock the lake → freeze the inputs in a manifest → both Spark jobs on a local
              SparkSession (the jobs of carrental.spark, on the staged files the manifest
              lists) → quarantine rental files the run-time gate held back → the report (the
              Athena SQL of sql/ through sqlglot into DuckDB, shaped by carrental.report) →
              publish (one atomic write of the publish record) → prune old runs

A run that fails at any stage publishes nothing: the previous published run, its tables and its
report stay what analysts see. docs/architecture.md describes the states and invariants.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from carrental import lake
from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD
from carrental.inputs import MissingInputs
from carrental.local import catalog
from carrental.local.store import Ingested, LocalLake, utc_now
from carrental.report import REPORTS, load_sql, query_params, shape_report
from carrental.report_html import REPORT_PAGE, render_report


class StageError(RuntimeError):
    """A stage failed; `stage` names it and `log` points at the details, if any."""

    def __init__(self, stage: str, message: str, log: Path | None = None):
        super().__init__(message)
        self.stage = stage
        self.log = log


@dataclass
class RunResult:
    run_id: str
    lake: Path
    report_dir: Path
    tables: dict[str, int]
    reports: dict[str, pd.DataFrame]
    held_back: list[dict]  # run_inputs rows of the rental files the gate left out
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    job_timings: dict[str, float] = field(default_factory=dict)  # Spark step -> seconds


class Stages:
    """How a run reports its stages; the default says nothing (the CLI shows a live view)."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        yield lambda detail: None

    def note(self, text: str) -> None:
        """A line worth reading while the run goes on (e.g. an input file held back)."""


def _timed(stages: Stages, timings: dict[str, float], name: str):
    @contextlib.contextmanager
    def stage() -> Iterator[Callable[[str], None]]:
        started = time.perf_counter()
        with stages.stage(name) as detail:
            yield detail
        timings[name] = time.perf_counter() - started

    return stage()


def input_files(input_dir: Path) -> dict[str, Path]:
    if not input_dir.is_dir():
        raise StageError("ingest", f"the input folder {input_dir} does not exist")
    files = {name: input_dir / f"{name}.csv" for name in DATASETS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise StageError("ingest", "missing input file(s): " + ", ".join(missing))
    return files


def ingest_files(
    store: LocalLake,
    files: list[tuple[Path, str | None]],
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
    on_file: Callable[[Ingested], None] = lambda ingested: None,
) -> list[Ingested]:
    """Ingest each (path, dataset or None) in order; every file is tried."""
    done = []
    for path, dataset in files:
        ingested = store.ingest(path, dataset=dataset, reject_threshold=reject_threshold)
        on_file(ingested)
        done.append(ingested)
    return done


def rejected_message(rejected: list[Ingested]) -> str:
    return f"{len(rejected)} input file(s) rejected:\n\n" + "\n\n".join(
        f"{i.verdict.render()}\n(quarantined to {i.quarantined[0]}; error report: "
        f"{i.quarantined[1]})"
        for i in rejected
    )


@contextlib.contextmanager
def _jvm_output_to(log_file: Path) -> Iterator[None]:
    """Send everything the JVM prints to `log_file`: the JVM inherits fds 1 and 2 when PySpark
    launches it, so they point at the log while the session starts."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_file, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def run_spark_jobs(
    store: LocalLake, run_id: str, log_file: Path, on_job: Callable[[str], None]
) -> tuple[dict[str, int], list[dict], dict[str, float]]:
    """Run both jobs of the run's manifest on one SparkSession; return each table's row count,
    the held-back input files, and the wall time of each step (the shared check, each job)."""
    from pyspark.sql import SparkSession

    from carrental.spark.jobs import (
        check_batch,
        run_user_transaction_analysis,
        run_vehicle_location_performance,
    )
    from carrental.spark.session import build_session
    from carrental.spark.sources import StagedInputs

    # An embedding process (a notebook, the test suite) may already have a session: use it and
    # leave it running. Otherwise start one whose JVM output goes to the run's log file.
    spark = SparkSession.getActiveSession()
    owns_session = spark is None
    manifest = store.manifest(run_id)
    if owns_session:
        with _jvm_output_to(log_file):
            spark = build_session(
                "carrental-local",
                master="local[*]",
                shuffle_partitions=8,
                input_rows=sum(f.rows for f in manifest.inputs),
            )
        spark.sparkContext.setLogLevel("WARN")
    root = str(store.root.resolve())
    source = StagedInputs(root, manifest, keep_checked=True)
    output = lake.processed_prefix(root)
    tables: dict[str, int] = {}
    timings: dict[str, float] = {}
    try:
        on_job("reading and checking the inputs")
        started = time.perf_counter()
        # On EMR each job reads and checks the inputs itself; in one process, once is enough.
        batch = check_batch(spark, source)
        timings["check_batch"] = time.perf_counter() - started
        try:
            for job_name, job in (
                ("vehicle_location_performance", run_vehicle_location_performance),
                ("user_transaction_analysis", run_user_transaction_analysis),
            ):
                on_job(job_name)
                started = time.perf_counter()
                tables.update(job(spark, source, output, run_id, batch=batch))
                timings[job_name] = time.perf_counter() - started
            held_back = [
                {"source_file": s.source_file, "dataset": s.dataset, "reason": s.reason}
                | {"rows": s.rows, "rejected_rows": s.rejected_rows, "sha256": s.content_sha256}
                for s in batch.held_back
            ]
        finally:
            batch.unpersist()
    finally:
        if owns_session:
            spark.stop()
    return tables, held_back, timings


def hold_back(store: LocalLake, run_id: str, held_back: list[dict]) -> None:
    """Quarantine the rental files the run's gate left out and take them out of the inputs
    (unless a newer version of the file was ingested meanwhile: that one gets its own chance)."""
    for held in held_back:
        report = {
            "source": held["source_file"],
            "dataset": held["dataset"],
            "verdict": "held_back",
            "accepted": False,
            "run_id": run_id,
            "rows": held["rows"],
            "rejected_rows": held["rejected_rows"],
            "sha256": held["sha256"],
            "reason": held["reason"],
        }
        raw_copy = store.path(held["source_file"])
        store.quarantine(raw_copy, held["dataset"], report)
        with store.changing_inputs() as inputs:
            current = inputs.rentals.get(held["source_file"])
            if current is not None and current.sha256 == held["sha256"]:
                inputs.withdraw(held["source_file"])


def _frame(con, sql_file: str, run_id: str) -> pd.DataFrame:
    sql = load_sql(sql_file)
    duck_sql = catalog.to_duckdb_sql(sql)
    cursor = con.execute(duck_sql, query_params(sql, run_id))
    # fetchall keeps DECIMAL as Decimal (a DataFrame conversion would make floats of money)
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def write_report(con, run_id: str, report_dir: Path) -> dict[str, pd.DataFrame]:
    """Run every report query for the run and write the CSVs (staged, then renamed). Returns
    the shaped reports, as written."""
    staging = report_dir.with_name(f".{report_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    reports = {}
    for report_name, sql_file in REPORTS.items():
        reports[report_name] = shape_report(report_name, _frame(con, sql_file, run_id))
        reports[report_name].to_csv(staging / report_name, index=False)
    (staging / REPORT_PAGE).write_text(render_report(reports, run_id), encoding="utf-8")
    shutil.rmtree(report_dir, ignore_errors=True)
    staging.rename(report_dir)
    return reports


def run_pipeline(
    lake_root: Path,
    input_dir: Path | None = None,
    run_id: str | None = None,
    stages: Stages | None = None,
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
) -> RunResult:
    """Run on the lake's current inputs (after ingesting the four files of `input_dir`, if
    given). Raises StageError (nothing published), LakeBusy or LakeError."""
    stages = stages or Stages()
    store = LocalLake(lake_root)
    timings: dict[str, float] = {}
    with store.run_lock():
        store.clean_leftovers()
        if input_dir is not None:
            with _timed(stages, timings, "ingest") as detail:
                files = input_files(input_dir)
                ingested = ingest_files(
                    store,
                    [(path, name) for name, path in files.items()],
                    reject_threshold,
                    lambda i: detail(i.verdict.dataset),
                )
                rejected = [i for i in ingested if not i.verdict.accepted]
                if rejected:
                    raise StageError("ingest", rejected_message(rejected))
        run_id = lake.check_run_id(run_id) if run_id else store.new_run_id()
        if store.run_folder(run_id).exists():
            raise StageError(
                "start",
                f"run id {run_id} was used before ({store.run_folder(run_id)}); "
                "choose another or leave --run-id out",
            )
        try:
            manifest = store.inputs().manifest(run_id, utc_now().isoformat(), reject_threshold)
        except MissingInputs as exc:
            raise StageError(
                "start", f"{exc}: add it with `carrental ingest --lake {lake_root} FILE`"
            ) from None
        store.hold_for(run_id)
        store.start_run(manifest)
        log_file = store.run_folder(run_id) / "spark.log"
        failed_stage = "spark jobs"
        try:
            with _timed(stages, timings, "spark jobs") as detail:
                try:
                    tables, held, job_timings = run_spark_jobs(store, run_id, log_file, detail)
                except Exception as exc:
                    raise StageError(
                        "spark jobs", f"{type(exc).__name__}: {exc}", log_file
                    ) from exc
            failed_stage = "hold back"
            if held:
                hold_back(store, run_id, held)
                for h in held:
                    stages.note(f"held back {h['source_file']}: {h['reason']}")
            failed_stage = "summary + report"
            report_dir = store.report_folder(run_id)
            with _timed(stages, timings, "summary + report"):
                try:
                    con = catalog.open_catalog(lake_root)
                    try:
                        reports = write_report(con, run_id, report_dir)
                    finally:
                        con.close()
                except Exception as exc:
                    raise StageError("summary + report", f"{type(exc).__name__}: {exc}") from exc
            failed_stage = "publish"
            with _timed(stages, timings, "publish"):
                try:
                    store.publish(run_id)
                except OSError as exc:
                    raise StageError("publish", f"{type(exc).__name__}: {exc}") from exc
                store.record_status(
                    run_id,
                    "published",
                    finished_at=utc_now().isoformat(),
                    tables=tables,
                    held_back=[h["source_file"] for h in held],
                )
        except BaseException as exc:
            state = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
            stage = exc.stage if isinstance(exc, StageError) else failed_stage
            with contextlib.suppress(Exception):
                store.record_status(
                    run_id,
                    state,
                    finished_at=utc_now().isoformat(),
                    failed_stage=stage,
                    error=str(exc),
                )
            raise
        try:
            store.prune()
        except OSError as exc:  # the run is published; old runs stay until the next prune
            stages.note(f"could not remove old runs' files: {exc}")
    return RunResult(
        run_id=run_id,
        lake=lake_root,
        report_dir=report_dir,
        tables=tables,
        reports=reports,
        held_back=held,
        timings=timings,
        job_timings=job_timings,
    )
