"""Runs that reuse what earlier runs checked (carrental.checked) give exactly the tables of a run
that checks everything: each case runs on a lake whose earlier runs left checked entries, and
compares with the independent computation of reference/kpis.py over the same
history, and with a fresh lake's run byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carrental import checked, lake
from carrental.local.store import LocalLake
from carrental.spark.jobs import JOBS, check_batch, run_job
from carrental.spark.sources import StagedInputs
from carrental.tables import KPI_TABLES, USER_TRANSACTION_ANALYSIS, VEHICLE_LOCATION_PERFORMANCE
from reference.kpis import canonical, reference_tables
from tests.conftest import write_orphan_rentals
from tests.spark.test_jobs import inputs_by_file_name, read_output
from tests.spark.test_staging import rejects_of, split_rentals

pytestmark = pytest.mark.spark

RENTALS = "rental_transactions"


def run(spark, store: LocalLake, run_id: str, threshold: float = 0.05) -> Path:
    """Both jobs on the lake's current inputs, checked once (as the local runner does)."""
    manifest = store.inputs().manifest(run_id, "2026-12-01T00:00:00+00:00", threshold)
    store.start_run(manifest)
    source = StagedInputs(str(store.root), manifest, keep_checked=True)
    output = lake.processed_prefix(str(store.root))
    batch = check_batch(spark, source)
    try:
        for job in JOBS:
            run_job(job, spark, source, output, run_id, batch=batch)
    finally:
        batch.unpersist()
    return Path(output)


def complete(store: LocalLake, dataset: str) -> set[str]:
    folder = Path(checked.dataset_prefix(str(store.root), dataset), checked.COMPLETE)
    markers = [checked.Marker.parse(p.name) for p in folder.iterdir()] if folder.is_dir() else []
    return {m.name for m in markers if m is not None}


def assert_as_computed(
    output: Path, run_id: str, dims: Path, history: list[Path], threshold: float = 0.05
) -> None:
    expected = reference_tables(dims, history, threshold)
    for table in (*KPI_TABLES, "data_quality"):
        found = canonical(read_output(output, table, run_id)[1])
        assert found == canonical(expected[table]), table
    assert canonical(rejects_of(output, run_id)) == canonical(expected["rental_rejects"])
    assert sorted(inputs_by_file_name(output, run_id)) == sorted(
        (d, Path(f).name, n, r, s) for d, f, n, r, s in expected["run_inputs"]
    )


def assert_same_files(output: Path, run_id: str, fresh: Path, fresh_run: str) -> None:
    for table in (*KPI_TABLES, "data_quality", "rental_rejects"):
        files = [
            sorted(p.read_bytes() for p in Path(lake.table_run_path(str(o), table, r)).iterdir())
            for o, r in ((output, run_id), (fresh, fresh_run))
        ]
        assert files[0] == files[1], table


def fresh_run(spark, dims: Path, history: list[Path], root: Path, snapshots=None) -> Path:
    store = LocalLake(root)
    for name in ("vehicles", "locations", "users"):
        assert store.ingest((snapshots or {}).get(name, dims / f"{name}.csv")).verdict.accepted
    for day in history:
        assert store.ingest(day, dataset=RENTALS).verdict.accepted
    return run(spark, store, "fresh")


@pytest.fixture(scope="module")
def days(clean_batch, tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("days")
    return split_rentals(
        clean_batch / f"{RENTALS}.csv",
        folder,
        {"day1.csv": slice(0, 1500), "day2.csv": slice(1500, 3000), "day3.csv": slice(3000, None)},
    )


def lake_with(clean_batch: Path, files: list[Path], root: Path) -> LocalLake:
    store = LocalLake(root)
    for name in ("vehicles", "locations", "users"):
        assert store.ingest(clean_batch / f"{name}.csv").verdict.accepted
    for day in files:
        assert store.ingest(day, dataset=RENTALS).verdict.accepted, day
    return store


@pytest.fixture(scope="module")
def ran_once(spark, clean_batch, days, tmp_path_factory) -> dict[int, Path]:
    """Lakes that ingested the dimensions and the first 2 or all 3 days and ran once ("first"),
    by the number of days: a test that starts there works on a copy (a run costs seconds)."""
    lakes = {}
    for count in (2, 3):
        root = tmp_path_factory.mktemp(f"ran_once_{count}") / "lake"
        run(spark, lake_with(clean_batch, days[:count], root), "first")
        lakes[count] = root
    return lakes


def copy_of(lake_root: Path, root: Path) -> LocalLake:
    shutil.copytree(lake_root, root)
    return LocalLake(root)


def test_a_new_file_is_checked_against_the_kept_history(
    spark, clean_batch, days, ran_once, tmp_path
):
    store = copy_of(ran_once[2], tmp_path / "lake")
    kept = complete(store, RENTALS)
    assert len(kept) == 2 and len(complete(store, checked.AGGREGATES)) == 1
    # the new day repeats two rentals of day 1: rejected as repeats, found in the kept rows
    rows = days[0].read_text().splitlines()[1:]
    day3 = tmp_path / "day3.csv"
    day3.write_text(days[2].read_text() + "\n".join(rows[:2]) + "\n")
    assert store.ingest(day3, dataset=RENTALS).verdict.accepted
    output = run(spark, store, "second")
    assert kept < complete(store, RENTALS) and len(complete(store, RENTALS)) == 3
    assert_as_computed(output, "second", clean_batch, [*days[:2], day3])
    assert {r[8] for r in rejects_of(output, "second")} == {"rental_id_unique"}
    fresh = fresh_run(spark, clean_batch, [*days[:2], day3], tmp_path / "fresh")
    assert_same_files(output, "second", fresh, "fresh")


def test_a_correction_in_the_middle_rechecks_the_files_after_it(
    spark, clean_batch, days, ran_once, tmp_path
):
    store = copy_of(ran_once[3], tmp_path / "lake")
    # day2 corrected: it now also holds three of day3's rentals, which become repeats in day3
    corrected = tmp_path / "corrected" / "day2.csv"
    corrected.parent.mkdir()
    day3_rows = days[2].read_text().splitlines()[1:4]
    corrected.write_text(days[1].read_text() + "\n".join(day3_rows) + "\n")
    assert store.ingest(corrected, dataset=RENTALS).change == "replaced"
    output = run(spark, store, "second")
    assert_as_computed(output, "second", clean_batch, [days[0], corrected, days[2]])
    repeats = [r for r in rejects_of(output, "second") if r[8] == "rental_id_unique"]
    assert sorted(r[9] for r in repeats) == ["day3.csv"] * 3
    fresh = fresh_run(spark, clean_batch, [days[0], corrected, days[2]], tmp_path / "fresh")
    assert_same_files(output, "second", fresh, "fresh")


def test_a_new_snapshot_rechecks_every_rental(spark, clean_batch, days, ran_once, tmp_path):
    store = copy_of(ran_once[3], tmp_path / "lake")
    # the users file without its first 40 users: their rentals become orphans, and the others
    # still count (their warnings too)
    header, *users = (clean_batch / "users.csv").read_text().splitlines()
    fewer = tmp_path / "fewer" / "users.csv"
    fewer.parent.mkdir()
    fewer.write_text("\n".join([header, *users[40:]]) + "\n")
    assert store.ingest(fewer).change == "replaced"
    output = run(spark, store, "second")
    dims = tmp_path / "dims"
    dims.mkdir()
    for name in ("vehicles", "locations"):
        shutil.copy(clean_batch / f"{name}.csv", dims)
    shutil.copy(fewer, dims / "users.csv")
    assert_as_computed(output, "second", dims, days)
    assert any(r[8] == "user_id_exists" for r in rejects_of(output, "second"))
    fresh = fresh_run(spark, clean_batch, days, tmp_path / "fresh", {"users": fewer})
    assert_same_files(output, "second", fresh, "fresh")


def test_a_held_back_file_in_the_kept_history_still_counts_as_the_gate_decided(
    spark, clean_batch, days, tmp_path
):
    """day2 is held back (orphans) and stays in the history (the run was never published, so it
    was not withdrawn). A later file repeating a few of its ids: those are repeats when the
    gate judges the files (every file counts), not when the used files are checked."""
    orphans = write_orphan_rentals(days[0], tmp_path / "orphans.csv", "o", 60)
    store = lake_with(clean_batch, [days[0], orphans, days[1]], tmp_path / "lake")
    run(spark, store, "first")
    assert any(n.split(".")[1] == checked.HELD_BACK for n in complete(store, RENTALS))
    # a few (< 5 %) of the orphans' ids, with valid vehicles, in the new file
    header, *day3 = days[2].read_text().splitlines()
    rows = days[0].read_text().splitlines()[1:]  # the rows the orphans were made from
    repeated = [",".join(["o" + r.split(",", 1)[0][1:], r.split(",", 1)[1]]) for r in rows[:3]]
    last = tmp_path / "day3.csv"
    last.write_text("\n".join([header, *day3, *repeated]) + "\n")
    assert store.ingest(last, dataset=RENTALS).verdict.accepted
    output = run(spark, store, "second")
    history = [days[0], orphans, days[1], last]
    assert_as_computed(output, "second", clean_batch, history)
    statuses = {f: s for _, f, _, _, s in inputs_by_file_name(output, "second")}
    assert statuses["orphans.csv"] == "held_back" and statuses["day3.csv"] == "used"
    fresh = fresh_run(spark, clean_batch, history, tmp_path / "fresh")
    assert_same_files(output, "second", fresh, "fresh")


def test_a_changed_reject_threshold_judges_every_file_again(spark, clean_batch, days, tmp_path):
    """day2 with 3 % of its rows rejected (repeats of day1's rentals): used at 5 %, held back at
    2 %, and used again at 5 % (those entries read again, not the 2 % ones)."""
    header, *rows = days[1].read_text().splitlines()
    repeats = days[0].read_text().splitlines()[1:46]
    day2 = tmp_path / "day2.csv"
    day2.write_text("\n".join([header, *rows, *repeats]) + "\n")
    history = [days[0], day2, days[2]]
    store = lake_with(clean_batch, history, tmp_path / "lake")
    run(spark, store, "first")
    for run_id, threshold, status in (("strict", 0.02, "held_back"), ("again", 0.05, "used")):
        output = run(spark, store, run_id, threshold)
        assert_as_computed(output, run_id, clean_batch, history, threshold)
        statuses = {f: s for _, f, _, _, s in inputs_by_file_name(output, run_id)}
        assert statuses["day2.csv"] == status
    assert len(complete(store, RENTALS)) == 6  # three files in two contexts
    fresh = fresh_run(spark, clean_batch, history, tmp_path / "fresh")
    assert_same_files(output, "again", fresh, "fresh")


def test_entries_of_other_check_code_are_never_read(
    spark, clean_batch, days, ran_once, tmp_path, monkeypatch
):
    """Every entry that the first run wrote is made unreadable; a run under a changed
    fingerprint (new check code or contracts) must not read any of them."""
    store = copy_of(ran_once[3], tmp_path / "lake")
    layer = Path(store.root, checked.CHECKED)
    written = [p for p in layer.rglob("*.parquet")]
    assert written
    for path in written:
        path.write_bytes(b"not parquet: written by other code")
    monkeypatch.setattr(checked, "fingerprint", lambda: "0" * 64)
    output = run(spark, store, "second")
    assert_as_computed(output, "second", clean_batch, days)
    # and the fingerprint follows the code it names
    monkeypatch.undo()
    before = checked.fingerprint()
    checked.fingerprint.cache_clear()
    changed = tmp_path / "package"
    shutil.copytree(Path(checked.__file__).parent, changed / "carrental")
    rules = changed / "carrental" / "spark" / "rules.py"
    rules.write_text(rules.read_text() + "\n# a change\n")
    monkeypatch.setattr(checked.resources, "files", lambda _: changed / "carrental")
    assert checked.fingerprint() != before
    checked.fingerprint.cache_clear()


def test_only_the_writer_job_writes_entries_and_a_partial_entry_is_never_read(
    spark, clean_batch, days, tmp_path
):
    store = lake_with(clean_batch, days[:2], tmp_path / "lake")
    manifest = store.inputs().manifest("alone", "2026-12-01T00:00:00+00:00", 0.05)
    source = StagedInputs(str(store.root), manifest, keep_checked=True)
    output = lake.processed_prefix(str(store.root))
    run_job(USER_TRANSACTION_ANALYSIS, spark, source, output, "alone")
    assert not Path(store.root, checked.CHECKED).exists()
    # an interrupted write: data without its marker, under a name no marker gives
    entry = checked.history_entries(manifest)[0][1]
    partial = Path(
        checked.data_path(str(store.root), RENTALS, checked.Marker(entry, "used", "crashed-1"))
    )
    partial.mkdir(parents=True)
    (partial / "part-00000.parquet").write_bytes(b"not parquet")
    run_job(VEHICLE_LOCATION_PERFORMANCE, spark, source, output, "alone")
    assert len(complete(store, RENTALS)) == 2
    again = run(spark, store, "again")
    assert_as_computed(again, "again", clean_batch, days[:2])
    checked.prune_local(store.root, [store.manifest("again")])
    assert not partial.exists()
    assert len(complete(store, RENTALS)) == 2 and len(complete(store, checked.AGGREGATES)) == 1


def test_prune_keeps_the_entries_of_kept_runs_only(spark, days, ran_once, tmp_path, monkeypatch):
    store = copy_of(ran_once[2], tmp_path / "lake")
    store.publish("first")
    first = store.manifest("first")
    assert store.ingest(days[2], dataset=RENTALS).verdict.accepted
    run(spark, store, "second")
    store.publish("second")
    assert len(complete(store, checked.AGGREGATES)) == 2
    # the lake's prune after a publish (carrental.local.store), keeping one published run
    monkeypatch.setattr("carrental.local.store.KEEP_PUBLISHED_RUNS", 1)
    store.prune()
    assert len(complete(store, RENTALS)) == 3  # the second run's history holds all three
    assert len(complete(store, checked.AGGREGATES)) == 1  # the first run's end is not needed
    checked.prune_local(store.root, [])
    assert not any(complete(store, name) for name in checked.LAYER_DATASETS)
    rows = Path(checked.dataset_prefix(str(store.root), RENTALS), checked.ROWS)
    assert not any(rows.iterdir())
    assert (
        checked.manifest_entries(first)[RENTALS]
        < checked.manifest_entries(store.manifest("second"))[RENTALS]
    )


def test_a_failed_run_leaves_nothing_in_the_layer_but_other_runs_entries(tmp_path):
    """discard_local (called when a local run fails): the run's markers and data go, complete
    or not; another run's entries stay, a run id that merely starts like it included."""
    entry = "e" * 64
    writes = {"r1": checked.new_write("r1"), "r1-b": checked.new_write("r1-b")}
    for run_id, write in writes.items():
        data = Path(checked.data_path(str(tmp_path), RENTALS, checked.Marker(entry, "used", write)))
        data.mkdir(parents=True)
        (data / "part-0.parquet").write_bytes(b"rows")
        if run_id == "r1-b":  # r1's write never completed
            marker = Path(
                checked.marker_path(str(tmp_path), RENTALS, checked.Marker(entry, "used", write))
            )
            marker.parent.mkdir(parents=True)
            marker.touch()
    checked.discard_local(tmp_path, "r1")
    rows = Path(checked.dataset_prefix(str(tmp_path), RENTALS), checked.ROWS)
    assert sorted(p.name for p in rows.iterdir()) == [writes["r1-b"]]
    checked.discard_local(tmp_path, "r1-b")
    assert not any(rows.iterdir())
    assert not any(Path(checked.dataset_prefix(str(tmp_path), RENTALS), checked.COMPLETE).iterdir())
