"""`carrental run`: validate → Spark jobs → crawl → summary SQL → report, in one process.

The same stages as the cloud workflow, with the same code: the upload validator, the Spark jobs
of carrental.spark on a local SparkSession, the Athena SQL of sql/ (through sqlglot into DuckDB)
and the report shaping of carrental.report.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from carrental import lake
from carrental.contracts import DATASETS
from carrental.local import catalog
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
    summary: list[tuple[str, str]]
    top_spenders: list[tuple]
    data_quality: list[tuple]
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds
    job_timings: dict[str, float] = field(default_factory=dict)  # Spark step -> seconds


def new_run_id(lake_root: Path) -> str:
    base = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (lake_root / "reports" / run_id).exists() or run_id == catalog.latest_published_run(
        lake_root
    ):
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def input_files(input_dir: Path) -> dict[str, Path]:
    files = {name: input_dir / f"{name}.csv" for name in DATASETS}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise StageError("validate", "missing input file(s): " + ", ".join(missing))
    return files


def validate_inputs(files: dict[str, Path], lake_root: Path) -> list:
    """Validate all four files; quarantine each rejected one; fail if any was rejected."""
    from carrental.validation import quarantine_names, validate_path

    verdicts, rejected = [], []
    for dataset, path in files.items():
        verdict = validate_path(path, dataset=dataset)
        verdicts.append(verdict)
        if not verdict.accepted:
            copy_key, report_key = quarantine_names(f"raw/{dataset}/{path.name}", dataset)
            (lake_root / copy_key).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, lake_root / copy_key)
            (lake_root / report_key).write_text(json.dumps(verdict.to_dict(), indent=1) + "\n")
            rejected.append((verdict, lake_root / report_key))
    if rejected:
        details = "\n\n".join(
            f"{v.render()}\n(quarantined; error report: {report})" for v, report in rejected
        )
        raise StageError("validate", f"{len(rejected)} input file(s) rejected:\n\n{details}")
    return verdicts


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
    files: dict[str, Path],
    lake_root: Path,
    run_id: str,
    log_file: Path,
    on_job: Callable[[str], None],
) -> tuple[dict[str, int], dict[str, float]]:
    """Run both jobs on one SparkSession; return each table's row count and the wall time of
    each step (the shared batch check, then each job)."""
    from pyspark.sql import SparkSession

    from carrental.spark.jobs import (
        check_batch,
        run_user_transaction_analysis,
        run_vehicle_location_performance,
    )
    from carrental.spark.session import build_session

    # An embedding process (a notebook, the test suite) may already have a session: use it and
    # leave it running. Otherwise start one whose JVM output goes to the run's log file.
    spark = SparkSession.getActiveSession()
    owns_session = spark is None
    if owns_session:
        with _jvm_output_to(log_file):
            spark = build_session("carrental-local", master="local[*]", shuffle_partitions=8)
        spark.sparkContext.setLogLevel("WARN")
    inputs = {name: str(path.resolve()) for name, path in files.items()}
    output = lake.processed_prefix(str(lake_root.resolve()))
    tables: dict[str, int] = {}
    timings: dict[str, float] = {}
    try:
        on_job("reading and checking the batch")
        started = time.perf_counter()
        # On EMR each job reads and checks the batch itself; in one process, once is enough.
        batch = check_batch(spark, inputs)
        timings["check_batch"] = time.perf_counter() - started
        try:
            for job_name, job in (
                ("vehicle_location_performance", run_vehicle_location_performance),
                ("user_transaction_analysis", run_user_transaction_analysis),
            ):
                on_job(job_name)
                started = time.perf_counter()
                tables.update(job(spark, inputs, output, run_id, batch=batch))
                timings[job_name] = time.perf_counter() - started
        finally:
            batch.unpersist()
    finally:
        if owns_session:
            spark.stop()
    return tables, timings


def _frame(con, sql_file: str, run_id: str) -> pd.DataFrame:
    sql = load_sql(sql_file)
    duck_sql = catalog.to_duckdb_sql(sql)
    cursor = con.execute(duck_sql, query_params(sql, run_id))
    # fetchall keeps DECIMAL as Decimal (a DataFrame conversion would make floats of money)
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def write_report(con, run_id: str, report_dir: Path) -> dict[str, pd.DataFrame]:
    """Run every report query on the staged catalog and write the CSVs (staged, then renamed).
    Returns the shaped reports, as written."""
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


class Progress:
    """Stage lines with elapsed time; a live spinner while a stage runs (on a terminal)."""

    def __init__(self, console: Console):
        self.console = console
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        started = time.perf_counter()
        with self.console.status(f"[bold]{name}[/]…", spinner="dots") as status:

            def detail(text: str) -> None:
                status.update(f"[bold]{name}[/]: {text} ({time.perf_counter() - started:.0f} s)")

            try:
                yield detail
            except BaseException:
                self.console.print(
                    f"[red]✗[/] {name} failed after {time.perf_counter() - started:.1f} s"
                )
                raise
        self.timings[name] = time.perf_counter() - started
        self.console.print(f"[green]✓[/] {name} ({self.timings[name]:.1f} s)")


def run_pipeline(
    input_dir: Path, lake_root: Path, run_id: str | None = None, console: Console | None = None
) -> RunResult:
    console = console or Console(stderr=True)
    lake_root.mkdir(parents=True, exist_ok=True)
    run_id = lake.check_run_id(run_id) if run_id else new_run_id(lake_root)
    if run_id == catalog.latest_published_run(lake_root):
        raise StageError(
            "start",
            f"run id {run_id} is the published run; rerun under a new id so that a failure "
            "cannot destroy the tables it publishes",
        )
    log_file = lake_root / "logs" / run_id / "spark.log"
    progress = Progress(console)
    console.print(f"run [bold]{run_id}[/] · input {input_dir} · lake {lake_root}")

    with progress.stage("validate") as detail:
        files = input_files(input_dir)
        for name in files:
            detail(name)
        validate_inputs(files, lake_root)

    with progress.stage("spark jobs") as detail:
        try:
            tables, job_timings = run_spark_jobs(files, lake_root, run_id, log_file, detail)
        except Exception as exc:
            raise StageError("spark jobs", f"{type(exc).__name__}: {exc}", log_file) from exc

    staged = lake_root / f"{catalog.CATALOG_FILE}.{run_id}.staging"
    report_dir = Path(lake.report_prefix(str(lake_root), run_id))
    try:
        with progress.stage("crawl"):
            try:
                catalog_counts = catalog.build_catalog(lake_root, run_id, staged)
            except Exception as exc:
                raise StageError("crawl", str(exc)) from exc
        with progress.stage("summary + report"):
            try:
                con = catalog.open_catalog(lake_root, staged)
                try:
                    reports = write_report(con, run_id, report_dir)
                finally:
                    con.close()
            except Exception as exc:
                raise StageError("summary + report", f"{type(exc).__name__}: {exc}") from exc
        catalog.publish(lake_root, run_id, staged, catalog_counts)
    finally:
        staged.unlink(missing_ok=True)

    # top_users.csv is ordered by spend_rank; the terminal shows its first five
    spenders = reports["top_users.csv"].head(5)
    quality = reports["data_quality.csv"]
    return RunResult(
        run_id=run_id,
        lake=lake_root,
        report_dir=report_dir,
        tables=tables,
        summary=list(
            reports["summary.csv"][["metric", "value"]].itertuples(index=False, name=None)
        ),
        top_spenders=list(
            spenders[
                ["spend_rank", "first_name", "last_name", "user_id", "rental_count", "total_spent"]
            ].itertuples(index=False, name=None)
        ),
        data_quality=list(quality[quality["violations"] != "0"].itertuples(index=False, name=None)),
        timings=progress.timings,
        job_timings=job_timings,
    )


def print_summary(result: RunResult, console: Console) -> None:
    headline = Table(title=f"Run {result.run_id}", show_header=False, title_justify="left")
    for metric, value in result.summary:
        headline.add_row(metric.replace("_", " "), value)
    console.print(headline)
    spenders = Table(title="Top 5 spenders", title_justify="left")
    for column in ("rank", "name", "user_id", "rentals", "spent"):
        spenders.add_column(column)
    for rank, first, last, user_id, rentals, spent in result.top_spenders:
        spenders.add_row(rank, f"{first} {last}", user_id, rentals, spent)
    console.print(spenders)
    quality = Table(title="Data quality (rules with violations)", title_justify="left")
    for column in ("dataset", "rule", "severity", "violations"):
        quality.add_column(column)
    for row in result.data_quality:
        quality.add_row(*row)
    if not result.data_quality:
        quality.add_row("all", "every rule", "", "0")
    console.print(quality)
    total = sum(result.timings.values())
    console.print(f"report: {result.report_dir}/ ({', '.join(REPORTS)})")
    console.print(f'query the tables: carrental query --lake {result.lake} "SELECT …"')
    console.print(f"done in {total:.1f} s")
