"""`carrental ingest` and `carrental run`: the cloud workflow's lifecycle on a lake folder.

    ingest    validate each file (the upload validator), stage it as typed Parquet and add it
              to the lake's inputs; a rejected file goes to quarantine
    run       lock the lake → freeze the inputs in a manifest → both Spark jobs on a local
              SparkSession (the jobs of carrental.spark, on the staged files the manifest
              lists) → quarantine rental files the run-time gate held back → the report (the
              Athena SQL of carrental/sql/ through sqlglot into DuckDB, shaped by
              carrental.report) → publish (one atomic write of the publish record) → prune old runs

A run that fails at any stage, or is interrupted (Ctrl-C), publishes nothing: the previous
published run, its tables and its report stay what analysts see, and the run's own tables and
report are removed at once (its status says which stage failed and why). docs/architecture.md
describes the states and invariants.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from carrental import lake
from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD
from carrental.inputs import MissingInputs, held_back_report
from carrental.local import catalog
from carrental.local.interrupts import INTERRUPTS, Interrupted
from carrental.local.store import (
    SPARK_LOG,
    Ingested,
    LakeError,
    LocalLake,
    free_space,
    os_error_message,
    utc_now,
)
from carrental.report import REPORTS, load_sql, query_params, shape_report
from carrental.report_html import REPORT_PAGE, render_report


class InputError(ValueError):
    """The --input folder is not one with the four CSVs (found before the lake is touched)."""


class StageError(RuntimeError):
    """A stage failed and nothing was published. `stage` names it, the message says why in one
    line, `details` holds what is worth reading above it (the verdicts of rejected files),
    `log` points at Spark's log, `published` is the run analysts still see (None: none)."""

    def __init__(
        self, stage: str, message: str, log: Path | None = None, details: str | None = None
    ):
        super().__init__(message)
        self.stage = stage
        self.log = log
        self.details = details
        self.published: str | None = None

    def summary(self) -> str:
        details = f" (details in {self.log})" if self.log else ""
        return f"{self.stage} failed: {self}{details}; {unchanged(self.published)}"


def unchanged(published: str | None) -> str:
    return f"the published run {published} is unchanged" if published else "no run is published yet"


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

    @property
    def log_file(self) -> Path:
        return Path(lake.run_prefix(str(self.lake), self.run_id)) / SPARK_LOG


class Stages:
    """How a run reports its stages; the default says nothing (the CLI shows a live view)."""

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[Callable[[str], None]]:
        yield lambda detail: None

    def note(self, text: str) -> None:
        """A line worth reading while the run goes on (e.g. an input file held back)."""


def input_files(input_dir: Path) -> dict[str, Path]:
    """The four CSVs of an --input folder, by dataset; InputError says what is wrong."""
    if not input_dir.exists():
        raise InputError(f"the input folder {input_dir} does not exist")
    if not input_dir.is_dir():
        raise InputError(f"--input {input_dir} is a file: pass the folder that holds it")
    files = {name: input_dir / f"{name}.csv" for name in DATASETS}
    folders = [f"{p} is a folder, not a CSV file" for p in files.values() if p.is_dir()]
    if folders:
        raise InputError("; ".join(folders))
    missing = [p.name for p in files.values() if not p.exists()]
    if missing:
        raise InputError(
            f"the input folder {input_dir} has no {', '.join(missing)} (it needs "
            f"{', '.join(p.name for p in files.values())})"
        )
    others = [str(p) for p in files.values() if not p.is_file()]
    if others:
        raise InputError(f"{', '.join(others)}: not a regular file")
    return files


def ingest_files(
    store: LocalLake,
    files: list[tuple[Path, str | None]],
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
    on_file: Callable[[Ingested], None] = lambda ingested: None,
) -> list[Ingested]:
    """Ingest each (path, dataset or None) in order; every file is tried. A Ctrl-C ends as
    Interrupted, naming the file it stopped."""
    done = []
    for path, dataset in files:
        earlier = "; the files before it are done" if done else ""
        with INTERRUPTS.reported_as(
            f"interrupted while ingesting {path}: it was not added{earlier}"
        ):
            ingested = store.ingest(path, dataset=dataset, reject_threshold=reject_threshold)
        on_file(ingested)
        done.append(ingested)
    return done


def rejected_message(rejected: list[Ingested]) -> str:
    """The verdict of each rejected file, and where its evidence went."""
    return "\n\n".join(
        f"{i.verdict.render()}\n"
        + (
            f"(quarantined to {i.quarantined[0]}; error report: {i.quarantined[1]})"
            if i.quarantined
            else f"(not quarantined: {i.not_quarantined})"
        )
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


class _Stopped(Exception):
    """The Spark thread stops between steps once the run is interrupted."""


def run_spark_jobs(
    store: LocalLake, run_id: str, log_file: Path, on_job: Callable[[str], None]
) -> tuple[dict[str, int], list[dict], dict[str, float]]:
    """Run both jobs of the run's manifest on one SparkSession; return each table's row count,
    the held-back input files, and the wall time of each step (the shared check, each job).

    The jobs run in a thread of their own while this one waits, because Python delivers a
    Ctrl-C to the main thread as a KeyboardInterrupt wherever it is: inside a Py4J call it
    leaves that connection out of step with the JVM (the next call reads the previous one's
    answer: "functions.col does not exist in the JVM"), and the handler PySpark installs when
    it starts a session in the main thread calls the JVM from inside such a call (a Py4JError
    and its traceback). Started in another thread, PySpark installs no handler. On Ctrl-C this
    thread cancels the run's Spark jobs, running and future, waits for the Spark thread to stop
    (and to stop the session it started, which removes Spark's temporary folders), then raises
    KeyboardInterrupt."""
    from pyspark.sql import SparkSession

    # An embedding process (a notebook, the test suite) may already have a session: use it and
    # leave it running (asked here: a session is active per thread).
    running = SparkSession.getActiveSession()
    outcome: dict = {}
    stopping, finished = threading.Event(), threading.Event()

    def work() -> None:
        try:
            outcome["result"] = _spark_jobs(
                store, run_id, log_file, on_job, running, outcome, stopping
            )
        except BaseException as exc:  # handed to the waiting thread
            outcome["error"] = exc
        finally:
            finished.set()

    # Waiting on an Event, not Thread.join: a join that a KeyboardInterrupt cuts short can mark
    # the thread as ended while it still runs (CPython 3.11, the bpo-45274 fix).
    threading.Thread(target=work, name=f"spark jobs of {run_id}", daemon=True).start()
    try:
        while not finished.wait(0.2):
            pass
    except KeyboardInterrupt:
        stopping.set()
        on_job("stopping Spark (Ctrl-C)")
        cancelled = False
        while not finished.wait(0.2):
            if not cancelled and "spark" in outcome:  # once the session is up
                cancelled = True
                # Also the jobs the Spark thread starts before it sees `stopping` (Spark 4.0;
                # PySpark has no wrapper for it yet).
                with contextlib.suppress(Exception):  # e.g. the session is stopping already
                    outcome["spark"].sparkContext._jsc.sc().cancelJobGroupAndFutureJobs(
                        run_id, "Ctrl-C"
                    )
        raise
    error = outcome.get("error")
    if isinstance(error, Exception):
        folders = [store.processed, *outcome.get("temporary", [])]
        raise spark_failure(error, log_file, folders) from error
    if error is not None:
        raise error
    return outcome["result"]


def _spark_jobs(store, run_id, log_file, on_job, running, outcome, stopping):
    from pyspark import SparkFiles

    from carrental.spark.jobs import (
        JOBS,
        check_batch,
        run_job,
    )
    from carrental.spark.session import build_session
    from carrental.spark.sources import StagedInputs

    spark = running
    manifest = store.manifest(run_id)
    if spark is None:  # a session of our own, whose JVM output goes to the run's log file
        with _jvm_output_to(log_file):
            spark = build_session(
                "carrental-local",
                master="local[*]",
                shuffle_partitions=8,
                input_rows=sum(f.rows for f in manifest.inputs),
            )
        spark.sparkContext.setLogLevel("WARN")
    tables: dict[str, int] = {}
    timings: dict[str, float] = {}
    try:
        outcome["spark"] = spark
        # Spark's temporary folder (spark.local.dir): <it>/spark-<uuid>/userFiles-<uuid>
        outcome["temporary"] = [Path(SparkFiles.getRootDirectory()).parents[1]]
        # The job group is this thread's (PySpark pins a JVM thread to each Python thread).
        spark.sparkContext.setJobGroup(run_id, f"carrental run {run_id}", interruptOnCancel=True)
        root = str(store.root.resolve())
        source = StagedInputs(root, manifest, keep_checked=True)
        output = lake.processed_prefix(root)
        if stopping.is_set():
            raise _Stopped
        on_job("reading and checking the inputs")
        started = time.perf_counter()
        # On EMR each job reads and checks the inputs itself; in one process, once is enough.
        batch = check_batch(spark, source)
        timings["check_batch"] = time.perf_counter() - started
        try:
            for job in JOBS:
                if stopping.is_set():
                    raise _Stopped
                on_job(job)
                started = time.perf_counter()
                tables.update(run_job(job, spark, source, output, run_id, batch=batch))
                timings[job] = time.perf_counter() - started
            held_back = [
                {"source_file": s.source_file, "dataset": s.dataset, "reason": s.reason}
                | {"rows": s.rows, "rejected_rows": s.rejected_rows}
                | {"content_sha256": s.content_sha256}
                for s in batch.held_back
            ]
        finally:
            with contextlib.suppress(Exception):  # a cancelled run: stop() drops it anyway
                batch.unpersist()
    finally:
        if running is None:
            spark.stop()
    return tables, held_back, timings


# What the JVM says when the operating system refused a write (java.io.IOException texts).
_JAVA_OS_ERRORS = {
    "No space left on device": errno.ENOSPC,
    "Disk quota exceeded": errno.EDQUOT,
    "Read-only file system": errno.EROFS,
    "Permission denied": errno.EACCES,
}
_JAVA_FILE = re.compile(r"file:(/\S+?)\.?(?:\s|$)")


def spark_failure(exc: Exception, log_file: Path, folders: list[Path]) -> StageError:
    """A failed Spark stage in one line: a refused write (a full disk…) as the path and what to
    do; anything else as the error's first lines (the whole error goes to the log).

    `folders` are where Spark writes (the tables, its temporary folder): when the error names
    no file, the one with the least free space is named."""
    text = str(exc)
    for phrase, code in _JAVA_OS_ERRORS.items():
        if phrase in text:
            path = _JAVA_FILE.search(text)
            where = path[1] if path else min(folders, key=lambda f: free_space(f) or 0)
            return StageError(
                "spark jobs", os_error_message(OSError(code, os.strerror(code), where)), log_file
            )
    lines = []
    for line in text.splitlines():
        if line.lstrip().startswith("at ") or len(lines) == 3:
            break
        if line.strip(" :"):
            lines.append(line.strip(" :"))
    return StageError("spark jobs", f"{type(exc).__name__}: {' '.join(lines)}", log_file)


def hold_back(store: LocalLake, run_id: str, held_back: list[dict]) -> None:
    """Quarantine the rental files the run's gate left out and take them out of the inputs
    (unless a newer version of the file was ingested meanwhile: that one gets its own chance)."""
    for held in held_back:
        raw_copy = store.path(held["source_file"])
        store.quarantine(raw_copy, held["dataset"], held_back_report(run_id, held))
        with store.changing_inputs() as inputs:
            current = inputs.rentals.get(held["source_file"])
            if current is not None and current.sha256 == held["content_sha256"]:
                inputs.withdraw(held["source_file"])


def _frame(con, sql_file: str, run_id: str) -> pd.DataFrame:
    sql = load_sql(sql_file)
    duck_sql = catalog.to_duckdb_sql(sql)
    cursor = con.execute(duck_sql, query_params(sql, run_id))
    # fetchall keeps DECIMAL as Decimal (a DataFrame conversion would make floats of money)
    return pd.DataFrame(cursor.fetchall(), columns=[d[0] for d in cursor.description])


def write_report(con, run_id: str, report_dir: Path) -> dict[str, pd.DataFrame]:
    """Run every report query for the run and write the CSVs (staged, then renamed). Returns
    the shaped reports, as written. A failure leaves no staging folder."""
    staging = report_dir.with_name(f".{report_dir.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(parents=True)
        reports = {}
        for report_name, sql_file in REPORTS.items():
            reports[report_name] = shape_report(report_name, _frame(con, sql_file, run_id))
            reports[report_name].to_csv(staging / report_name, index=False)
        (staging / REPORT_PAGE).write_text(render_report(reports, run_id), encoding="utf-8")
        shutil.rmtree(report_dir, ignore_errors=True)
        staging.rename(report_dir)
    except BaseException as exc:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno and exc.filename is None:  # pandas' writes
            exc.filename = str(report_dir)
        raise
    return reports


class _Run:
    """One run under the lake's lock: its stages in order, and what a failure undoes."""

    def __init__(self, store: LocalLake, stages: Stages, reject_threshold: float) -> None:
        self.store = store
        self.stages = stages
        self.reject_threshold = reject_threshold
        self.stage = "start"
        self.run_id: str | None = None  # once the run's folder exists
        self.published_before = store.current_run()
        self.published = False
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[Callable[[str], None]]:
        self.stage = name
        started = time.perf_counter()
        with self.stages.stage(name) as detail:
            yield detail
        self.timings[name] = time.perf_counter() - started

    def ingest(self, files: dict[str, Path]) -> None:
        with self.step("ingest") as detail:
            ingested = ingest_files(
                self.store,
                [(path, name) for name, path in files.items()],
                self.reject_threshold,
                lambda i: detail(i.verdict.dataset),
            )
            rejected = [i for i in ingested if not i.verdict.accepted]
            if rejected:
                raise StageError(
                    "ingest",
                    f"{len(rejected)} input file(s) rejected (above), no run started",
                    details=rejected_message(rejected),
                )

    def start(self, run_id: str | None) -> str:
        store = self.store
        self.stage = "start"
        run_id = run_id or store.new_run_id()
        if store.run_folder(run_id).exists():
            raise StageError(
                "start",
                f"run id {run_id} was used before ({store.run_folder(run_id)}); "
                "choose another or leave --run-id out",
            )
        try:
            manifest = store.inputs().manifest(run_id, utc_now().isoformat(), self.reject_threshold)
        except MissingInputs as exc:
            raise StageError(
                "start", f"{exc}: add it with `carrental ingest --lake {store.root} FILE`"
            ) from None
        store.hold_for(run_id)
        store.start_run(manifest)
        self.run_id = run_id
        return run_id

    def through(self, files: dict[str, Path] | None, run_id: str | None) -> RunResult:
        store = self.store
        if files is not None:
            self.ingest(files)
        run_id = self.start(run_id)
        log_file = store.run_folder(run_id) / SPARK_LOG
        with self.step("spark jobs") as detail:
            try:
                tables, held, job_timings = run_spark_jobs(store, run_id, log_file, detail)
            except StageError:
                raise
            except Exception as exc:
                if INTERRUPTS.seen:
                    raise
                raise spark_failure(exc, log_file, [store.processed]) from exc
        if held:
            self.stage = "hold back"
            hold_back(store, run_id, held)
            for h in held:
                self.stages.note(f"{h['source_file']}: {h['reason']}")
        report_dir = store.report_folder(run_id)
        with self.step("summary + report"):
            try:
                con = catalog.open_catalog(store.root)
                INTERRUPTS.also_call(con.interrupt)
                try:
                    reports = write_report(con, run_id, report_dir)
                finally:
                    con.close()
            except (OSError, LakeError):
                raise
            except Exception as exc:
                if INTERRUPTS.seen:
                    raise
                raise StageError("summary + report", f"{type(exc).__name__}: {exc}") from exc
        INTERRUPTS.check()  # a Ctrl-C that a library swallowed still stops the run unpublished
        with self.step("publish"), INTERRUPTS.held():
            store.publish(run_id)
            self.published = True
            try:
                store.record_status(
                    run_id,
                    "published",
                    finished_at=utc_now().isoformat(),
                    tables=tables,
                    held_back=[h["source_file"] for h in held],
                    # the headline, kept for `carrental runs` after the report is pruned
                    summary=reports["summary.csv"].values.tolist(),
                )
            except OSError as exc:  # published all the same; the next run records it
                self.stages.note(f"could not record the run's status: {os_error_message(exc)}")
        self.stage = "prune"
        try:
            store.prune()
        except OSError as exc:  # the run is published; old runs stay until the next prune
            self.stages.note(f"could not remove old runs' files: {os_error_message(exc)}")
        return RunResult(
            run_id=run_id,
            lake=store.root,
            report_dir=report_dir,
            tables=tables,
            reports=reports,
            held_back=held,
            timings=self.timings,
            job_timings=job_timings,
        )

    def failed(self, exc: BaseException) -> BaseException:
        """Undo what the run wrote, record its end; the exception to raise instead of `exc`."""
        interrupted = isinstance(exc, KeyboardInterrupt) or INTERRUPTS.seen
        if self.published:
            if interrupted:
                return Interrupted(f"interrupted after publishing run {self.run_id}")
            return exc
        if interrupted:
            replacement = Interrupted(
                f"interrupted during {self.stage}; {unchanged(self.published_before)}"
            )
        elif isinstance(exc, OSError):  # said before the clean-up frees any space
            replacement = StageError(self.stage, os_error_message(exc))
        elif isinstance(exc, LakeError):
            replacement = StageError(self.stage, str(exc))
        else:
            replacement = exc
        if isinstance(replacement, StageError):
            replacement.published = self.published_before
        if self.run_id is not None:
            # A second Ctrl-C does not cut this short; a full disk may keep the status out.
            with contextlib.suppress(KeyboardInterrupt), INTERRUPTS.held():
                self.store.discard_outputs(self.run_id)
                if isinstance(replacement, StageError) and replacement.log:
                    _log_cause(replacement)
                with contextlib.suppress(OSError, LakeError):
                    self.store.record_status(
                        self.run_id,
                        "interrupted" if interrupted else "failed",
                        finished_at=utc_now().isoformat(),
                        failed_stage=self.stage,
                        error="Ctrl-C" if interrupted else str(replacement),
                    )
        return replacement


def _log_cause(error: StageError) -> None:
    """Append the whole error behind `error` to its log (a Java one runs to hundreds of lines);
    if that cannot be written either, the message stops pointing at the log."""
    cause = error.__cause__
    if cause is None:
        return
    try:
        with open(error.log, "a", encoding="utf-8") as log:
            log.write(f"\ncarrental run: {error.stage} failed:\n{type(cause).__name__}: {cause}\n")
    except OSError:
        error.log = None


def run_pipeline(
    lake_root: Path,
    input_dir: Path | None = None,
    run_id: str | None = None,
    stages: Stages | None = None,
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
) -> RunResult:
    """Run on the lake's current inputs (after ingesting the four files of `input_dir`, if
    given). Raises InputError or ValueError (bad arguments; the lake is untouched), StageError
    (nothing published), Interrupted (Ctrl-C; its message says whether the run was published),
    LakeBusy or LakeError."""
    files = input_files(input_dir) if input_dir is not None else None
    run_id = lake.check_run_id(run_id) if run_id else None
    store = LocalLake(lake_root)
    with INTERRUPTS, store.run_lock():
        with INTERRUPTS.reported_as("interrupted during start; nothing was published"):
            try:
                store.clean_leftovers()
                run = _Run(store, stages or Stages(), reject_threshold)
            except OSError as exc:
                raise LakeError(os_error_message(exc)) from None
        try:
            return run.through(files, run_id)
        except BaseException as exc:
            replacement = run.failed(exc)
            if replacement is exc:
                raise
            raise replacement from exc
