"""Issue 12, item 9: a bad input folder or file is named for what it is (a folder that does not
exist, a file where a folder is expected, a folder where a CSV is expected, which CSVs are
missing), exit 2, before the lake is touched."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from carrental.cli import main


def make_input(tiny_batch: Path, folder: Path, what: str) -> Path:
    if what == "a missing folder":
        return folder / "nowhere"
    if what == "a file":
        return tiny_batch / "users.csv"
    shutil.copytree(tiny_batch, folder)
    if what == "users.csv is a folder":
        (folder / "users.csv").unlink()
        (folder / "users.csv").mkdir()
    else:  # two files missing
        (folder / "locations.csv").unlink()
        (folder / "users.csv").unlink()
    return folder


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("a missing folder", "the input folder {input} does not exist"),
        ("a file", "--input {input} is a file: pass the folder that holds it"),
        ("users.csv is a folder", "{input}/users.csv is a folder, not a CSV file"),
        (
            "two files missing",
            "the input folder {input} has no locations.csv, users.csv (it needs vehicles.csv, "
            "locations.csv, users.csv, rental_transactions.csv)",
        ),
    ],
)
def test_run_names_what_is_wrong_with_its_input(tiny_batch, tmp_path, capsys, what, message):
    given = make_input(tiny_batch, tmp_path / "input", what)
    lake = tmp_path / "lake"
    assert main(["run", "--input", str(given), "--lake", str(lake)]) == 2
    assert capsys.readouterr().err == f"carrental run: error: {message.format(input=given)}\n"
    assert not lake.exists()


def test_ingest_names_a_folder_and_a_missing_file(tiny_batch, tmp_path, capsys):
    folder = make_input(tiny_batch, tmp_path / "input", "users.csv is a folder")
    lake = tmp_path / "lake"
    for given, message in (
        (folder / "users.csv", f"{folder / 'users.csv'} is a folder: pass CSV files"),
        (folder / "gone.csv", f"{folder / 'gone.csv'}: no such file"),
    ):
        assert main(["ingest", "--lake", str(lake), str(folder / "vehicles.csv"), str(given)]) == 2
        assert capsys.readouterr().err == f"carrental ingest: error: {message}\n"
    assert not lake.exists()  # checked before the first file is ingested


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux /proc")
def test_a_file_that_cannot_be_read_is_named(tiny_batch, tmp_path, capsys):
    """/proc/self/mem: a regular file whose first read fails with EIO, as on a failing disk."""
    batch = tmp_path / "input"
    shutil.copytree(tiny_batch, batch)
    (batch / "users.csv").unlink()
    (batch / "users.csv").symlink_to("/proc/self/mem")
    lake = tmp_path / "lake"
    assert main(["ingest", "--lake", str(lake), "--dataset", "users", "/proc/self/mem"]) == 2
    assert capsys.readouterr().err == (
        "carrental ingest: error: cannot read /proc/self/mem: Input/output error\n"
    )
    assert main(["run", "--lake", str(lake), "--input", str(batch)]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"carrental run: error: cannot read {batch / 'users.csv'}: Input/output error"
    )
    assert [p for p in lake.rglob("*") if p.name.endswith(".partial")] == []
