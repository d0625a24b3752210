"""`make bench`: how fast, how cheap and how it scales, written to benchmarks/results.md.

    .venv/bin/python benchmarks/run.py                 # --scale 1 and 50
    .venv/bin/python benchmarks/run.py --with-500      # also --scale 500 (10 M rentals: long)
    .venv/bin/python benchmarks/run.py --scale 0.1 --out /tmp/results.md --json /tmp/r.json
    .venv/bin/python benchmarks/run.py --render /tmp/r.json   # results.md again, from figures

For each scale, on a clean generated batch (seed 1, no injected defects, so that the references
select the same rentals as the jobs), each measurement in a fresh process:

1. upload validation of rental_transactions.csv on one core: alone in a warm process (a small
   file validated first, as in a warm Lambda container) and in a fresh one, and validation +
   staging (what `carrental ingest` does per file) warm; against `wc -l`
   (benchmarks/validation_throughput.py);
2. `carrental run --input DIR` into a fresh lake (run_pipeline): every stage, every Spark step,
   the whole process, peak RSS of Python and of the JVM, the JVM's CPU seconds, and where
   Spark's time went (its event log);
3. the engine floor (benchmarks/spark_floor.py: the six KPI tables in minimal PySpark, same
   CSVs) and plain DuckDB (benchmarks/duckdb_kpis.py), each as a process; their tables are
   checked against ours (the floor's row for row, DuckDB's totals) before any ratio is shown;
4. an EMR Serverless cost estimate per run: both entry points of emr_jobs/ run one after the
   other, each in its own process on the run's manifest as EMR runs them (each job checks the
   inputs itself), from the JVMs' CPU seconds (see COST_ASSUMPTIONS).

At --scale 50, the daily run: the scale's rentals split into a history file and a last file of
a --scale 1 day's rentals (20,080); a lake that has run on the history gets the day's file
(ingest + run), against a fresh lake that ingests everything and runs, in the same benchmark
run; the two must publish the same tables. Its EMR cost is measured too.

The results, the machine (cores, RAM, load average at start and end) and the date go to
benchmarks/results.md; the command exits 1 if a target is missed. --json also writes the raw
figures (benchmarks/baseline.json holds those of the code before issue 13, measured with this
script, for the before/after columns).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from process_stats import cpu_seconds, peak_rss_mb
from validation_throughput import compare

from carrental.tables import JOBS, KPI_TABLES

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
RESULTS = BENCHMARKS / "results.md"
BASELINE = BENCHMARKS / "baseline.json"
SEED = 1
RENTALS = "rental_transactions"
DIMENSIONS = ("vehicles", "locations", "users")
DAILY_SCALE, DAILY_RENTALS = 50, 20_080  # a --scale 1 day of rentals on a --scale 50 history

# EMR Serverless, US East (N. Virginia), x86 workers, on-demand: the published rates of
# https://aws.amazon.com/emr/pricing/ (looked up 2026-11-26).
VCPU_HOUR_USD = 0.052624
GB_HOUR_USD = 0.0057785
# The stack's workers (template.yaml, InitialCapacity): 4 vCPU and 16 GB, i.e. 4 GB per vCPU.
WORKER_VCPU, WORKER_GB = 4, 16
# Billing is per second with a one-minute minimum per worker; each of the two jobs is a job run
# with at least a driver and one executor.
MINIMUM_BILLED_SECONDS = 60
MINIMUM_WORKERS_PER_JOB = 2
COST_ASSUMPTIONS = f"""\
- Rates: EMR Serverless, US East (N. Virginia), x86, on demand: ${VCPU_HOUR_USD} per vCPU-hour
  and ${GB_HOUR_USD} per GB-hour, as published on https://aws.amazon.com/emr/pricing/ (looked up
  2026-11-26, from copies of that page; check it before relying on the numbers). Ephemeral
  storage within the free 20 GB per worker is not charged and these jobs stay far below it.
- vCPU-hours = the CPU seconds (utime + stime) of the two jobs' JVMs, each job run alone as EMR
  runs it (its own session, its own check of the inputs; JVM start-up and JIT included) / 3600,
  as if EMR billed only busy vCPUs: a lower bound, since EMR bills the workers it allocates,
  busy or idle.
- GB-hours = vCPU-hours x {WORKER_GB // WORKER_VCPU}: memory comes with the vCPUs, \
{WORKER_VCPU} vCPU + {WORKER_GB} GB per worker (the stack's worker size).
- Floor: each of the {len(JOBS)} job runs bills at least {MINIMUM_WORKERS_PER_JOB} workers \
(driver + one executor) for {MINIMUM_BILLED_SECONDS} s
  (one-minute minimum): ${{floor:.4f}} per run. "EMR $/run" is the larger of the usage estimate
  and that floor.
- Not included: worker start-up time, S3 requests, Glue, Athena, Step Functions, Lambda."""

VALIDATION_MB_PER_S, VALIDATION_RSS_MB = 200, 300
RUN_OVER_FLOOR = 1.0
SCALE_1_RUN_SECONDS = 15
DAILY_OVER_FRESH = 0.5
COST_GROWTH_50_TO_500 = 0.20


def emr_floor_usd() -> float:
    per_worker_hour = WORKER_VCPU * VCPU_HOUR_USD + WORKER_GB * GB_HOUR_USD
    return len(JOBS) * MINIMUM_WORKERS_PER_JOB * MINIMUM_BILLED_SECONDS / 3600 * per_worker_hour


def emr_usage_usd(cpu_s: float) -> float:
    vcpu_hours = cpu_s / 3600
    return vcpu_hours * VCPU_HOUR_USD + vcpu_hours * WORKER_GB / WORKER_VCPU * GB_HOUR_USD


def emr_run_usd(cpu_s: float) -> float:
    return max(emr_usage_usd(cpu_s), emr_floor_usd())


# ----------------------------------------------------------------------------- child processes


def spark_event_summary(event_dir: Path) -> dict:
    """Where Spark's time went, from its event log: how many jobs, stages and tasks, how long
    at least one Spark job was running (the rest is start-up, query planning and Python between
    jobs), and the executors' task time summed over cores."""
    (log,) = event_dir.iterdir()
    jobs: dict[int, list[int]] = {}
    stages = tasks = task_ms = 0
    with log.open() as events:
        for line in events:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                jobs[event["Job ID"]] = [event["Submission Time"], event["Submission Time"]]
            elif kind == "SparkListenerJobEnd":
                jobs[event["Job ID"]][1] = event["Completion Time"]
            elif kind == "SparkListenerStageCompleted":
                stages += 1
            elif kind == "SparkListenerTaskEnd":
                tasks += 1
                task_ms += event.get("Task Metrics", {}).get("Executor Run Time", 0)
    busy_ms, reached = 0, 0
    for start, end in sorted(jobs.values()):
        busy_ms += max(0, end - max(start, reached))
        reached = max(reached, end)
    return {
        "jobs": len(jobs),
        "stages": stages,
        "tasks": tasks,
        "in_jobs_s": busy_ms / 1000,
        "task_s": task_ms / 1000,
    }


def _log_events_to(event_dir: Path, driver_memory: str | None = None) -> None:
    """Make the JVM that pyspark launches in this process write its event log to event_dir."""
    event_dir.mkdir(parents=True)
    memory = f"--driver-memory {driver_memory} " if driver_memory else ""
    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        f"{memory}--conf spark.eventLog.enabled=true --conf spark.eventLog.dir={event_dir.as_uri()} "
        "--conf spark.eventLog.rolling.enabled=false --conf spark.eventLog.compress=false "
        "pyspark-shell"
    )


def _jvm_numbers(event_dir: Path) -> dict:
    from pyspark import SparkContext

    jvm = SparkContext._gateway.proc.pid  # the launcher execs java: the same process
    if Path(f"/proc/{jvm}/comm").read_text().strip() != "java":
        raise RuntimeError(f"process {jvm} is not the JVM")
    return {
        "python_peak_mb": peak_rss_mb(),
        "python_cpu_s": cpu_seconds(),
        "jvm_peak_mb": peak_rss_mb(jvm),
        "jvm_cpu_s": cpu_seconds(jvm),
        "spark_events": spark_event_summary(event_dir),
    }


def pipeline_child(spec: dict) -> dict:
    """In a fresh process: ingest spec["ingest"] (path, dataset) into the lake, then one
    `carrental run` (with spec["input"]: `carrental run --input`)."""
    _log_events_to(Path(spec["events"]))
    from carrental.local.runner import run_pipeline
    from carrental.local.store import LocalLake

    lake_root = Path(spec["lake"])
    started = time.perf_counter()
    for path, dataset in spec.get("ingest", []):
        ingested = LocalLake(lake_root).ingest(Path(path), dataset=dataset)
        if not ingested.verdict.accepted:
            raise RuntimeError(ingested.verdict.render())
    ingest_s = time.perf_counter() - started
    result = run_pipeline(lake_root, Path(spec["input"]) if spec.get("input") else None)
    return {
        "run_id": result.run_id,
        "tables": result.tables,
        "held_back": len(result.held_back),
        "timings": {"ingest": ingest_s, **result.timings} if spec.get("ingest") else result.timings,
        "job_timings": result.job_timings,
        "run_s": time.perf_counter() - started,
        **_jvm_numbers(Path(spec["events"])),
    }


def plain_child(spec: dict) -> dict:
    """In a fresh process: one `carrental run --input` as a user runs it, without the event
    log, so that no instrumentation inflates the time compared with the engine floor."""
    from carrental.local.runner import run_pipeline

    return {"run_id": run_pipeline(Path(spec["lake"]), Path(spec["input"])).run_id}


def job_child(spec: dict) -> dict:
    """In a fresh process: one EMR entry point on a run manifest (as spark-submit runs it)."""
    _log_events_to(Path(spec["events"]), driver_memory="4g")
    from carrental.spark.entrypoint import main

    started = time.perf_counter()
    code = main(spec["job"], ["--manifest", spec["manifest"], "--lake", spec["lake"]])
    if code:
        raise RuntimeError(f"{spec['job']} exited {code}")
    return {"seconds": time.perf_counter() - started, **_jvm_numbers(Path(spec["events"]))}


CHILDREN = {"pipeline": pipeline_child, "plain": plain_child, "job": job_child}


def in_child(kind: str, spec: dict, scratch: Path) -> dict:
    """Run CHILDREN[kind](spec) in a fresh interpreter; its numbers, plus command_s: the
    process's wall time from start to exit (imports and JVM shutdown included)."""
    spec_file = Path(tempfile.mkstemp(dir=scratch, suffix=".json")[1])
    spec_file.write_text(json.dumps(spec))
    started = time.perf_counter()
    with open(spec_file.with_suffix(".log"), "wb") as log:
        child = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(spec_file)], stdout=log, stderr=log
        )
    if child.returncode:
        tail = spec_file.with_suffix(".log").read_text(errors="replace")[-3000:]
        raise SystemExit(f"benchmark child {kind} {spec} failed:\n{tail}")
    numbers = json.loads(spec_file.with_suffix(".out.json").read_text())
    numbers["command_s"] = time.perf_counter() - started
    return numbers


def reference_in_child(script: str, input_dir: Path, out_dir: Path) -> dict:
    started = time.perf_counter()
    child = subprocess.run(
        [sys.executable, BENCHMARKS / script, "--input", input_dir, "--out", out_dir],
        check=True,
        capture_output=True,
        text=True,
    )
    numbers = json.loads(child.stdout.strip().splitlines()[-1])
    numbers["command_s"] = time.perf_counter() - started
    return numbers


# ----------------------------------------------------------------------------- checks


def _rows(path: Path) -> list[tuple]:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    return sorted(
        (tuple(row.values()) for row in table.to_pylist()), key=lambda r: [str(v) for v in r]
    )


def table_path(lake_root: Path, table: str, run_id: str) -> Path:
    from carrental import lake

    return Path(lake.table_run_path(lake.processed_prefix(str(lake_root)), table, run_id))


def check_same_tables(ours: dict[str, Path], theirs: dict[str, Path], what: str) -> None:
    """The ratio means something only if both computed the same thing: every row equal."""
    for table, path in ours.items():
        mine, other = _rows(path), _rows(theirs[table])
        if mine != other:
            raise SystemExit(
                f"{table}: the pipeline's {len(mine):,} rows differ from {what}'s "
                f"{len(other):,}; the speed ratio would compare different work"
            )


def check_duckdb_totals(lake_root: Path, run_id: str, duckdb_out: Path) -> None:
    from decimal import Decimal

    import pyarrow.parquet as pq

    def total(path: Path, column: str) -> Decimal:
        return sum(pq.read_table(path, columns=[column]).column(column).to_pylist(), Decimal(0))

    ours = table_path(lake_root, "location_performance", run_id)
    theirs = duckdb_out / "location_performance.parquet"
    for column in ("total_revenue", "rental_count"):
        if total(ours, column) != total(theirs, column):
            raise SystemExit(f"location_performance.{column}: pipeline != DuckDB reference")


# ----------------------------------------------------------------------------- measurements


@dataclass
class ScaleResult:
    scale: float
    rentals: int
    input_mb: float
    generate_s: float
    validation: dict
    pipeline: dict
    floor: dict
    duckdb: dict
    emr: dict
    daily: dict | None = None
    # the same run without the event log: the time compared (None in figures of before)
    plain: dict | None = None
    loads: list[float] = field(default_factory=list)  # 1-minute load average per measurement
    commit: str = ""  # the commit measured (figures of several runs can be rendered together)

    @property
    def run_s(self) -> float:
        return _run_s(asdict(self))

    @property
    def over_floor(self) -> float:
        return self.run_s / self.floor["command_s"]

    @property
    def over_duckdb(self) -> float:
        return self.run_s / self.duckdb["command_s"]


def _run_s(result: dict) -> float:
    """`carrental run`'s time: of the run without event log where there is one."""
    return (result.get("plain") or result["pipeline"])["command_s"]


def load() -> float:
    return os.getloadavg()[0]


def emr_jobs(lake_root: Path, run_id: str, scratch: Path, label: str, before: Path | None) -> dict:
    """Both entry points on the run's manifest, each in its own process as EMR runs it, each
    starting from the lake's checked/ entries as they were before the run (`before`: a copy of
    that folder, or None when there was none): on EMR the two jobs run at the same time."""
    from carrental import lake

    manifest = str(lake_root / lake.manifest_key(run_id))
    checked = lake_root / "checked"
    after = scratch / f"{label}-checked-after"
    if checked.exists():
        checked.rename(after)
    jobs = {}
    try:
        for job in JOBS:
            shutil.rmtree(checked, ignore_errors=True)
            if before is not None:
                shutil.copytree(before, checked)
            spec = {
                "job": job,
                "manifest": manifest,
                "lake": str(lake_root),
                "events": str(scratch / f"{label}-{job}-events"),
            }
            jobs[job] = in_child("job", spec, scratch)
    finally:
        shutil.rmtree(checked, ignore_errors=True)
        if after.exists():
            after.rename(checked)
    cpu = sum(j["jvm_cpu_s"] for j in jobs.values())
    return {"jobs": jobs, "jvm_cpu_s": cpu, "usd": emr_run_usd(cpu)}


def bench_scale(scale: float, scratch: Path, daily_scale: float) -> ScaleResult:
    from carrental.generate import generate

    batch = scratch / f"batch-{scale:g}"
    started = time.perf_counter()
    counts = generate(batch, scale=scale, seed=SEED, dirty_rate=0.0)
    generate_s = time.perf_counter() - started
    input_mb = sum(f.stat().st_size for f in batch.glob("*.csv")) / 1e6
    print(
        f"--scale {scale:g}: {counts[RENTALS]:,} rentals, {input_mb:,.0f} MB generated in "
        f"{generate_s:.1f} s",
        flush=True,
    )
    loads = [load()]
    rentals, warm_up = batch / f"{RENTALS}.csv", batch / "locations.csv"
    validation = {
        "warm": compare(f"{RENTALS}.csv (warm)", rentals, warm_up),
        "cold": compare(f"{RENTALS}.csv (fresh process)", rentals, None),
        "staging": compare(f"{RENTALS}.csv (+ staging, warm)", rentals, warm_up, stage=True),
    }
    print(
        f"  validation {validation['warm']['mb_per_s']:.0f} MB/s warm, "
        f"{validation['cold']['mb_per_s']:.0f} MB/s in a fresh process, "
        f"{validation['staging']['mb_per_s']:.0f} MB/s with staging (load {load():.1f})",
        flush=True,
    )
    lake_root = scratch / f"lake-{scale:g}"
    loads.append(load())
    pipeline = in_child(
        "pipeline",
        {"lake": str(lake_root), "input": str(batch), "events": str(scratch / f"ev-{scale:g}")},
        scratch,
    )
    print(f"  carrental run {pipeline['command_s']:.1f} s with the event log", flush=True)
    loads.append(load())
    plain = in_child(
        "plain", {"lake": str(scratch / f"plain-lake-{scale:g}"), "input": str(batch)}, scratch
    )
    print(f"  carrental run {plain['command_s']:.1f} s (load {load():.1f})", flush=True)
    loads.append(load())
    floor = reference_in_child("spark_floor.py", batch, scratch / f"floor-{scale:g}")
    check_same_tables(
        {t: table_path(lake_root, t, pipeline["run_id"]) for t in KPI_TABLES},
        {t: scratch / f"floor-{scale:g}" / t for t in KPI_TABLES},
        "the engine floor",
    )
    print(
        f"  engine floor {floor['command_s']:.1f} s: run / floor "
        f"{plain['command_s'] / floor['command_s']:.2f} (load {load():.1f})",
        flush=True,
    )
    loads.append(load())
    duckdb = reference_in_child("duckdb_kpis.py", batch, scratch / f"duckdb-{scale:g}")
    check_duckdb_totals(lake_root, pipeline["run_id"], scratch / f"duckdb-{scale:g}")
    print(
        f"  DuckDB {duckdb['command_s']:.1f} s: run / DuckDB "
        f"{plain['command_s'] / duckdb['command_s']:.1f}",
        flush=True,
    )
    loads.append(load())
    emr = emr_jobs(lake_root, pipeline["run_id"], scratch, f"emr-{scale:g}", before=None)
    print(f"  EMR estimate ${emr['usd']:.4f} per run ({emr['jvm_cpu_s']:.0f} CPU s)", flush=True)
    result = ScaleResult(
        scale=scale,
        rentals=counts[RENTALS],
        input_mb=input_mb,
        generate_s=generate_s,
        validation=validation,
        pipeline=pipeline,
        floor=floor,
        duckdb=duckdb,
        emr=emr,
        plain=plain,
    )
    if scale == daily_scale:
        result.daily = bench_daily(batch, scratch, min(DAILY_RENTALS, counts[RENTALS] // 10))
    result.loads = [*loads, load()]
    return result


def split_rentals(source: Path, folder: Path, last: int) -> tuple[Path, Path]:
    """The rentals file as a history (all but the last `last` rows) and a day's file."""
    folder.mkdir(parents=True)
    history, day = folder / "history.csv", folder / "day.csv"
    with open(source, "rb") as f:
        header = f.readline()
        lines = f.readlines()
    history.write_bytes(header + b"".join(lines[:-last]))
    day.write_bytes(header + b"".join(lines[-last:]))
    return history, day


def bench_daily(batch: Path, scratch: Path, day_rentals: int) -> dict:
    history, day = split_rentals(batch / f"{RENTALS}.csv", scratch / "daily-files", day_rentals)
    dims = [(str(batch / f"{d}.csv"), d) for d in DIMENSIONS]
    daily_lake, fresh_lake = scratch / "daily-lake", scratch / "daily-fresh-lake"
    print(f"  daily run: {day_rentals:,} new rentals on a history of the rest", flush=True)
    in_child(
        "pipeline",
        {
            "lake": str(daily_lake),
            "ingest": [*dims, (str(history), RENTALS)],
            "events": str(scratch / "ev-daily-setup"),
        },
        scratch,
    )
    checked_before = scratch / "daily-checked-before"
    if (daily_lake / "checked").exists():
        shutil.copytree(daily_lake / "checked", checked_before)
    loads = [load()]
    daily = in_child(
        "pipeline",
        {
            "lake": str(daily_lake),
            "ingest": [(str(day), RENTALS)],
            "events": str(scratch / "ev-daily"),
        },
        scratch,
    )
    loads.append(load())
    fresh = in_child(
        "pipeline",
        {
            "lake": str(fresh_lake),
            "ingest": [*dims, (str(history), RENTALS), (str(day), RENTALS)],
            "events": str(scratch / "ev-daily-fresh"),
        },
        scratch,
    )
    loads.append(load())
    check_same_tables(
        {t: table_path(daily_lake, t, daily["run_id"]) for t in (*KPI_TABLES, "data_quality")},
        {t: table_path(fresh_lake, t, fresh["run_id"]) for t in (*KPI_TABLES, "data_quality")},
        "the fresh lake",
    )
    print(
        f"  daily {daily['command_s']:.1f} s, fresh {fresh['command_s']:.1f} s: daily / fresh "
        f"{daily['command_s'] / fresh['command_s']:.2f} (load {load():.1f})",
        flush=True,
    )
    before = checked_before if checked_before.exists() else None
    emr = emr_jobs(daily_lake, daily["run_id"], scratch, "emr-daily", before)
    print(f"  EMR estimate of the daily run ${emr['usd']:.4f} ({emr['jvm_cpu_s']:.0f} CPU s)")
    return {
        "day_rentals": day_rentals,
        "daily": daily,
        "fresh": fresh,
        "emr": emr,
        "loads": [*loads, load()],
    }


# ----------------------------------------------------------------------------- report


def machine() -> dict:
    meminfo = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    import duckdb
    import pyspark

    java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "ram_gb": int(meminfo[1]) / 1024**2,
        "cpu": cpu_model,
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "duckdb": duckdb.__version__,
        "java": java.splitlines()[0] if java else "unknown",
        "commit": commit or "unknown",
    }


def targets(results: list[ScaleResult]) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) — None when the scale it needs was not run."""
    by_scale = {r.scale: r for r in results}
    rows = []
    # throughput is judged on the largest file (on a small one, fixed costs dominate) that the
    # first run rendered measured: figures of another run may be of older validation code
    biggest = max(
        (r for r in results if r.commit == results[0].commit),
        key=lambda r: r.validation["warm"]["size_mb"],
    )
    warm, cold, staging = (biggest.validation[k] for k in ("warm", "cold", "staging"))
    rows.append(
        (
            f"upload validation >= {VALIDATION_MB_PER_S} MB/s on one core, warm process",
            f"{warm['mb_per_s']:.0f} MB/s (--scale {biggest.scale:g}, {warm['size_mb']:.0f} MB); "
            f"fresh process {cold['mb_per_s']:.0f} MB/s; with staging {staging['mb_per_s']:.0f} "
            "MB/s (no target)",
            warm["mb_per_s"] >= VALIDATION_MB_PER_S,
        )
    )
    peak = max(
        (v["peak_rss_mb"], r.scale, kind) for r in results for kind, v in r.validation.items()
    )
    rows.append(
        (
            f"validation peak RSS < {VALIDATION_RSS_MB} MB",
            f"{peak[0]:.0f} MB (highest: --scale {peak[1]:g}, {peak[2]})",
            peak[0] < VALIDATION_RSS_MB,
        )
    )
    for r in results:
        rows.append(
            (
                f"--scale {r.scale:g} `carrental run` / engine floor <= {RUN_OVER_FLOOR:g}",
                f"{r.over_floor:.2f} ({r.run_s:.1f} s / {r.floor['command_s']:.1f} s)",
                r.over_floor <= RUN_OVER_FLOOR,
            )
        )
    r = by_scale.get(1)
    rows.append(
        (
            f"--scale 1 `carrental run` under {SCALE_1_RUN_SECONDS} s (Spark start-up included)",
            f"{r.run_s:.1f} s as a process" if r else "not run",
            r.run_s < SCALE_1_RUN_SECONDS if r else None,
        )
    )
    r = next((r for r in results if r.daily), None)
    if r:
        daily, fresh = r.daily["daily"]["command_s"], r.daily["fresh"]["command_s"]
        rows.append(
            (
                f"daily run ({r.daily['day_rentals']:,} new rentals on a --scale {r.scale:g} "
                f"history) / fresh run <= {DAILY_OVER_FRESH:.0%}",
                f"{daily / fresh:.0%} ({daily:.1f} s / {fresh:.1f} s)",
                daily / fresh <= DAILY_OVER_FRESH,
            )
        )
    else:
        rows.append((f"daily run / fresh run <= {DAILY_OVER_FRESH:.0%}", "not run", None))
    if 50 in by_scale and 500 in by_scale:
        per_rental = {s: by_scale[s].emr["jvm_cpu_s"] / by_scale[s].rentals for s in (50, 500)}
        growth = per_rental[500] / per_rental[50] - 1
        measured, met = f"{growth:+.0%}", growth <= COST_GROWTH_50_TO_500
    else:
        measured, met = "not run (needs --with-500)", None
    rows.append(
        (
            f"EMR cost per rental grows <= {COST_GROWTH_50_TO_500:.0%} from --scale 50 to 500",
            measured,
            met,
        )
    )
    return rows


def _commits(results: list[ScaleResult]) -> str:
    """The commit measured, or each commit with its scales when the figures are of several."""
    scales: dict[str, list[str]] = {}
    for r in results:
        scales.setdefault(r.commit, []).append(f"{r.scale:g}")
    if len(scales) == 1:
        return f"commit {results[0].commit}"
    return "commits " + "; ".join(f"{c} (--scale {', '.join(s)})" for c, s in scales.items())


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _loads(values: list[float]) -> str:
    return f"{min(values):.1f} to {max(values):.1f}"


def _stage_rows(label: str, numbers: dict) -> list[str]:
    timings, steps = numbers["timings"], numbers["job_timings"]
    events = numbers["spark_events"]
    spark_stage = timings["spark jobs"]
    return [
        label,
        f"{numbers['command_s']:.1f}",
        f"{timings.get('ingest', 0):.1f}",
        f"{spark_stage:.1f}",
        ", ".join(f"{step} {s:.1f}" for step, s in steps.items()),
        f"{timings['summary + report']:.1f}",
        f"{events['jobs']}",
        f"{events['in_jobs_s']:.1f}",
        f"{spark_stage - events['in_jobs_s']:.1f}",
        f"{events['task_s']:.1f}",
        f"{numbers['jvm_cpu_s']:.0f}",
        f"{numbers['python_peak_mb']:,.0f}",
        f"{numbers['jvm_peak_mb']:,.0f}",
    ]


STAGE_HEADER = [
    "run",
    "process s",
    "ingest s",
    "Spark stage s",
    "Spark steps s",
    "summary + report s",
    "Spark jobs",
    "s with a job running",
    "s outside jobs",
    "task s (all cores)",
    "JVM CPU s",
    "Python peak MB",
    "JVM peak MB",
]


def before_after(results: list[ScaleResult], baseline: dict | None) -> list[str]:
    """Key figures against those of benchmarks/baseline.json (the code before issue 13)."""
    if not baseline:
        return ["No baseline (benchmarks/baseline.json) to compare with."]
    before = {r["scale"]: r for r in baseline["results"]}

    def figures(r: dict) -> dict[str, str]:
        out = {
            "`carrental run` s": f"{_run_s(r):.1f}",
            "engine floor s": f"{r['floor']['command_s']:.1f}",
            "run / floor": f"{_run_s(r) / r['floor']['command_s']:.2f}",
            "Spark jobs (event log)": f"{r['pipeline']['spark_events']['jobs']}",
            "JVM CPU s": f"{r['pipeline']['jvm_cpu_s']:.0f}",
            "validation MB/s warm / fresh / + staging": " / ".join(
                f"{r['validation'][k]['mb_per_s']:.0f}" for k in ("warm", "cold", "staging")
            ),
            "EMR CPU s per run (both jobs)": f"{r['emr']['jvm_cpu_s']:.0f}",
            "EMR $ per run": f"{r['emr']['usd']:.4f}",
        }
        if r.get("daily"):
            d = r["daily"]
            out["daily run s / fresh s"] = (
                f"{d['daily']['command_s']:.1f} / {d['fresh']['command_s']:.1f} "
                f"({d['daily']['command_s'] / d['fresh']['command_s']:.0%})"
            )
            out["EMR $ per daily run"] = (
                f"{d['emr']['usd']:.4f} ({d['emr']['jvm_cpu_s']:.0f} CPU s)"
            )
        return out

    lines = [
        f"Before: {baseline['machine']['commit']} measured {baseline['started'][:16]} UTC, "
        f"load {_loads(baseline['loads'])}; after: this run. Ratios come from one benchmark run "
        "each; absolute seconds depend on the load.",
        "",
    ]
    rows = []
    for r in results:
        now = figures(asdict(r))
        then = figures(before[r.scale]) if r.scale in before else {}
        rows += [[f"{r.scale:g}", k, then.get(k, "—"), v] for k, v in now.items()]
    return lines + _table(["scale", "figure", "before", "after"], rows)


def render(
    results: list[ScaleResult], host: dict, started: datetime, loads: list, baseline: dict | None
) -> str:
    verdict = {True: "met", False: "**missed**", None: "not run"}
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (benchmarks/run.py) on {started:%Y-%m-%d %H:%M} UTC at "
        f"{_commits(results)}. Machine: {host['cores']} cores ({host['cpu']}), "
        f"{host['ram_gb']:.0f} GB RAM; Python {host['python']}, PySpark {host['pyspark']}, "
        f"DuckDB {host['duckdb']}, {host['java']}.",
        f"1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end, "
        f"{_loads([x for r in results for x in r.loads])} during the measurements (on "
        f"{host['cores']} cores: above {host['cores']} means other work shared the CPUs and the "
        "times are inflated; the targets are ratios of measurements taken minutes apart).",
        "",
        "Data: `carrental generate --seed 1 --dirty-rate 0` (clean, so the references select the "
        "same rentals as the jobs). Times are wall-clock seconds of whole processes.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "measured", "verdict"],
            [[t, m, verdict[ok]] for t, m, ok in targets(results)],
        ),
        "",
        "## `carrental run` against the engine floor and DuckDB",
        "",
        "`carrental run --input DIR` into a fresh lake (ingest: validate + stage the four CSVs; "
        "both Spark jobs; report; publish) against benchmarks/spark_floor.py (the six KPI "
        "tables in minimal PySpark from the same CSVs: no rule flags, rejects, data quality, "
        "lake or report) and benchmarks/duckdb_kpis.py (the same six tables in DuckDB). Each "
        "is a fresh process (cold JVM) without Spark's event log, as a user runs it; the "
        "floor's six tables are checked equal to ours row for row, DuckDB's total revenue and "
        "rental count too.",
        "",
    ]
    lines += _table(
        [
            "scale",
            "rentals",
            "input MB",
            "`carrental run` s",
            "engine floor s",
            "DuckDB s",
            "run / floor",
            "run / DuckDB",
            "load",
        ],
        [
            [
                f"{r.scale:g}",
                f"{r.rentals:,}",
                f"{r.input_mb:,.0f}",
                f"{r.run_s:.1f}",
                f"{r.floor['command_s']:.1f}",
                f"{r.duckdb['command_s']:.1f}",
                f"{r.over_floor:.2f}",
                f"{r.over_duckdb:.1f}",
                _loads(r.loads),
            ]
            for r in results
        ],
    )
    lines += [
        "",
        "## Where a run's time goes",
        "",
        "From a second `carrental run` with Spark's event log on, per run: the process; its "
        "stages; the Spark steps inside the Spark stage (which also "
        "holds the SparkSession's start-up); from Spark's event log the number of Spark jobs, "
        "the time during which at least one ran, the rest of the Spark stage (JVM start-up, "
        "query planning, Python between jobs) and the task time summed over the cores; the "
        "JVM's CPU seconds; peak RSS of Python and of the JVM.",
        "",
    ]
    rows = [_stage_rows(f"--scale {r.scale:g} fresh (`run --input`)", r.pipeline) for r in results]
    for r in results:
        if r.daily:
            rows.append(
                _stage_rows(f"--scale {r.scale:g} daily (ingest 1 file + run)", r.daily["daily"])
            )
            rows.append(
                _stage_rows(f"--scale {r.scale:g} fresh lake (ingest all + run)", r.daily["fresh"])
            )
    lines += _table(STAGE_HEADER, rows)
    daily = [r for r in results if r.daily]
    if daily:
        d = daily[0].daily
        lines += [
            "",
            "## The daily run",
            "",
            f"The --scale {daily[0].scale:g} rentals split into `history.csv` (all but the last "
            f"{d['day_rentals']:,} rows) and `day.csv` (the last {d['day_rentals']:,}: "
            f"{'a --scale 1 day' if d['day_rentals'] == DAILY_RENTALS else 'a tenth'}). "
            "Daily: a lake that has ingested the dimensions and the history and run once "
            "ingests `day.csv` and runs. Fresh: a new lake ingests all five files and runs. "
            "Both publish the same tables (checked: the six KPI tables and data_quality, row "
            "for row).",
            "",
        ]
        lines += _table(
            ["run", "process s", "daily / fresh", "load"],
            [
                ["daily", f"{d['daily']['command_s']:.1f}", "", ""],
                [
                    "fresh",
                    f"{d['fresh']['command_s']:.1f}",
                    f"{d['daily']['command_s'] / d['fresh']['command_s']:.0%}",
                    _loads(d["loads"]),
                ],
            ],
        )
    lines += [
        "",
        "## Upload validation (rental_transactions.csv, one core) vs `wc -l`",
        "",
        "Warm: a small file validated first in the same process (a warm Lambda container); "
        "fresh process: the first call pays the imports; + staging: validation writing the "
        "staged Parquet as `carrental ingest` does (warm).",
        "",
    ]
    lines += _table(
        ["scale", "mode", "MB", "rows", "seconds", "MB/s", "rows/s", "peak RSS MB", "x wc -l"],
        [
            [
                f"{r.scale:g}",
                mode,
                f"{v['size_mb']:,.1f}",
                f"{v['rows']:,}",
                f"{v['seconds']:.2f}",
                f"{v['mb_per_s']:.0f}",
                f"{v['rows_per_s']:,.0f}",
                f"{v['peak_rss_mb']:.0f}",
                f"{v['slower_than_wc']:.0f}",
            ]
            for r in results
            for mode, v in r.validation.items()
        ],
    )
    lines += [
        "",
        "## EMR Serverless cost per run (estimate)",
        "",
        "Both entry points of emr_jobs/ on the run's manifest, each in its own process as EMR "
        "runs them (each reads and checks the inputs itself, as on EMR where they run at the "
        "same time).",
        "",
    ]
    emr_rows = []
    for r in results:
        runs = [("fresh", r.emr, r.rentals)]
        if r.daily:
            runs.append(("daily", r.daily["emr"], r.rentals))
        for label, emr, rentals in runs:
            per_job = " + ".join(f"{j['jvm_cpu_s']:.0f}" for j in emr["jobs"].values())
            emr_rows.append(
                [
                    f"{r.scale:g}",
                    label,
                    f"{rentals:,}",
                    per_job,
                    f"{emr['jvm_cpu_s'] / 3600:.4f}",
                    f"{emr['jvm_cpu_s'] / 3600 * WORKER_GB / WORKER_VCPU:.4f}",
                    f"{emr_usage_usd(emr['jvm_cpu_s']):.4f}",
                    f"{emr['usd']:.4f}",
                ]
            )
    lines += _table(
        [
            "scale",
            "run",
            "rentals",
            "JVM CPU s (vehicle_location + user_transaction)",
            "vCPU-hours",
            "GB-hours",
            "usage $",
            "EMR $/run",
        ],
        emr_rows,
    )
    lines += ["", COST_ASSUMPTIONS.format(floor=emr_floor_usd()), ""]
    lines += ["## Before and after (issue 13)", "", *before_after(results, baseline), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable (1 and 50)")
    parser.add_argument("--with-500", action="store_true", help="also --scale 500 (long)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown file (results.md)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument(
        "--daily-scale",
        type=float,
        default=DAILY_SCALE,
        help=f"the scale whose rentals are split for the daily run ({DAILY_SCALE})",
    )
    parser.add_argument(
        "--render",
        type=Path,
        nargs="+",
        metavar="FIGURES",
        help="measure nothing: write --out from the figures earlier --json runs wrote (several: "
        "their scales side by side, the first run's validation judged)",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec_file = args.child
        numbers = CHILDREN[kind](json.loads(Path(spec_file).read_text()))
        Path(spec_file).with_suffix(".out.json").write_text(json.dumps(numbers))
        return 0

    if args.render:
        runs = [json.loads(path.read_text()) for path in args.render]
        results = [
            ScaleResult(**{"commit": figures["machine"]["commit"], **r})
            for figures in runs
            for r in figures["results"]
        ]
        started, host = datetime.fromisoformat(runs[0]["started"]), runs[0]["machine"]
        # at the start of the first run and the end of the last; then each measurement's
        loads = [runs[0]["loads"][0], runs[-1]["loads"][1]]
    else:
        scales = (args.scale or [1, 50]) + ([500] if args.with_500 else [])
        started = datetime.now(UTC)
        host = machine()  # before measuring: the commit whose code the children import
        loads = [load()]
        with tempfile.TemporaryDirectory(prefix="carrental-bench-") as scratch:
            results = [bench_scale(scale, Path(scratch), args.daily_scale) for scale in scales]
        loads.append(load())
        for result in results:
            result.commit = host["commit"]
    baseline = json.loads(BASELINE.read_text()) if BASELINE.exists() else None
    report = render(results, host, started, loads, baseline)
    args.out.write_text(report)
    if args.json and not args.render:
        figures = {
            "started": started.isoformat(),
            "machine": host,
            "loads": loads + [x for r in results for x in r.loads],
            "results": [asdict(r) for r in results],
        }
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    summary = [
        f"--scale {r.scale:g}: run / floor {r.over_floor:.2f}, run / DuckDB {r.over_duckdb:.1f}"
        + (
            f"; daily / fresh {r.daily['daily']['command_s'] / r.daily['fresh']['command_s']:.0%}"
            if r.daily
            else ""
        )
        for r in results
    ]
    print("\n" + "\n".join(summary))
    missed = [t for t, _, ok in targets(results) if ok is False]
    for target in missed:
        print(f"MISSED: {target}")
    print(
        f"written to {args.out} (load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end)"
    )
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
