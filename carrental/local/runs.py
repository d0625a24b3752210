"""`carrental runs`: the runs of a lake, and two runs' headline KPIs side by side.

Everything comes from the lake itself: each run's folder (runs/<id>/manifest.json and
status.json, where a published run keeps its summary.csv rows) and the publish record, which
alone says which runs are published and which one is current.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from carrental.inputs import HISTORY_DATASET
from carrental.local.store import LocalLake
from carrental.publishing import current_run

# status.json states -> what `carrental runs` calls them; published runs are "published" or
# "current" by the publish record, whatever their status file says.
STATES = ("current", "published", "failed", "interrupted", "running", "unknown")


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    started_at: str
    state: str
    failed_stage: str
    inputs: int  # files in the manifest
    rental_files: int
    held_back: int
    summary: dict[str, tuple[str, str]]  # metric -> (value, value_type), for published runs

    @property
    def total_revenue(self) -> str:
        return self.summary.get("total_revenue", ("", ""))[0]

    def to_dict(self) -> dict:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "state": self.state,
            "failed_stage": self.failed_stage or None,
            "inputs": self.inputs,
            "rental_files": self.rental_files,
            "held_back": self.held_back,
            "total_revenue": self.total_revenue or None,
        }


class UnknownRun(LookupError):
    pass


def list_runs(lake: LocalLake) -> list[RunInfo]:
    """Every run of the lake, oldest first."""
    published = lake.published()
    current = current_run(published)
    published_ids = {run.run_id for run in published}
    runs = []
    for run_id in lake.run_ids():
        status = lake.status(run_id)
        try:
            manifest = lake.manifest(run_id)
            inputs = len(manifest.inputs)
            rental_files = len(manifest.of(HISTORY_DATASET))
        except (FileNotFoundError, ValueError):
            inputs = rental_files = 0
        if run_id == current:
            state = "current"
        elif run_id in published_ids:
            state = "published"
        else:
            state = status.get("state", "unknown")
            state = "unknown" if state == "published" else state  # not in the record
        runs.append(
            RunInfo(
                run_id=run_id,
                started_at=status.get("started_at", ""),
                state=state if state in STATES else "unknown",
                failed_stage=status.get("failed_stage", ""),
                inputs=inputs,
                rental_files=rental_files,
                held_back=len(status.get("held_back", [])),
                summary={m: (v, t) for m, v, t in status.get("summary", [])},
            )
        )
    return sorted(runs, key=lambda r: (r.started_at, r.run_id))


def _number(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except (InvalidOperation, TypeError):
        return None


def compare(lake: LocalLake, first: str, second: str) -> list[tuple[str, str, str, str]]:
    """(metric, value of `first`, value of `second`, difference) for every headline KPI; the
    difference of numbers is second - first, of anything else "same" or "changed"."""
    runs = {run.run_id: run for run in list_runs(lake)}
    for run_id in (first, second):
        if run_id not in runs:
            raise UnknownRun(f"no run {run_id!r} in {lake.root} (see `carrental runs`)")
        if not runs[run_id].summary:
            raise UnknownRun(
                f"run {run_id} is {runs[run_id].state}: only published runs have KPIs to compare"
            )
    a, b = runs[first].summary, runs[second].summary
    rows = []
    for metric in dict.fromkeys([*a, *b]):
        (value_a, kind), (value_b, _) = a.get(metric, ("", "")), b.get(metric, ("", ""))
        number_a, number_b = _number(value_a), _number(value_b)
        if kind in ("decimal", "integer") and number_a is not None and number_b is not None:
            difference = f"{number_b - number_a:+}"
        else:
            difference = "same" if value_a == value_b else "changed"
        rows.append((metric, value_a, value_b, difference))
    return rows
