"""The command line of the reference scripts (spark_floor.py, duckdb_kpis.py), as
benchmarks/run.py runs them in a child process (`reference_in_child`): `--input DIR --out DIR`,
then one JSON line on stdout with the wall-clock seconds and the script's own numbers."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path


def run_reference(description: str, compute: Callable[[Path, Path], dict]) -> int:
    """Time `compute(input folder, output folder)` and print its numbers with the seconds."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--input", type=Path, required=True, help="folder with the four CSVs")
    parser.add_argument("--out", type=Path, required=True, help="folder for the Parquet tables")
    args = parser.parse_args()
    started = time.perf_counter()
    numbers = compute(args.input, args.out)
    print(json.dumps({"seconds": time.perf_counter() - started, **numbers}))
    return 0
