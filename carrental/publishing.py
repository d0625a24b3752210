"""Publishing: which run analysts see, decided by one record, on both paths.

The publish record (``published/runs.jsonl`` under the lake root, carrental.lake) has one JSON
line per published run, oldest first; the last published run is the *current* one
(``is_current``). Publishing a run is one write of the whole record: an S3 PutObject on AWS
(atomic: a reader sees the old object or the new one), an `os.replace` of a file written
beside it locally. Nothing else changes when a run is published, because every catalog derives
what it shows from the record:

- ``runs_<table>`` (RUNS_TABLE_PREFIX) holds every run's rows of a table, partitioned by
  ``run_id`` (the Glue crawlers' tables; locally a view over the Parquet folders);
- ``published_runs`` is the record as a table;
- ``<table>`` is a view of ``runs_<table>`` restricted to the current run (`view_sql`), so
  ``SELECT * FROM location_performance`` means the published run's rows in Athena and in
  `carrental query` alike, and earlier runs stay queryable in ``runs_<table>`` by run id.

Standard library only: imported on Lambda.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from carrental import lake

PUBLISHED_RUNS_TABLE = "published_runs"
# The record's columns, in order, with their SQL types (the Glue table, the local view).
RECORD_COLUMNS = {
    "run_id": "VARCHAR",
    "published_at": "VARCHAR",
    "manifest": "VARCHAR",
    "is_current": "BOOLEAN",
}


class RecordError(ValueError):
    """The publish record cannot be read; the message names the problem."""


@dataclass(frozen=True)
class PublishedRun:
    run_id: str
    published_at: str  # ISO 8601, UTC
    manifest: str  # the run's manifest, relative to the lake root
    is_current: bool


def parse_record(text: str, source: str = lake.PUBLISHED_RECORD) -> list[PublishedRun]:
    runs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            runs.append(PublishedRun(**{name: data[name] for name in RECORD_COLUMNS}))
        except (ValueError, KeyError, TypeError) as exc:
            raise RecordError(
                f"{source} line {number} is not a published run ({exc}); restore the file or "
                "remove the line"
            ) from None
    if sum(run.is_current for run in runs) > 1:
        raise RecordError(f"{source} marks more than one run as current")
    return runs


def render_record(runs: list[PublishedRun]) -> str:
    return "".join(json.dumps(asdict(run), ensure_ascii=False) + "\n" for run in runs)


def with_published(
    runs: list[PublishedRun], run_id: str, published_at: str, manifest: str
) -> list[PublishedRun]:
    """The record after publishing `run_id`: appended (or moved to the end, if republished)
    and the only current run."""
    earlier = [replace(run, is_current=False) for run in runs if run.run_id != run_id]
    return [*earlier, PublishedRun(lake.check_run_id(run_id), published_at, manifest, True)]


def current_run(runs: list[PublishedRun]) -> str | None:
    return next((run.run_id for run in runs if run.is_current), None)


def runs_table(table: str) -> str:
    return f"{lake.RUNS_TABLE_PREFIX}{table}"


def view_sql(table: str) -> str:
    """The current view of `table`, in Athena (Trino) SQL; the local catalog transpiles it."""
    return (
        f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM {runs_table(table)} "
        f"WHERE run_id IN (SELECT run_id FROM {PUBLISHED_RUNS_TABLE} WHERE is_current)"
    )
