"""Both jobs end to end on generated batches: every output table against an independent
computation (reference/kpis.py), rejects against defects.json, idempotent runs."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F

from carrental import lake, tables
from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD
from carrental.spark.io import InputError, write_table
from carrental.spark.jobs import JOBS, CheckedBatch, check_batch, run_job
from carrental.spark.sources import CsvInputs
from reference.kpis import canonical, reference_tables
from tests.table_checks import defined_columns, key_violations, written_columns

pytestmark = pytest.mark.spark


def batch_paths(folder: Path) -> dict[str, str]:
    return {name: str(folder / f"{name}.csv") for name in DATASETS}


def batch_inputs(folder: Path, reject_threshold: float = DEFAULT_REJECT_THRESHOLD) -> CsvInputs:
    return CsvInputs(batch_paths(folder), reject_threshold)


def read_output(output: Path, table: str, run_id: str) -> tuple[list[str], list[tuple]]:
    written = pq.read_table(lake.table_run_path(str(output), table, run_id))
    return written.column_names, [tuple(row.values()) for row in written.to_pylist()]


@pytest.fixture(scope="module")
def checked_dirty_batch(spark, dirty_batch) -> Iterator[CheckedBatch]:
    """The shared dirty batch, checked once for both jobs (as the local runner does)."""
    batch = check_batch(spark, batch_inputs(dirty_batch))
    yield batch
    batch.unpersist()


@pytest.fixture(scope="module")
def dirty_run(spark, dirty_batch, checked_dirty_batch, tmp_path_factory):
    output = tmp_path_factory.mktemp("lake") / "processed"
    counts: dict[str, int] = {}
    for job in JOBS:
        counts.update(
            run_job(
                job,
                spark,
                batch_inputs(dirty_batch),
                str(output),
                "run-1",
                batch=checked_dirty_batch,
            )
        )
    return output, counts


@pytest.fixture(scope="module")
def expected(dirty_batch) -> dict[str, list[tuple]]:
    return reference_tables(dirty_batch)


def test_every_table_is_written_and_counted(dirty_run, expected):
    output, counts = dirty_run
    assert sorted(counts) == sorted(lake.TABLES)
    for table, rows in counts.items():
        assert rows == len(read_output(output, table, "run-1")[1]) == len(expected[table]), table
    assert counts["business_summary"] == 1


COMPUTED_TABLES = [t for t in lake.TABLES if t not in ("rental_rejects", "run_inputs")]


@pytest.mark.parametrize("table", COMPUTED_TABLES)
def test_table_matches_the_independent_computation(dirty_run, expected, table):
    columns, rows = read_output(dirty_run[0], table, "run-1")
    assert len(columns) == len(expected[table][0])
    assert canonical(rows) == canonical(expected[table])


def rejects_by_file_name(output: Path, run_id: str) -> list[tuple]:
    columns, rows = read_output(output, "rental_rejects", run_id)
    source = columns.index("source_file")
    return [(*r[:source], Path(r[source]).name, *r[source + 1 :]) for r in rows]


def inputs_by_file_name(output: Path, run_id: str) -> list[tuple]:
    columns, rows = read_output(output, "run_inputs", run_id)
    picked = [columns.index(c) for c in ("dataset", "source_file", "rows", "rejected_rows")]
    status = columns.index("status")
    return [
        (r[picked[0]], Path(r[picked[1]]).name, r[picked[2]], r[picked[3]], r[status]) for r in rows
    ]


def test_rejects_keep_the_raw_rows_and_where_they_came_from(dirty_run, expected):
    rows = rejects_by_file_name(dirty_run[0], "run-1")
    assert canonical(rows) == canonical(expected["rental_rejects"])
    assert {r[-2] for r in rows} == {"rental_transactions.csv"}


def test_run_inputs_list_every_file_with_its_counts(dirty_run, expected):
    assert sorted(inputs_by_file_name(dirty_run[0], "run-1")) == sorted(expected["run_inputs"])


def test_rejects_and_quality_account_for_exactly_the_injected_defects(dirty_run, dirty_batch):
    defects = json.loads((dirty_batch / "defects.json").read_text())["defects"]
    columns, rejects = read_output(dirty_run[0], "rental_rejects", "run-1")
    reason, row = columns.index("reject_reason"), columns.index("row_number")
    assert sorted((r[row], r[reason]) for r in rejects) == sorted(
        (d["row"], d["rule"]) for d in defects
    )
    _, quality = read_output(dirty_run[0], "data_quality", "run-1")
    rental_rejects = {
        rule: violations
        for dataset, rule, severity, violations in quality
        if dataset == "rental_transactions" and severity == "reject"
    }
    injected = Counter(d["rule"] for d in defects)
    assert rental_rejects == {rule: injected.get(rule, 0) for rule in rental_rejects}
    assert len(injected) == 13 and set(injected) <= set(rental_rejects)
    contract_rules = {
        (ds.name, r.name, str(r.severity)) for ds in DATASETS.values() for r in ds.rules
    }
    assert {(d, r, s) for d, r, s, _ in quality} == contract_rules


def run_folder(output: Path, table: str, run_id: str = "run-1") -> Path:
    return Path(lake.table_run_path(str(output), table, run_id))


@pytest.mark.parametrize("table", list(tables.TABLES))
def test_columns_and_types_are_the_defined_ones(dirty_run, table):
    assert written_columns(run_folder(dirty_run[0], table)) == defined_columns(table)


@pytest.mark.parametrize("table", list(tables.TABLES))
def test_every_table_key_is_unique_and_never_null(dirty_run, table):
    assert run_folder(dirty_run[0], table).is_dir()
    assert key_violations(run_folder(dirty_run[0], table), table) == []


def test_a_frame_unlike_its_table_definition_is_not_written(spark, tmp_path):
    daily = [(c.name, c.type) for c in tables.table("daily_metrics").columns]
    row = (date(2024, 1, 1), 1, Decimal("10.00"), Decimal("10.000000"))
    row += (Decimal("10.00"), Decimal("10.00"), 1, 1)
    schema = ", ".join(f"{name} {kind}" for name, kind in daily)
    frame = spark.createDataFrame([row], schema)
    wrong = (
        frame.drop("unique_users")
        .withColumn("rental_count", F.col("rental_count").cast("int"))
        .withColumn("note", F.lit("x"))
    )
    with pytest.raises(ValueError) as raised:
        write_table(wrong, str(tmp_path), "daily_metrics", "run-1")
    assert str(raised.value) == (
        "daily_metrics: the frame does not match the table's definition (carrental/tables.py): "
        "missing columns ['unique_users']; unexpected columns ['note']; "
        "rental_count is int, defined as BIGINT"
    )
    assert not (tmp_path / "daily_metrics").exists()
    # the definition's column order, whatever the frame's
    reversed_columns = frame.select(*reversed(frame.columns))
    assert write_table(reversed_columns, str(tmp_path), "daily_metrics", "run-1") == 1
    assert written_columns(run_folder(tmp_path, "daily_metrics")) == daily


def test_a_rerun_replaces_its_run_and_leaves_other_runs_alone(
    spark, dirty_run, dirty_batch, checked_dirty_batch
):
    output, counts = dirty_run
    scratch = output.parent / "rerun"
    shutil.copytree(output, scratch)
    before = {t: canonical(read_output(scratch, t, "run-1")[1]) for t in lake.TABLES}
    inputs = batch_inputs(dirty_batch)
    for job, run_id in (
        (tables.USER_TRANSACTION_ANALYSIS, "run-1"),
        (tables.VEHICLE_LOCATION_PERFORMANCE, "run-2"),
    ):
        written = run_job(job, spark, inputs, str(scratch), run_id, batch=checked_dirty_batch)
        assert written == {t: counts[t] for t in written}
    for table, writer in lake.TABLES.items():
        runs = ["run-1", "run-2"] if writer == tables.VEHICLE_LOCATION_PERFORMANCE else ["run-1"]
        assert sorted(p.name for p in (scratch / table).iterdir()) == [f"run_id={r}" for r in runs]
        for run_id in runs:
            assert canonical(read_output(scratch, table, run_id)[1]) == before[table], table
    with pytest.raises(ValueError, match="checked from"):
        run_job(
            tables.USER_TRANSACTION_ANALYSIS,
            spark,
            CsvInputs({**batch_paths(dirty_batch), "users": "/elsewhere.csv"}),
            str(scratch),
            "run-3",
            batch=checked_dirty_batch,
        )


def test_a_failed_run_leaves_the_previous_run_intact(spark, dirty_run, tmp_path):
    output, counts = dirty_run
    folder = write_hand_batch(tmp_path / "broken")
    with open(folder / "users.csv", "a") as f:
        f.write("ffffffffff,Only,Three\n")  # a row with 3 of 9 fields
    with pytest.raises(InputError, match=r"users\.csv row 4: 'ffffffffff,Only,Three'"):
        run_job(tables.USER_TRANSACTION_ANALYSIS, spark, batch_inputs(folder), str(output), "run-1")
    assert len(read_output(output, "user_metrics", "run-1")[1]) == counts["user_metrics"]
    with pytest.raises(ValueError, match="invalid run id"):
        run_job(
            tables.VEHICLE_LOCATION_PERFORMANCE, spark, batch_inputs(folder), str(output), "../x"
        )


def write_csv(folder: Path, name: str, lines: list[str]) -> None:
    (folder / f"{name}.csv").write_text(
        ",".join(DATASETS[name].header) + "\n" + "\n".join(lines) + "\n"
    )


def write_hand_batch(folder: Path) -> Path:
    """A tiny batch whose every expected number is worked out by hand (see the test below)."""
    folder.mkdir()
    vehicle = '1,5151329,"SMITH,JOHN",FOR HIRE VEHICLE,14-09-2024,AVGLLXXC,2018-02-23,2017,(646)780-0129,1515 THIRD STREET,{id},04-06-2024 13:25:00,Audi,{kind}'
    write_csv(
        folder,
        "vehicles",
        [
            vehicle.format(id="00000000v1", kind="basic"),
            vehicle.format(id="00000000v2", kind="luxury"),  # vehicle_type_known
            vehicle.format(id="00000000v1", kind="premium"),  # vehicle_id_unique: v1 stays basic
            vehicle.format(id="00000000v3", kind="premium").replace("14-09-2024", "2024-09-14"),
        ],
    )
    write_csv(
        folder,
        "locations",
        [
            '10,"Bean, LLC",1 Main St,Fontana,CA,92188,1.5,2.5',
            "x1,Bad Id,2 Main St,Modesto,CA,94540,1.5,2.5",  # location_id_format
            "20,Hill Inc,3 Main St,Oakland,CA,94601,north,2.5",  # latitude_format (warn)
        ],
    )
    user = "{id},Lisa,Parker,lisa@x.com,555,MO028963,2033-06-21,{created},{active}"
    write_csv(
        folder,
        "users",
        [
            user.format(id="00000000u1", created="2024-01-01", active=1),
            user.format(id="00000000u2", created="2024-03-01", active=0),
            user.format(id="00000000u1", created="2024-01-01", active=1),  # user_id_unique
        ],
    )
    rentals = [  # id, user, vehicle, end hour, pickup, dropoff, amount; all start 10:00
        ("r1", "u1", "v1", 13, 10, 20, "30.0"),
        ("r2", "u2", "v3", 12, 20, 10, "50.0"),
        ("r3", "u1", "v2", 12, 10, 20, "20.0"),
        ("r4", "u1", "v1", 11, 99, 10, "10.0"),
    ]
    write_csv(
        folder,
        "rental_transactions",
        [
            f"{rental},00000000{user},00000000{vehicle},2024-02-01 10:00:00,"
            f"2024-02-01 {end}:00:00,{pickup},{dropoff},{amount}"
            for rental, user, vehicle, end, pickup, dropoff, amount in rentals
        ],
    )
    return folder


def test_dimension_rejects_are_counted_and_their_rentals_become_orphans(spark, tmp_path):
    """Each job checks the batch itself here (the EMR path). Half the rentals are rejected on
    purpose: a threshold of 1 keeps the file in the run."""
    folder = write_hand_batch(tmp_path / "batch")
    output = tmp_path / "processed"
    inputs = batch_inputs(folder, reject_threshold=1.0)
    counts = run_job(tables.USER_TRANSACTION_ANALYSIS, spark, inputs, str(output), "hand")
    run_job(tables.VEHICLE_LOCATION_PERFORMANCE, spark, inputs, str(output), "hand")
    _, quality = read_output(output, "data_quality", "hand")
    broken = {(d, r): n for d, r, _, n in quality if n}
    assert broken == {
        ("vehicles", "vehicle_type_known"): 1,
        ("vehicles", "vehicle_id_unique"): 1,
        ("vehicles", "expiration_date_format"): 1,
        ("locations", "location_id_format"): 1,
        ("locations", "latitude_format"): 1,
        ("users", "user_id_unique"): 1,
        ("rental_transactions", "vehicle_id_exists"): 1,  # r3 rents the luxury vehicle
        ("rental_transactions", "pickup_location_exists"): 1,  # r4 picks up at 99
        # r2: 2 hours of a premium vehicle (v3) should cost 40.0, not 50.0
        ("rental_transactions", "pricing_matches_rate"): 1,
        # r2: u2 was created 2024-03-01, after the rental started, and is inactive
        ("rental_transactions", "rental_not_before_user_creation"): 1,
        ("rental_transactions", "rental_by_active_user"): 1,
    }
    _, rejects = read_output(output, "rental_rejects", "hand")
    assert sorted((r[0], r[8], r[10]) for r in rejects) == [
        ("r3", "vehicle_id_exists", 3),
        ("r4", "pickup_location_exists", 4),
    ]
    assert counts["rental_rejects"] == 2
    _, vehicle_types = read_output(output, "vehicle_type_performance", "hand")
    # r1: 3 hours of v1 (basic, its first row) for 30.00; r2: 2 hours of v3 (premium) for 50.00
    assert sorted((r[0], r[1], str(r[2]), str(r[7])) for r in vehicle_types) == [
        ("basic", 1, "30.00", "3.000000"),
        ("premium", 1, "50.00", "2.000000"),
    ]
    _, locations = read_output(output, "location_performance", "hand")
    assert sorted((r[0], r[1], r[4]) for r in locations) == [
        (10, "Bean, LLC", 1),
        (20, "Hill Inc", 1),
    ]
