"""`carrental runs`: every run of a lake with its status, and two runs compared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrental.cli import main
from carrental.inputs import InputFile, Inputs
from carrental.local.runs import UnknownRun, compare, list_runs
from carrental.local.store import LocalLake

SUMMARY_A = [
    ["total_revenue", "1750.00", "decimal"],
    ["rental_count", "5", "integer"],
    ["top_location_name", "Bean LLC", "text"],
]
SUMMARY_B = [
    ["total_revenue", "1800.50", "decimal"],
    ["rental_count", "7", "integer"],
    ["top_location_name", "Hill Inc", "text"],
]


def manifest_of(run_id: str, rental_files: int):
    inputs = Inputs()
    for n, dataset in enumerate(("vehicles", "locations", "users")):
        inputs.accept(InputFile(dataset, f"raw/{dataset}/{dataset}.csv", f"{n}" * 64, 1, "", ""))
    for n in range(rental_files):
        key = f"raw/rental_transactions/day{n}.csv"
        inputs.accept(InputFile("rental_transactions", key, f"{n + 5}" * 64, 1, f"{n}", f"{n}"))
    return inputs.manifest(run_id, f"2026-12-0{rental_files}T10:00:00+00:00", 0.05)


@pytest.fixture
def lake(tmp_path: Path) -> LocalLake:
    """Three runs: r1 published, r2 failed in its report stage, r3 published (current)."""
    store = LocalLake(tmp_path / "lake")
    for run_id, files in (("r1", 1), ("r2", 2), ("r3", 3)):
        store.start_run(manifest_of(run_id, files))
    store.record_status("r1", "published", summary=SUMMARY_A)
    store.publish("r1")
    store.record_status("r2", "failed", failed_stage="summary + report")
    store.record_status("r3", "published", summary=SUMMARY_B, held_back=["raw/x.csv"])
    store.publish("r3")
    return store


def test_every_run_is_listed_with_its_state(lake):
    listed = [
        (r.run_id, r.state, r.failed_stage, r.rental_files, r.held_back) for r in list_runs(lake)
    ]
    assert listed == [
        ("r1", "published", "", 1, 0),
        ("r2", "failed", "summary + report", 2, 0),
        ("r3", "current", "", 3, 1),
    ]
    assert [r.total_revenue for r in list_runs(lake)] == ["1750.00", "", "1800.50"]


def test_two_runs_compared_kpi_by_kpi(lake):
    assert compare(lake, "r1", "r3") == [
        ("total_revenue", "1750.00", "1800.50", "+50.50"),
        ("rental_count", "5", "7", "+2"),
        ("top_location_name", "Bean LLC", "Hill Inc", "changed"),
    ]
    with pytest.raises(UnknownRun, match="r2 is failed: only published runs"):
        compare(lake, "r1", "r2")
    with pytest.raises(UnknownRun, match="no run 'nope'"):
        compare(lake, "nope", "r1")


def test_the_command_prints_the_runs_and_the_comparison(lake, capsys):
    assert main(["runs", "--lake", str(lake.root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["run_id"], r["state"], r["total_revenue"]) for r in listed] == [
        ("r1", "published", "1750.00"),
        ("r2", "failed", None),
        ("r3", "current", "1800.50"),
    ]
    assert main(["runs", "--lake", str(lake.root)]) == 0
    table = capsys.readouterr().out
    assert "failed:" in table and "current" in table and "1800.50" in table
    assert max(len(line) for line in table.splitlines()) <= 80
    assert main(["runs", "--lake", str(lake.root), "--compare", "r1", "r3"]) == 0
    assert "+50.50" in capsys.readouterr().out
    assert main(["runs", "--lake", str(lake.root), "--compare", "r1", "r2"]) == 1
    assert "only published runs" in capsys.readouterr().err
