"""The lake's layout, shared by the Spark jobs, the local runner and the AWS stack.

    <root>/raw/<dataset>/…                     landing zone; never modified by the pipeline
    <root>/quarantine/<dataset>/…              rejected files + <file>.errors.json beside each
    <root>/processed/<table>/run_id=<id>/…     one Parquet folder per table per run
    <root>/reports/<run_id>/…                  CSV reports

`root` is a local folder or an ``s3://bucket`` URI; paths are built as strings so both work.
Every run writes its own ``run_id=`` folder: re-running a run id replaces only that folder, and
a failed run never touches the tables of earlier runs. Readers pick the latest *published* run.

Standard library only: imported on Lambda and EMR Serverless.
"""

from __future__ import annotations

import re

# Output tables and the job that writes each (DESIGN.md, "Output data products").
TABLES: dict[str, str] = {
    "location_performance": "vehicle_location_performance",
    "vehicle_type_performance": "vehicle_location_performance",
    "location_vehicle_type_performance": "vehicle_location_performance",
    "user_metrics": "user_transaction_analysis",
    "daily_metrics": "user_transaction_analysis",
    "business_summary": "user_transaction_analysis",
    "rental_rejects": "user_transaction_analysis",
    "data_quality": "user_transaction_analysis",
}

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


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


def raw_prefix(root: str, dataset: str) -> str:
    return join(root, "raw", dataset)


def quarantine_prefix(root: str, dataset: str) -> str:
    return join(root, "quarantine", dataset)


def processed_prefix(root: str) -> str:
    return join(root, "processed")


def table_run_path(processed: str, table: str, run_id: str) -> str:
    """Where one run of one table lives, under the processed prefix (what jobs get as --output)."""
    return join(processed, table, f"run_id={check_run_id(run_id)}")


def report_prefix(root: str, run_id: str) -> str:
    return join(root, "reports", check_run_id(run_id))
