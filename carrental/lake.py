"""The lake's layout, shared by the Spark jobs, the local lake and the AWS stack.

    <root>/raw/<dataset>/<name>                   landed files: an S3 upload; locally the copy
                                                  `carrental ingest` keeps
    <root>/quarantine/<dataset>/<stamp>-<name>    rejected files, each with <…>.errors.json beside
                                                  it; the stamp keeps every rejection's evidence
    <root>/staged/v1/<dataset>/<sha256>.parquet   every accepted file, parsed once into typed
                                                  Parquet, named by the SHA-256 of its bytes
                                                  (immutable: what was validated is what runs read)
    <root>/runs/<run_id>/manifest.json            the exact inputs of one run (carrental.inputs)
    <root>/processed/<table>/run_id=<id>/…        one Parquet folder per table per run
    <root>/reports/<run_id>/…                     the run's report
    <root>/published/runs.jsonl                   the publish record (carrental.publishing)

`root` is a local folder or an ``s3://bucket`` URI; paths are built as strings so both work.
Every run writes its own ``run_id=`` folders: a failed run never touches another run's tables.
Which run analysts see is decided by the publish record alone (docs/architecture.md).

Standard library only: imported on Lambda and EMR Serverless.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import PurePosixPath

from carrental.contracts import DATASETS

# Output tables and the job that writes each (docs/tables.md).
TABLES: dict[str, str] = {
    "location_performance": "vehicle_location_performance",
    "vehicle_type_performance": "vehicle_location_performance",
    "location_vehicle_type_performance": "vehicle_location_performance",
    "user_metrics": "user_transaction_analysis",
    "daily_metrics": "user_transaction_analysis",
    "business_summary": "user_transaction_analysis",
    "rental_rejects": "user_transaction_analysis",
    "data_quality": "user_transaction_analysis",
    "run_inputs": "user_transaction_analysis",
}
# The columns that identify a row of each table (none: the table has one row). Tables are
# written sorted by them, so that the same inputs give byte-identical files.
TABLE_KEYS: dict[str, tuple[str, ...]] = {
    "location_performance": ("location_id",),
    "vehicle_type_performance": ("vehicle_type",),
    "location_vehicle_type_performance": ("location_id", "vehicle_type"),
    "user_metrics": ("user_id",),
    "daily_metrics": ("rental_date",),
    "business_summary": (),
    "rental_rejects": ("source_file", "row_number"),
    "data_quality": ("dataset", "rule"),
    "run_inputs": ("input_order",),
}
# In a catalog, runs_<table> holds every run's rows (partition run_id) and <table> is a view of
# the published run's rows only.
RUNS_TABLE_PREFIX = "runs_"

RAW = "raw"
QUARANTINE = "quarantine"
# The staged layer's format version: a change to what staging writes gets a new folder, so a
# file staged by older code is never read as if it were the new format.
STAGED = "staged/v1"
RUNS = "runs"
PROCESSED = "processed"
REPORTS = "reports"
PUBLISHED_RECORD = "published/runs.jsonl"
MANIFEST_FILE = "manifest.json"

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def time_stamp(moment: datetime) -> str:
    """`moment` in UTC to the second, as run ids and quarantine stamps spell it: 20261201T101500Z."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def check_run_id(run_id: str) -> str:
    """Run ids become folder names and SQL literals: keep them to a safe alphabet."""
    if not RUN_ID_PATTERN.match(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use letters, digits, '.', '_' or '-' (max 128), "
            "starting with a letter or digit"
        )
    return run_id


# Spark hands every input path to Hadoop as a glob pattern, where these characters stand for
# other files ("rentals[1].csv" reads "rentals1.csv"). A backslash makes each one literal.
_HADOOP_GLOB = re.compile(r"([\\\[\]*?{}])")


def hadoop_literal(path: str) -> str:
    """`path` as a Hadoop glob that matches exactly that file or folder."""
    return _HADOOP_GLOB.sub(r"\\\1", path)


def hadoop_unreadable(path: str) -> str | None:
    """Why Spark cannot read `path` (an S3 key, local path or URI) at all, or None. A ':' in a
    path segment is no valid Hadoop path ("Relative path in absolute URI"), escaped or not."""
    if ":" in path.split("://", 1)[-1]:
        return (
            f"{path!r} has a ':' in its name, which Spark (Hadoop paths) cannot read; "
            "rename the file without ':'"
        )
    return None


def join(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def infer_dataset(path: str, explicit: str | None = None) -> str:
    """The dataset of a file: `explicit` if given, else the folder after ``raw/``
    (``raw/<dataset>/…``), else the parent folder's name, else the file name's stem."""
    known = ", ".join(DATASETS)
    if explicit is not None:
        if explicit not in DATASETS:
            raise ValueError(f"unknown dataset {explicit!r} (known: {known})")
        return explicit
    pure = PurePosixPath(path.replace("\\", "/"))
    folders = pure.parts[:-1]
    candidates = [folders[i + 1] for i, part in enumerate(folders[:-1]) if part == RAW]
    candidates += [*folders[-1:], pure.name.split(".")[0]]
    for name in candidates:
        if name in DATASETS:
            return name
    raise ValueError(
        f"cannot tell the dataset of {path!r}: pass --dataset, put the file under "
        f"{RAW}/<dataset>/ or name it <dataset>.csv (known datasets: {known})"
    )


def raw_key(dataset: str, name: str) -> str:
    return join(RAW, dataset, name)


def staged_key(dataset: str, sha256: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return join(STAGED, dataset, f"{sha256}.parquet")


def quarantine_keys(dataset: str, name: str, stamp: str) -> tuple[str, str]:
    """Where a rejected file and its error report go, relative to the lake root. `stamp` (the
    rejection's time, plus whatever makes it unique) keeps every earlier rejection's evidence:
    (quarantine/users/20261201T101500Z-users.csv, quarantine/users/…-users.csv.errors.json)."""
    key = join(QUARANTINE, dataset, f"{stamp}-{PurePosixPath(name).name}")
    return key, f"{key}.errors.json"


def run_prefix(root: str, run_id: str) -> str:
    return join(root, RUNS, check_run_id(run_id))


def manifest_key(run_id: str) -> str:
    return join(RUNS, check_run_id(run_id), MANIFEST_FILE)


def processed_prefix(root: str) -> str:
    return join(root, PROCESSED)


def table_run_path(processed: str, table: str, run_id: str) -> str:
    """Where one run of one table lives, under the processed prefix."""
    return join(processed, table, f"run_id={check_run_id(run_id)}")


def report_prefix(root: str, run_id: str) -> str:
    return join(root, REPORTS, check_run_id(run_id))
