"""Every path a job reads means exactly that file or folder, whatever characters its name has.

Spark hands paths to Hadoop as glob patterns; uploads may be named anything that ends in .csv.
Each case puts decoys beside the file that an unescaped pattern would read instead or as well.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

import pytest
from pyspark.sql import functions as F

from carrental.contracts import DATASETS
from carrental.spark.io import SOURCE_FILE, InputError, read_dataset

pytestmark = pytest.mark.spark

LOCATIONS = DATASETS["locations"]


def _locations_file(path: Path, location_id: str) -> None:
    header = ",".join(LOCATIONS.header)
    row = ",".join(
        location_id if c == "location_id" else f"{c}-{location_id}" for c in header.split(",")
    )
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "decoys"),
    [
        ("locations[1].csv", ["locations1.csv"]),  # a class: would read locations1.csv
        ("locations*.csv", ["locations-a.csv", "locations-b.csv"]),  # would read all three
        ("locations?.csv", ["locationsX.csv"]),
        ("{locations,other}.csv", ["locations.csv", "other.csv"]),  # an alternation
        ("back\\slash.csv", ["backslash.csv"]),  # an escape: would read backslash.csv
    ],
)
def test_a_file_name_with_glob_characters_reads_that_file_only(spark, tmp_path, name, decoys):
    _locations_file(tmp_path / name, "1")
    for number, decoy in enumerate(decoys, start=2):
        _locations_file(tmp_path / decoy, str(number))

    frame = read_dataset(spark, str(tmp_path / name), LOCATIONS)

    rows = frame.select("location_id", F.col(SOURCE_FILE)).collect()
    assert [row.location_id for row in rows] == ["1"]
    assert unquote(rows[0][SOURCE_FILE]) == f"file:{tmp_path / name}"  # Spark URL-encodes it


def test_a_folder_with_glob_characters_reads_its_files_only(spark, tmp_path):
    folder = tmp_path / "batch[2024]"
    folder.mkdir()
    _locations_file(folder / "a.csv", "1")
    (tmp_path / "batch2").mkdir()
    _locations_file(tmp_path / "batch2" / "a.csv", "2")

    frame = read_dataset(spark, str(folder), LOCATIONS)

    assert [row.location_id for row in frame.select("location_id").collect()] == ["1"]


def test_a_name_hadoop_cannot_express_is_refused_by_name(spark, tmp_path):
    path = tmp_path / "locations-2024-06-01T10:00.csv"
    _locations_file(path, "1")
    with pytest.raises(InputError, match=r"':' in its name.*rename the file"):
        read_dataset(spark, str(path), LOCATIONS)
