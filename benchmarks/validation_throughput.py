"""Benchmark (not a test): upload-validation throughput and peak memory, against `wc -l`.

    .venv/bin/python benchmarks/validation_throughput.py               # generate --scale 50
    .venv/bin/python benchmarks/validation_throughput.py --data DIR    # an existing batch
    .venv/bin/python benchmarks/validation_throughput.py --big-gb 0    # skip the 2 GB file

Validates rental_transactions.csv (about 1 M rows at --scale 50), then a ~2 GB file built by
repeating its data rows with a per-copy prefix on rental_id (so every key is distinct: the
duplicate-key index holds ~22 M keys, its worst case). Each validation runs in a fresh process
pinned to one CPU core, so peak RSS (VmHWM) is the validator's alone. "cold" includes the
imports (numpy and pyarrow; never pandas, see carrental.validation.arrays) and the first
call's set-up; "warm" validates a small file first, as a warm Lambda container would; "+ staging" also writes the staged
Parquet, as `carrental ingest` does. `wc -l` reads the same file from the page cache: it is the
floor of "touching every byte once".
Targets: validation >= 200 MB/s on one core (warm), < 300 MB peak RSS at any size.
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

RENTALS = "rental_transactions"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--data", type=Path, help="folder with a generated batch")
    parser.add_argument("--scale", type=float, default=50, help="generate this scale (50)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dirty-rate", type=float, default=0.02)
    parser.add_argument("--big-gb", type=float, default=2.0, help="size of the big file (2)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--warm-up", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--stage", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return measure_in_this_process(args.child, args.warm_up, args.stage)

    with tempfile.TemporaryDirectory(prefix="carrental-bench-") as scratch:
        folder = args.data or generate_batch(Path(scratch) / "batch", args)
        rentals = folder / f"{RENTALS}.csv"
        warm_up = folder / "locations.csv"
        results = [
            compare(f"{RENTALS}.csv (cold)", rentals, None),
            compare(f"{RENTALS}.csv (warm)", rentals, warm_up),
            compare(f"{RENTALS}.csv (warm, + staging)", rentals, warm_up, stage=True),
        ]
        if args.big_gb > 0:
            big = Path(scratch) / "raw" / RENTALS / "big.csv"
            build_big_file(rentals, big, args.big_gb)
            results.append(compare(f"big.csv ({args.big_gb:g} GB, warm)", big, warm_up))
    print_table(results)
    print(json.dumps(results))
    return 0


def generate_batch(out: Path, args: argparse.Namespace) -> Path:
    from carrental.generate import generate

    started = time.perf_counter()
    generate(out, scale=args.scale, seed=args.seed, dirty_rate=args.dirty_rate)
    print(f"generated --scale {args.scale:g} in {time.perf_counter() - started:.1f} s", flush=True)
    return out


def build_big_file(rentals: Path, out: Path, gigabytes: float) -> None:
    """Repeat the data rows until the file is `gigabytes` large; copy i prefixes every
    non-empty rental_id with c<i>, so keys stay distinct across copies."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    header = rentals.open().readline().strip().split(",")
    table = pacsv.read_csv(
        rentals,
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
        ),
    )
    ids = table.column("rental_id")
    empty = pc.equal(pc.binary_length(ids), 0)
    out.parent.mkdir(parents=True, exist_ok=True)
    copies = 0
    with pa.OSFile(str(out), "wb") as sink:
        while sink.tell() < gigabytes * 1e9:
            prefixed = pc.if_else(empty, ids, pc.binary_join_element_wise(f"c{copies}", ids, ""))
            pacsv.write_csv(
                table.set_column(0, "rental_id", prefixed),
                sink,
                write_options=pacsv.WriteOptions(include_header=copies == 0, quoting_style="none"),
            )
            copies += 1
    took = time.perf_counter() - started
    print(f"built {out.name}: {copies} copies, {out.stat().st_size / 1e9:.2f} GB in {took:.0f} s")


def compare(label: str, path: Path, warm_up: Path | None, stage: bool = False) -> dict:
    """Validate `path` in a fresh process pinned to one core (after validating `warm_up` in it,
    if given); with `stage`, also write the staged Parquet as `carrental ingest` does."""
    wc = min(time_wc(path) for _ in range(3))  # best of 3: the file is in the page cache
    command = [sys.executable, __file__, "--child", str(path)]
    if warm_up:
        command += ["--warm-up", str(warm_up)]
    if stage:
        command += ["--stage"]
    measured = json.loads(subprocess.run(command, check=True, capture_output=True).stdout)
    size = measured["bytes"]
    return {
        "file": label,
        "size_mb": size / 1e6,
        "rows": measured["rows"],
        "accepted": measured["accepted"],
        "seconds": measured["seconds"],
        "mb_per_s": size / 1e6 / measured["seconds"],
        "mb_per_cpu_s": size / 1e6 / measured["cpu_seconds"],
        "rows_per_s": measured["rows"] / measured["seconds"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "wc_seconds": wc,
        "wc_mb_per_s": size / 1e6 / wc,
        "slower_than_wc": measured["seconds"] / wc,
        "load": os.getloadavg()[0],  # 1 minute, just after the measurement
    }


def time_wc(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["wc", "-l", str(path)], check=True, capture_output=True)
    return time.perf_counter() - started


def measure_in_this_process(path: Path, warm_up: Path | None, stage: bool) -> int:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    from carrental.validation import validate_path

    if warm_up:
        validate_path(warm_up)
    with tempfile.TemporaryDirectory(prefix="carrental-staged-") as staged:
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        verdict = staged_validation(path, Path(staged)) if stage else validate_path(path)
        seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "bytes": verdict.bytes,
                "rows": verdict.rows,
                "accepted": verdict.accepted,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds() - cpu_before,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )
    return 0


def staged_validation(path: Path, folder: Path):
    """Validation with the staged Parquet written alongside, committed once accepted (what
    carrental.local.store.LocalLake.ingest does, without the raw copy and the inputs record)."""
    from carrental.contracts import DATASETS
    from carrental.lake import infer_dataset
    from carrental.staging import StagedWriter
    from carrental.validation import validate_stream

    name = infer_dataset(str(path))
    writer = StagedWriter(DATASETS[name], folder)
    with open(path, "rb") as stream:
        verdict = validate_stream(stream, dataset=name, source=str(path), sink=writer)
    if verdict.accepted:
        writer.commit(folder / f"{verdict.sha256}.parquet")
    else:
        writer.discard()
    return verdict


def print_table(results: list[dict]) -> None:
    print(
        f"\n{'file':<34} {'MB':>8} {'rows':>12} {'MB/s':>7} {'MB/cpu-s':>9} {'rows/s':>11} "
        f"{'peak RSS':>9} {'wc -l MB/s':>11} {'x wc':>6} {'load':>5}"
    )
    for r in results:
        print(
            f"{r['file']:<34} {r['size_mb']:>8.1f} {r['rows']:>12,} {r['mb_per_s']:>7.0f} "
            f"{r['mb_per_cpu_s']:>9.0f} {r['rows_per_s']:>11,.0f} {r['peak_rss_mb']:>7.0f} MB "
            f"{r['wc_mb_per_s']:>11,.0f} {r['slower_than_wc']:>6.1f} {r['load']:>5.1f}"
        )
    print(f"(load: the 1-minute load average after each measurement, on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    sys.exit(main())
