"""Issue 12, item 5: every rejected file, and every file a run holds back, keeps its own copy
and error report in quarantine/, whatever its name and however close in time the rejections
come: nothing overwrites an earlier rejection's evidence."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from carrental.cli import main
from tests.conftest import write_orphan_rentals
from tests.hostile.conftest import ready_lake


def quarantined(lake: Path, dataset: str) -> dict[bytes, dict]:
    """Each quarantined copy's bytes with its error report (every copy has one)."""
    folder = lake / "quarantine" / dataset
    reports = sorted(folder.glob("*.errors.json"))
    copies = sorted(p for p in folder.iterdir() if not p.name.endswith(".errors.json"))
    assert [r.name.removesuffix(".errors.json") for r in reports] == [c.name for c in copies]
    return {c.read_bytes(): json.loads(r.read_text()) for c, r in zip(copies, reports, strict=True)}


def write_broken(source: Path, target: Path, defect: str) -> Path:
    """`source` with one defect that rejects it, as `target`."""
    lines = source.read_text().splitlines()
    if defect == "header_missing_column":
        lines = [line.rsplit(",", 1)[0] for line in lines]
    elif defect == "field_count":
        lines[5] = lines[5].rsplit(",", 2)[0]
    else:  # not_csv_text
        lines[7] = lines[7][:3] + "\x00" + lines[7][3:]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n")
    return target


def test_every_rejection_of_a_name_keeps_its_file_and_report(tiny_batch, tmp_path, capsys):
    """Three rejected users.csv within a second or two: by `ingest` twice, then by `run`."""
    lake = tmp_path / "lake"
    users = tiny_batch / "users.csv"
    first = write_broken(users, tmp_path / "monday" / "users.csv", "header_missing_column")
    second = write_broken(users, tmp_path / "tuesday" / "users.csv", "field_count")
    batch = tmp_path / "wednesday"
    shutil.copytree(tiny_batch, batch)
    third = write_broken(users, batch / "users.csv", "not_csv_text")
    assert main(["ingest", "--lake", str(lake), str(first)]) == 1
    assert main(["ingest", "--lake", str(lake), str(second)]) == 1
    assert main(["run", "--lake", str(lake), "--input", str(batch)]) == 1
    out, err = capsys.readouterr()
    assert out.count("REJECTED (users") == 2 and err.count("REJECTED (users") == 1
    evidence = quarantined(lake, "users")
    assert len(evidence) == 3
    for path, rule in (
        (first, "header_missing_column"),
        (second, "field_count"),
        (third, "not_csv_text"),
    ):
        report = evidence[path.read_bytes()]
        assert report["source"] == str(path)
        assert [p["rule"] for p in report["problems"]] == [rule]


@pytest.mark.spark
def test_a_held_back_file_keeps_its_evidence_beside_a_rejection_of_its_name(
    tiny_batch, tmp_path, capsys
):
    lake = ready_lake(tmp_path / "lake", tiny_batch)
    rentals = tiny_batch / "rental_transactions.csv"
    rejected = write_broken(rentals, tmp_path / "first try" / "day3.csv", "field_count")
    orphans = write_orphan_rentals(rentals, tmp_path / "second try" / "day3.csv", "z", 20)
    for path, code in ((rejected, 1), (orphans, 0)):
        arguments = ["ingest", "--lake", str(lake), "--dataset", "rental_transactions", str(path)]
        assert main(arguments) == code
    assert main(["run", "--lake", str(lake), "--run-id", "day-3"]) == 0
    out, err = capsys.readouterr()
    (note,) = [line for line in err.splitlines() if line.startswith("!")]
    assert note.startswith("! raw/rental_transactions/day3.csv: held back: 20 of 20 rows")
    assert "vehicle_id_exists 20" in note
    assert "inputs: 5 files, 1 held back (see inputs.csv)" in out
    evidence = quarantined(lake, "rental_transactions")
    assert len(evidence) == 2
    assert evidence[rejected.read_bytes()]["source"] == str(rejected)
    held = evidence[orphans.read_bytes()]
    assert (held["verdict"], held["run_id"], held["source"]) == (
        "held_back",
        "day-3",
        "raw/rental_transactions/day3.csv",
    )
