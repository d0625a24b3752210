"""Reading CSVs the contract's way: names not positions, text verbatim, rows in file order."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from carrental.contracts import DATASETS
from carrental.spark.io import (
    MALFORMED,
    ROW_NUMBER,
    SOURCE_FILE,
    InputError,
    read_dataset,
    with_row_numbers,
)
from carrental.spark.rules import check_dataset, parse, violation

pytestmark = pytest.mark.spark

LOCATIONS = DATASETS["locations"]


@pytest.fixture
def small_file_blocks(spark) -> Iterator[None]:
    """Split files into 1 kB blocks, so that one file is read by several tasks."""
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1024")
    spark.conf.set("spark.sql.files.openCostInBytes", "0")
    yield
    spark.conf.unset("spark.sql.files.maxPartitionBytes")
    spark.conf.unset("spark.sql.files.openCostInBytes")


def test_columns_are_matched_by_name_and_text_is_kept_verbatim(spark, tmp_path):
    path = tmp_path / "vehicles.csv"
    header = list(reversed(DATASETS["vehicles"].header))
    values = {
        "vehicle_id": "0012345678",
        "registration_name": '"\\HERPA, CHHIRING"',
        "base_address": '"say ""hi"", twice"',
        "vehicle_license_number": "V99905",
        "permit_license_number": "12345e6789",
    }
    row = [values.get(name, f"<{name}>") for name in header]
    # a byte order mark and Windows line ends, as spreadsheets write them
    path.write_bytes(
        b"\xef\xbb\xbf" + (",".join(header) + "\r\n" + ",".join(row) + "\r\n").encode()
    )
    frame = read_dataset(spark, str(path), DATASETS["vehicles"])
    assert frame.columns[:14] == list(DATASETS["vehicles"].header)
    [read] = frame.collect()
    assert read["vehicle_id"] == "0012345678"
    assert read["registration_name"] == "\\HERPA, CHHIRING"
    assert read["base_address"] == 'say "hi", twice'
    assert read["vehicle_license_number"] == "V99905"
    assert read["permit_license_number"] == "12345e6789"
    assert read["brand"] == "<brand>"
    assert read[MALFORMED] is None
    assert read[SOURCE_FILE].endswith(f"{tmp_path.name}/vehicles.csv")


def test_a_header_that_breaks_the_contract_is_refused(spark, tmp_path):
    path = tmp_path / "locations.csv"
    path.write_text(
        "location_id,name,address,city,state,zip_code,latitude,longitude\n1,a,b,c,d,e,1,2\n"
    )
    with pytest.raises(InputError) as error:
        read_dataset(spark, str(path), LOCATIONS)
    message = str(error.value)
    assert str(path) in message
    assert "missing columns ['location_name']" in message
    assert "unexpected columns ['name']" in message


def test_rows_with_a_wrong_field_count_are_reported_by_file_and_row(spark, tmp_path):
    path = tmp_path / "locations.csv"
    lines = [
        ",".join(LOCATIONS.header),
        "1,a,b,c,CA,90001,1.0,2.0",
        "2,a,b",
        "3,a,b,c,CA,9,1,2,extra",
    ]
    path.write_text("\n".join(lines) + "\n")
    # Spark answers a query of the corrupt-record column alone only from a cached read (as the
    # jobs' checked datasets are)
    parsed = with_row_numbers(parse(read_dataset(spark, str(path), LOCATIONS), LOCATIONS)).cache()
    found = parsed.filter(F.col(MALFORMED).isNotNull()).select(ROW_NUMBER, MALFORMED).collect()
    parsed.unpersist()
    assert sorted(tuple(r) for r in found) == [(2, "2,a,b"), (3, "3,a,b,c,CA,9,1,2,extra")]


def write_locations(path: Path, ids: list[str]) -> None:
    rows = [f"{i},Branch {i},{n} Main Street,Modesto,CA,94540,1.5,2.5" for n, i in enumerate(ids)]
    path.write_text(",".join(LOCATIONS.header) + "\n" + "\n".join(rows) + "\n")


def test_row_numbers_follow_the_lines_of_each_file_across_blocks(
    spark, tmp_path, small_file_blocks
):
    folder = tmp_path / "locations"
    folder.mkdir()
    write_locations(folder / "b.csv", [str(1000 + i) for i in range(300)])  # ~15 blocks
    write_locations(folder / "a.csv", ["1", "2", "3"])
    frame = read_dataset(spark, str(folder), LOCATIONS)
    assert frame.rdd.getNumPartitions() > 10
    numbered = with_row_numbers(frame).select(
        F.regexp_extract(SOURCE_FILE, r"(\w)\.csv$", 1).alias("file"), ROW_NUMBER, "location_id"
    )
    found = sorted((r["file"], r[ROW_NUMBER], r["location_id"]) for r in numbered.collect())
    expected = [("a", n, str(n)) for n in (1, 2, 3)]
    expected += [("b", n + 1, str(1000 + n)) for n in range(300)]
    assert found == expected


def test_unique_keeps_the_first_row_in_file_order(spark, tmp_path, small_file_blocks):
    """b.csv is bigger, so Spark reads it first; file order still puts a.csv first."""
    folder = tmp_path / "locations"
    folder.mkdir()
    write_locations(folder / "b.csv", ["7", *[str(1000 + i) for i in range(300)], "7"])
    write_locations(folder / "a.csv", ["5", "7", "5"])
    parsed = with_row_numbers(parse(read_dataset(spark, str(folder), LOCATIONS), LOCATIONS))
    checked = check_dataset(parsed, LOCATIONS, keep={"address"})
    unique = violation(LOCATIONS.rule("location_id_unique"))
    rows = [
        (r[unique], Path(r[SOURCE_FILE]).name, r["location_id"], r["address"])
        for r in checked.collect()
        if r["location_id"] in (5, 7)
    ]
    # a.csv: 5 (line 1), 7 (line 2), 5 (line 3); b.csv: 7 (line 1), ..., 7 (line 302)
    assert sorted(rows) == [
        (False, "a.csv", 5, "0 Main Street"),
        (False, "a.csv", 7, "1 Main Street"),
        (True, "a.csv", 5, "2 Main Street"),
        (True, "b.csv", 7, "0 Main Street"),
        (True, "b.csv", 7, "301 Main Street"),
    ]
