"""The staged layer against Spark's own parse, and the jobs on a manifest of staged files.

The upload validator stages every accepted file as typed Parquet (carrental.staging); the jobs
read that instead of the CSV. These tests hold the two parsers to the same values, row by row
and column by column, and run the jobs on a staged rental history against the independent
computation of reference/kpis.py.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from carrental import lake
from carrental.contracts import DATASETS
from carrental.inputs import InputFile
from carrental.local.store import LocalLake
from carrental.spark.io import (
    MALFORMED,
    ROW_NUMBER,
    SOURCE_FILE,
    read_dataset,
    read_staged,
    with_row_numbers,
)
from carrental.spark.jobs import JOBS, run_job
from carrental.spark.rules import parse, raw
from carrental.spark.sources import StagedInputs
from carrental.staging import StagedWriter
from carrental.validation import validate_stream
from reference.kpis import canonical, reference_tables
from tests.spark.test_jobs import inputs_by_file_name, read_output

pytestmark = pytest.mark.spark

# Rentals whose texts are valid in more than one spelling, or not valid at all: the staged
# value of each must be what Spark's CSV parse makes of it (null where it does not parse).
TRICKY_RENTALS = """rental_id,user_id,vehicle_id,rental_start_time,rental_end_time,\
pickup_location,dropoff_location,total_amount
r1,u1,v1,2024-02-29 23:59:59,2024-03-01 00:00:00,007,-0,10.5
r2,u1,v1,1999-12-31 00:00:00,2000-01-01 00:00:00,2147483647,-2147483648,0.00
r3,u1,v1,2024-02-30 10:00:00,2024-13-01 10:00:00,2147483648,1e3,1.005
r4,,v1,,2024-03-01 00:00:00,,12,
"r5, quoted",u1,"",2024-03-10 02:30:00,2024-03-10 03:30:00,1,2,"1234567890.12"
r6,u1,v1,0001-01-01 00:00:00,9999-12-31 23:59:59,-5,5,-10.50
"""


def stage(path: Path, dataset: str, root: Path) -> InputFile:
    """Stage `path` into the lake `root` whatever its verdict (the writer sees every row it
    checks); the InputFile that names it."""
    writer = StagedWriter(DATASETS[dataset], root / "partial")
    with open(path, "rb") as stream:
        verdict = validate_stream(stream, dataset=dataset, source=str(path), sink=writer)
    file = InputFile(dataset, lake.raw_key(dataset, path.name), "0" * 64, verdict.rows, "", "")
    writer.commit(root / file.staged)
    return file


def assert_same_as_spark_parse(spark, csv_path: Path, dataset: str, root: Path) -> int:
    ds = DATASETS[dataset]
    file = stage(csv_path, dataset, root)
    from_staged = read_staged(spark, str(root), [file], ds)
    from_csv = with_row_numbers(parse(read_dataset(spark, str(csv_path), ds), ds))
    columns = [*ds.header, *[raw(c) for c in ds.header], ROW_NUMBER]
    staged_rows = canonical([tuple(r) for r in from_staged.select(*columns).collect()])
    csv_rows = canonical([tuple(r) for r in from_csv.select(*columns).collect()])
    assert staged_rows == csv_rows
    assert from_staged.filter(F.col(MALFORMED).isNotNull()).count() == 0
    assert {r[SOURCE_FILE] for r in from_staged.select(SOURCE_FILE).collect()} == {file.key}
    return len(staged_rows)


def test_tricky_values_are_staged_as_spark_parses_them(spark, tmp_path):
    path = tmp_path / "rental_transactions.csv"
    path.write_text(TRICKY_RENTALS)
    assert assert_same_as_spark_parse(spark, path, "rental_transactions", tmp_path / "lake") == 6
    staged = pq.read_table(next((tmp_path / "lake").rglob("*.parquet"))).to_pylist()
    # spot checks against the texts above, by hand
    assert [r["pickup_location"] for r in staged] == [7, 2147483647, None, None, 1, -5]
    assert [str(r["total_amount"]) for r in staged] == [
        "10.50",
        "0.00",
        "None",
        "None",
        "1234567890.12",
        "-10.50",
    ]
    assert staged[2]["rental_start_time"] is None and staged[2]["_raw_total_amount"] == "1.005"
    assert staged[4]["rental_id"] == "r5, quoted" and staged[4]["vehicle_id"] is None


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_dataset_of_a_dirty_batch_is_staged_as_spark_parses_it(
    spark, dirty_batch, dataset, tmp_path
):
    path = dirty_batch / f"{dataset}.csv"
    rows = assert_same_as_spark_parse(spark, path, dataset, tmp_path / "lake")
    assert rows >= 60  # the batch's smallest file, locations, has 60 rows


def split_rentals(source: Path, folder: Path, parts: dict[str, slice]) -> list[Path]:
    """Write slices of a rentals file's data lines as files of their own."""
    header, *lines = source.read_text().splitlines()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, part in parts.items():
        path = folder / name
        path.write_text("\n".join([header, *lines[part]]) + "\n")
        written.append(path)
    return written


def staged_run(spark, store: LocalLake, run_id: str) -> tuple[Path, dict[str, int]]:
    manifest = store.inputs().manifest(run_id, "2026-12-01T00:00:00+00:00", 0.05)
    source = StagedInputs(str(store.root), manifest)
    output = lake.processed_prefix(str(store.root))
    counts = {}
    for job in JOBS:
        counts |= run_job(job, spark, source, output, run_id)
    return Path(output), counts


def rejects_of(output: Path, run_id: str) -> list[tuple]:
    columns, rows = read_output(output, "rental_rejects", run_id)
    source = columns.index("source_file")
    return [(*r[:source], Path(r[source]).name, *r[source + 1 :]) for r in rows]


def test_a_history_of_rental_files_is_one_set_of_rentals(spark, clean_batch, tmp_path):
    """Three daily files: day2 repeats a few of day1's rentals (rejected as repeats, kept once),
    day3 rents vehicles that do not exist (held back whole)."""
    days = tmp_path / "days"
    rentals = clean_batch / "rental_transactions.csv"
    day1, day2 = split_rentals(
        rentals, days, {"day1.csv": slice(0, 2000), "day2.csv": slice(2000, None)}
    )
    header, *rows = day1.read_text().splitlines()
    with open(day2, "a") as f:  # 10 rentals exported again: < 5 % of day2's rows
        f.write("\n".join(rows[:10]) + "\n")
    orphans = days / "day3.csv"
    unknown_vehicle = [  # new rental ids (x…), a vehicle id no vehicle has
        ",".join(["x" + rental[1:], user, "ffffffffff", *rest])
        for rental, user, _, *rest in (row.split(",") for row in rows[:50])
    ]
    orphans.write_text("\n".join([header, *unknown_vehicle]) + "\n")
    store = LocalLake(tmp_path / "lake")
    for name in ("vehicles", "locations", "users"):
        assert store.ingest(clean_batch / f"{name}.csv").verdict.accepted
    for day in (day1, day2, orphans):
        ingested = store.ingest(day, dataset="rental_transactions")
        assert ingested.verdict.accepted, ingested.verdict.render()
    output, counts = staged_run(spark, store, "history")
    expected = reference_tables(clean_batch, [day1, day2, orphans])
    assert [s for s in expected["run_inputs"] if s[4] == "held_back"] == [
        ("rental_transactions", "day3.csv", 50, 50, "held_back")
    ]
    assert sorted(inputs_by_file_name(output, "history")) == sorted(
        (d, Path(f).name if d != "rental_transactions" else f, n, r, s)
        for d, f, n, r, s in expected["run_inputs"]
    )
    for table in ("location_performance", "user_metrics", "daily_metrics", "business_summary"):
        assert canonical(read_output(output, table, "history")[1]) == canonical(expected[table])
    assert canonical(rejects_of(output, "history")) == canonical(expected["rental_rejects"])
    assert {r[8] for r in rejects_of(output, "history")} == {"rental_id_unique"}
    assert counts["rental_rejects"] == 10


def test_the_same_content_under_two_names_counts_once(spark, clean_batch, tmp_path):
    store = LocalLake(tmp_path / "lake")
    for name in ("vehicles", "locations", "users"):
        store.ingest(clean_batch / f"{name}.csv")
    rentals = clean_batch / "rental_transactions.csv"
    copy = tmp_path / "export-again.csv"
    copy.write_bytes(rentals.read_bytes())
    store.ingest(rentals)
    store.ingest(copy, dataset="rental_transactions")
    output, counts = staged_run(spark, store, "twice")
    statuses = {f: s for _, f, _, _, s in inputs_by_file_name(output, "twice")}
    assert statuses["rental_transactions.csv"] == "used"
    assert statuses["export-again.csv"] == "held_back"
    once = reference_tables(clean_batch)
    assert canonical(read_output(output, "business_summary", "twice")[1]) == canonical(
        once["business_summary"]
    )
    assert counts["rental_rejects"] == 0
