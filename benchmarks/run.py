"""`make bench`: how fast, how cheap and how it scales, written to benchmarks/results.md.

    .venv/bin/python benchmarks/run.py                 # --scale 1 and 50
    .venv/bin/python benchmarks/run.py --with-500      # also --scale 500 (10 M rentals: long)
    .venv/bin/python benchmarks/run.py --scale 0.1 --out /tmp/results.md

For each scale, on a clean generated batch (seed 1, no injected defects, so the DuckDB reference
selects the same rentals as the jobs; see benchmarks/duckdb_kpis.py):

1. upload validation of rental_transactions.csv against `wc -l` on the same file, in a process
   pinned to one core (benchmarks/validation_throughput.py);
2. `carrental run` (carrental.local.runner.run_pipeline) into a fresh lake, in a fresh process
   so that every scale starts a cold JVM as a real run does: each stage, each Spark job, the
   whole run, peak RSS of the Python process and of the JVM, and the JVM's CPU seconds (its
   utime + stime, read from /proc before the process exits: the JVM outlives spark.stop());
3. the plain DuckDB script on the same CSVs, in a fresh process, and the ratio of our Spark
   stage to it, after checking that both agree on location_performance's total revenue;
4. an EMR Serverless cost estimate from the JVM's CPU seconds (see COST_ASSUMPTIONS).

The results, the machine (cores, RAM, load) and the date go to benchmarks/results.md; the
process exits 1 if a target is missed or the per-rental cost grows by more than 20 % from
--scale 50 to --scale 500.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from process_stats import cpu_seconds, peak_rss_mb
from validation_throughput import compare

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results.md"
SEED = 1
RENTALS_FILE = "rental_transactions.csv"

# EMR Serverless, US East (N. Virginia), x86 workers, on-demand: the published rates of
# https://aws.amazon.com/emr/pricing/ (looked up 2026-11-26).
VCPU_HOUR_USD = 0.052624
GB_HOUR_USD = 0.0057785
# The stack's workers (template.yaml, InitialCapacity): 4 vCPU and 16 GB, i.e. 4 GB per vCPU.
WORKER_VCPU, WORKER_GB = 4, 16
# Billing is per second with a one-minute minimum per worker; each of the two jobs is a job run
# with at least a driver and one executor.
MINIMUM_BILLED_SECONDS = 60
JOB_RUNS, MINIMUM_WORKERS_PER_JOB = 2, 2
COST_ASSUMPTIONS = f"""\
- Rates: EMR Serverless, US East (N. Virginia), x86, on demand: ${VCPU_HOUR_USD} per vCPU-hour
  and ${GB_HOUR_USD} per GB-hour, as published on https://aws.amazon.com/emr/pricing/ (looked up
  2026-11-26, from copies of that page; check it before relying on the numbers). Ephemeral
  storage within the free 20 GB per worker is not charged and these jobs stay far below it.
- vCPU-hours = the local JVM's CPU seconds (utime + stime: both jobs, JVM start-up and JIT
  included) / 3600, as if EMR billed only busy vCPUs: a lower bound, since EMR bills the
  workers it allocates, busy or idle.
- GB-hours = vCPU-hours x {WORKER_GB // WORKER_VCPU}: memory comes with the vCPUs, \
{WORKER_VCPU} vCPU + {WORKER_GB} GB per worker (the stack's worker size).
- Floor: each of the {JOB_RUNS} job runs bills at least {MINIMUM_WORKERS_PER_JOB} workers \
(driver + one executor) for {MINIMUM_BILLED_SECONDS} s
  (one-minute minimum): ${{floor:.4f}} per run. "EMR $/run" is the larger of the usage estimate
  and that floor; "$/M rentals" divides the usage estimate (the part that grows with data) by the
  rentals in millions.
- Not included: worker start-up time, S3 requests, Glue, Athena, Step Functions, Lambda."""

VALIDATION_MB_PER_S, VALIDATION_RSS_MB = 100, 300
SPARK_VS_DUCKDB = {50: 8, 500: 5}
SCALE_1_RUN_SECONDS = 30
COST_GROWTH_50_TO_500 = 0.20


def emr_floor_usd() -> float:
    per_worker_hour = WORKER_VCPU * VCPU_HOUR_USD + WORKER_GB * GB_HOUR_USD
    return JOB_RUNS * MINIMUM_WORKERS_PER_JOB * MINIMUM_BILLED_SECONDS / 3600 * per_worker_hour


def emr_usage_usd(cpu_s: float) -> float:
    vcpu_hours = cpu_s / 3600
    return vcpu_hours * VCPU_HOUR_USD + vcpu_hours * WORKER_GB / WORKER_VCPU * GB_HOUR_USD


@dataclass
class ScaleResult:
    scale: float
    rentals: int
    input_mb: float
    generate_s: float
    validation: dict
    pipeline: dict
    duckdb: dict

    @property
    def spark_stage_s(self) -> float:
        return self.pipeline["timings"]["spark jobs"]

    @property
    def spark_jobs_s(self) -> float:
        return sum(self.pipeline["job_timings"].values())

    @property
    def emr_usage_usd(self) -> float:
        return emr_usage_usd(self.pipeline["jvm_cpu_s"])

    @property
    def usd_per_million_rentals(self) -> float:
        return self.emr_usage_usd / (self.rentals / 1e6)


def spark_event_summary(event_dir: Path) -> dict:
    """Where Spark's time went, from its event log: how many jobs, stages and tasks, how long
    at least one Spark job was running (the rest of the stage is start-up, query planning and
    Python), and the executors' task time summed over cores."""
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


def pipeline_child(input_dir: Path, lake_root: Path, result_file: Path) -> int:
    """In a fresh process: one `carrental run`, then this process's and the JVM's numbers."""
    from pyspark import SparkContext
    from rich.console import Console

    from carrental.local.runner import run_pipeline

    # the event log is read after the run; pyspark passes these to the JVM it launches
    event_dir = lake_root.parent / f"{lake_root.name}-events"
    event_dir.mkdir(parents=True)
    os.environ["PYSPARK_SUBMIT_ARGS"] = (
        f"--conf spark.eventLog.enabled=true --conf spark.eventLog.dir={event_dir.as_uri()} "
        "--conf spark.eventLog.rolling.enabled=false --conf spark.eventLog.compress=false "
        "pyspark-shell"
    )
    started = time.perf_counter()
    result = run_pipeline(input_dir, lake_root, console=Console(stderr=True, quiet=True))
    wall = time.perf_counter() - started
    jvm = SparkContext._gateway.proc.pid  # the launcher execs java: the same process
    if Path(f"/proc/{jvm}/comm").read_text().strip() != "java":
        raise RuntimeError(f"process {jvm} is not the JVM")
    numbers = {
        "run_id": result.run_id,
        "tables": result.tables,
        "timings": result.timings,
        "job_timings": result.job_timings,
        "run_s": wall,
        "python_peak_mb": peak_rss_mb(),
        "python_cpu_s": cpu_seconds(),
        "jvm_peak_mb": peak_rss_mb(jvm),
        "jvm_cpu_s": cpu_seconds(jvm),
        "spark_events": spark_event_summary(event_dir),
    }
    result_file.write_text(json.dumps(numbers))
    return 0


def _result_file(lake_root: Path) -> Path:
    return lake_root.parent / f"{lake_root.name}.json"


def run_pipeline_in_child(input_dir: Path, lake_root: Path) -> dict:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, __file__, "--pipeline-child", str(input_dir), str(lake_root)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    numbers = json.loads(_result_file(lake_root).read_text())
    numbers["command_s"] = time.perf_counter() - started
    return numbers


def run_duckdb_in_child(input_dir: Path, out_dir: Path) -> dict:
    child = subprocess.run(
        [sys.executable, BENCHMARKS / "duckdb_kpis.py", "--input", input_dir, "--out", out_dir],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(child.stdout)


def column_total(parquet: Path, column: str) -> Decimal:
    import pyarrow.parquet as pq

    return sum(pq.read_table(parquet, columns=[column]).column(column).to_pylist(), Decimal(0))


def check_same_answer(lake_root: Path, run_id: str, duckdb_out: Path) -> None:
    """The ratio means something only if both computed the same thing."""
    from carrental import lake

    ours = Path(
        lake.table_run_path(lake.processed_prefix(str(lake_root)), "location_performance", run_id)
    )
    theirs = duckdb_out / "location_performance.parquet"
    for column in ("total_revenue", "rental_count"):
        if column_total(ours, column) != column_total(theirs, column):
            raise SystemExit(
                f"location_performance.{column}: pipeline {column_total(ours, column)} != "
                f"DuckDB reference {column_total(theirs, column)}; the speed ratio would compare "
                "different work"
            )


def bench_scale(scale: float, scratch: Path) -> ScaleResult:
    from carrental.generate import generate

    batch = scratch / f"batch-{scale:g}"
    started = time.perf_counter()
    counts = generate(batch, scale=scale, seed=SEED, dirty_rate=0.0)
    generate_s = time.perf_counter() - started
    input_mb = sum(f.stat().st_size for f in batch.glob("*.csv")) / 1e6
    print(
        f"--scale {scale:g}: {counts['rental_transactions']:,} rentals, {input_mb:,.0f} MB "
        f"generated in {generate_s:.1f} s",
        flush=True,
    )

    validation = compare(RENTALS_FILE, batch / RENTALS_FILE, batch / "locations.csv")
    print(
        f"  validation {validation['mb_per_s']:.0f} MB/s, {validation['peak_rss_mb']:.0f} MB",
        flush=True,
    )
    lake_root = scratch / f"lake-{scale:g}"
    pipeline = run_pipeline_in_child(batch, lake_root)
    print(
        f"  carrental run {pipeline['run_s']:.1f} s (spark jobs "
        f"{pipeline['timings']['spark jobs']:.1f} s)",
        flush=True,
    )
    duckdb_out = scratch / f"duckdb-{scale:g}"
    duckdb = run_duckdb_in_child(batch, duckdb_out)
    print(f"  DuckDB reference {duckdb['seconds']:.1f} s", flush=True)
    check_same_answer(lake_root, pipeline["run_id"], duckdb_out)
    return ScaleResult(
        scale=scale,
        rentals=counts["rental_transactions"],
        input_mb=input_mb,
        generate_s=generate_s,
        validation=validation,
        pipeline=pipeline,
        duckdb=duckdb,
    )


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
    return {
        "cores": os.cpu_count(),
        "ram_gb": int(meminfo[1]) / 1024**2,
        "cpu": cpu_model,
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "duckdb": duckdb.__version__,
        "java": java.splitlines()[0] if java else "unknown",
    }


def targets(results: list[ScaleResult]) -> list[tuple[str, str, bool | None]]:
    """(target, what was measured, met?) — None when the scale it needs was not run."""
    by_scale = {r.scale: r for r in results}
    rows = []
    # throughput is judged on the largest file: on a small one, fixed costs dominate
    biggest = max(results, key=lambda r: r.validation["size_mb"])
    rows.append(
        (
            f"validation >= {VALIDATION_MB_PER_S} MB/s on one core",
            f"{biggest.validation['mb_per_s']:.0f} MB/s (largest file, --scale {biggest.scale:g})",
            biggest.validation["mb_per_s"] >= VALIDATION_MB_PER_S,
        )
    )
    most_memory = max(results, key=lambda r: r.validation["peak_rss_mb"])
    rows.append(
        (
            f"validation peak RSS < {VALIDATION_RSS_MB} MB",
            f"{most_memory.validation['peak_rss_mb']:.0f} MB "
            f"(highest, --scale {most_memory.scale:g})",
            most_memory.validation["peak_rss_mb"] < VALIDATION_RSS_MB,
        )
    )
    for scale, limit in SPARK_VS_DUCKDB.items():
        r = by_scale.get(scale)
        ratio = r.spark_stage_s / r.duckdb["seconds"] if r else None
        rows.append(
            (
                f"Spark stage within {limit}x of DuckDB at --scale {scale}",
                f"{ratio:.1f}x" if r else "not run",
                ratio <= limit if r else None,
            )
        )
    r = by_scale.get(1)
    rows.append(
        (
            f"--scale 1 `carrental run` under {SCALE_1_RUN_SECONDS} s (Spark start-up included)",
            f"{r.pipeline['run_s']:.1f} s in run_pipeline, {r.pipeline['command_s']:.1f} s as a "
            "process"
            if r
            else "not run",
            r.pipeline["command_s"] < SCALE_1_RUN_SECONDS if r else None,
        )
    )
    if 50 in by_scale and 500 in by_scale:
        growth = by_scale[500].usd_per_million_rentals / by_scale[50].usd_per_million_rentals - 1
        rows.append(
            (
                f"cost per rental grows <= {COST_GROWTH_50_TO_500:.0%} from --scale 50 to 500",
                f"{growth:+.0%}",
                growth <= COST_GROWTH_50_TO_500,
            )
        )
    else:
        rows.append(
            (
                f"cost per rental grows <= {COST_GROWTH_50_TO_500:.0%} from --scale 50 to 500",
                "not run (needs --with-500)",
                None,
            )
        )
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def render(results: list[ScaleResult], host: dict, started: datetime, loads: tuple) -> str:
    verdict = {True: "met", False: "**missed**", None: "not run"}
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (benchmarks/run.py) on {started:%Y-%m-%d %H:%M} UTC. Machine: "
        f"{host['cores']} cores ({host['cpu']}), {host['ram_gb']:.0f} GB RAM; Python "
        f"{host['python']}, PySpark {host['pyspark']}, DuckDB {host['duckdb']}, {host['java']}.",
        f"1-minute load average {loads[0]:.1f} at the start, {loads[1]:.1f} at the end "
        f"(on {host['cores']} cores: above {host['cores']} means other work shared the CPUs and "
        "the times are inflated).",
        "",
        "Data: `carrental generate --seed 1 --dirty-rate 0` (clean, so the DuckDB reference "
        "and the jobs select the same rentals). Times are wall-clock seconds.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "measured", "verdict"],
            [[t, m, verdict[ok]] for t, m, ok in targets(results)],
        ),
        "",
        "## `carrental run`, stage by stage",
        "",
        "Each scale in a fresh process (cold JVM); `generate s` is `carrental generate`, not "
        'part of the run. "spark jobs" includes the SparkSession start-up; the start-up and the '
        "JVM's exit are the difference between the jobs and the stage. Whole run = "
        "run_pipeline; process = the command from start to exit (imports, JVM shutdown).",
        "",
    ]
    job_names = list(results[0].pipeline["job_timings"])
    stage_names = list(results[0].pipeline["timings"])
    lines += _table(
        [
            "scale",
            "rentals",
            "input MB",
            "generate s",
            *stage_names,
            *job_names,
            "start-up + other",
            "whole run",
            "process",
            "Python peak MB",
            "JVM peak MB",
        ],
        [
            [f"{r.scale:g}", f"{r.rentals:,}", f"{r.input_mb:,.0f}", f"{r.generate_s:.1f}"]
            + [f"{r.pipeline['timings'][s]:.1f}" for s in stage_names]
            + [f"{r.pipeline['job_timings'][j]:.1f}" for j in job_names]
            + [
                f"{r.spark_stage_s - r.spark_jobs_s:.1f}",
                f"{r.pipeline['run_s']:.1f}",
                f"{r.pipeline['command_s']:.1f}",
                f"{r.pipeline['python_peak_mb']:,.0f}",
                f"{r.pipeline['jvm_peak_mb']:,.0f}",
            ]
            for r in results
        ],
    )
    lines += [
        "",
        "Where the Spark stage's time goes (from Spark's event log): the time during which at "
        "least one Spark job ran, against the rest of the stage (JVM start-up, query planning, "
        "Python between jobs); task time is summed over the cores.",
        "",
    ]
    lines += _table(
        [
            "scale",
            "Spark stage s",
            "Spark jobs",
            "stages",
            "tasks",
            "s with a job running",
            "s outside jobs",
            "task s (all cores)",
        ],
        [
            [
                f"{r.scale:g}",
                f"{r.spark_stage_s:.1f}",
                f"{e['jobs']}",
                f"{e['stages']}",
                f"{e['tasks']:,}",
                f"{e['in_jobs_s']:.1f}",
                f"{r.spark_stage_s - e['in_jobs_s']:.1f}",
                f"{e['task_s']:.1f}",
            ]
            for r in results
            for e in [r.pipeline["spark_events"]]
        ],
    )
    lines += [
        "",
        "## Spark against the single-machine reference (plain DuckDB SQL, same CSVs)",
        "",
        "benchmarks/duckdb_kpis.py: the six KPI tables, one CSV parse, joins + aggregates, "
        "Parquet out; no rule checks, rejects or data_quality (on clean data no row is "
        "rejected), so it does less work than the jobs. Checked: its location_performance "
        "total revenue and rental count equal the pipeline's.",
        "",
    ]
    lines += _table(
        [
            "scale",
            "DuckDB s",
            "DuckDB peak MB",
            "Spark stage s",
            "stage / DuckDB",
            "Spark jobs s (no start-up)",
            "jobs / DuckDB",
        ],
        [
            [
                f"{r.scale:g}",
                f"{r.duckdb['seconds']:.2f}",
                f"{r.duckdb['peak_rss_mb']:,.0f}",
                f"{r.spark_stage_s:.1f}",
                f"{r.spark_stage_s / r.duckdb['seconds']:.1f}x",
                f"{r.spark_jobs_s:.1f}",
                f"{r.spark_jobs_s / r.duckdb['seconds']:.1f}x",
            ]
            for r in results
        ],
    )
    lines += [
        "",
        "## Upload validation (rental_transactions.csv, one core, warm process) vs `wc -l`",
        "",
    ]
    lines += _table(
        ["scale", "MB", "rows", "seconds", "MB/s", "rows/s", "peak RSS MB", "wc -l s", "x wc -l"],
        [
            [
                f"{r.scale:g}",
                f"{v['size_mb']:,.1f}",
                f"{v['rows']:,}",
                f"{v['seconds']:.2f}",
                f"{v['mb_per_s']:.0f}",
                f"{v['rows_per_s']:,.0f}",
                f"{v['peak_rss_mb']:.0f}",
                f"{v['wc_seconds']:.3f}",
                f"{v['slower_than_wc']:.0f}",
            ]
            for r in results
            for v in [r.validation]
        ],
    )
    lines += [
        "",
        "## Cost per million rentals (Spark CPU-seconds, EMR Serverless estimate)",
        "",
    ]
    lines += _table(
        [
            "scale",
            "JVM CPU s",
            "CPU s / M rentals",
            "vCPU-hours",
            "GB-hours",
            "EMR $/run",
            "$/M rentals",
        ],
        [
            [
                f"{r.scale:g}",
                f"{r.pipeline['jvm_cpu_s']:.0f}",
                f"{r.pipeline['jvm_cpu_s'] / (r.rentals / 1e6):,.0f}",
                f"{r.pipeline['jvm_cpu_s'] / 3600:.4f}",
                f"{r.pipeline['jvm_cpu_s'] / 3600 * WORKER_GB / WORKER_VCPU:.4f}",
                f"{max(r.emr_usage_usd, emr_floor_usd()):.4f}",
                f"{r.usd_per_million_rentals:.4f}",
            ]
            for r in results
        ],
    )
    lines += ["", COST_ASSUMPTIONS.format(floor=emr_floor_usd()), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, action="append", help="repeatable (1 and 50)")
    parser.add_argument("--with-500", action="store_true", help="also --scale 500 (long)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="Markdown file (results.md)")
    parser.add_argument("--pipeline-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline_child:
        input_dir, lake_root = args.pipeline_child
        return pipeline_child(input_dir, lake_root, _result_file(lake_root))

    scales = (args.scale or [1, 50]) + ([500] if args.with_500 else [])
    started = datetime.now(UTC)
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="carrental-bench-") as scratch:
        results = [bench_scale(scale, Path(scratch)) for scale in scales]
    report = render(results, machine(), started, (load_at_start, os.getloadavg()[0]))
    args.out.write_text(report)
    print(f"\n{report}\nwritten to {args.out}")
    return 1 if any(ok is False for _, _, ok in targets(results)) else 0


if __name__ == "__main__":
    sys.exit(main())
