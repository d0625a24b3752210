"""The generator: sizes, determinism, the lab data's traps, pricing, and exact defects.json.

Every expectation is computed here with the csv module and plain Python, not with the
generator's own code.
"""

import csv
import filecmp
import json
import re
from collections import Counter
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from carrental.cli import main
from carrental.generate import Sizes, generate
from tests.conftest import REPO_ROOT

FILES = ["vehicles.csv", "locations.csv", "users.csv", "rental_transactions.csv"]
RATES = {"basic": Decimal(10), "premium": Decimal(20), "high_end": Decimal(50)}
STAMP = "%Y-%m-%d %H:%M:%S"


def rows(folder: Path, name: str) -> list[dict[str, str]]:
    with open(folder / f"{name}.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_scale_one_matches_the_lab_sizes():
    sizes = Sizes.for_scale(1)
    assert (sizes.locations, sizes.users, sizes.rentals) == (300, 30_000, 20_080)
    assert 105_000 <= sizes.vehicles <= 115_000


def test_rentals_grow_linearly_and_dimensions_sub_linearly():
    one, big = Sizes.for_scale(1), Sizes.for_scale(500)
    assert big.rentals == 500 * one.rentals
    assert one.users < big.users < 50 * one.users
    assert one.vehicles < big.vehicles < 50 * one.vehicles
    assert one.locations < big.locations < 50 * one.locations


def test_same_seed_gives_byte_identical_files(tmp_path):
    generate(tmp_path / "a", scale=0.05, seed=3, dirty_rate=0.05)
    generate(tmp_path / "b", scale=0.05, seed=3, dirty_rate=0.05)
    generate(tmp_path / "c", scale=0.05, seed=4, dirty_rate=0.05)
    for name in [*FILES, "defects.json"]:
        assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name, shallow=False), name
    assert not filecmp.cmp(
        tmp_path / "a" / "rental_transactions.csv",
        tmp_path / "c" / "rental_transactions.csv",
        shallow=False,
    )


def test_committed_sample_is_the_documented_command(tmp_path):
    assert main(["generate", "--out", str(tmp_path), "--scale", "0.1", "--seed", "42"]) == 0
    for name in FILES:
        committed = REPO_ROOT / "data" / "sample" / name
        assert filecmp.cmp(committed, tmp_path / name, shallow=False), (
            f"regenerate: make sample ({name})"
        )
    assert not (REPO_ROOT / "data" / "sample" / "defects.json").exists()


def test_pricing_durations_and_locations(clean_batch):
    vehicle_type = {v["vehicle_id"]: v["vehicle_type"] for v in rows(clean_batch, "vehicles")}
    rentals = rows(clean_batch, "rental_transactions")
    hours_seen = set()
    for r in rentals:
        start = datetime.strptime(r["rental_start_time"], STAMP)
        end = datetime.strptime(r["rental_end_time"], STAMP)
        seconds = (end - start).total_seconds()
        assert seconds % 3600 == 0
        hours = int(seconds // 3600)
        hours_seen.add(hours)
        assert Decimal(r["total_amount"]) == hours * RATES[vehicle_type[r["vehicle_id"]]]
        assert r["total_amount"].endswith(".0")  # the lab's money format: 450.0
        assert r["pickup_location"] != r["dropoff_location"]
        assert "2024-01-01 00:00:00" <= r["rental_start_time"] <= "2024-05-31 23:59:00"
    assert min(hours_seen) == 1 and max(hours_seen) == 72


def test_lab_traps_are_reproduced(clean_batch):
    users = {u["user_id"]: u for u in rows(clean_batch, "users")}
    rentals = rows(clean_batch, "rental_transactions")
    before_creation = sum(
        r["rental_start_time"][:10] < users[r["user_id"]]["creation_date"] for r in rentals
    )
    inactive = sum(users[r["user_id"]]["is_active"] == "0" for r in rentals)
    assert 0.3 < before_creation / len(rentals) < 0.7  # lab: 9,880 of 20,080
    assert 0.1 < inactive / len(rentals) < 0.35  # lab: 4,083 of 20,080
    for name, key in [
        ("rental_transactions", "rental_id"),
        ("users", "user_id"),
        ("vehicles", "vehicle_id"),
    ]:
        ids = [r[key] for r in rows(clean_batch, name)]
        assert all(re.fullmatch(r"[0-9a-f]{10}", i) for i in ids), name
        assert len(set(ids)) == len(ids), name
        assert any(re.fullmatch(r"0[0-9]{9}", i) for i in ids), (
            f"{name}: all-digit id with a leading zero"
        )
        assert any(re.fullmatch(r"[1-9][0-9]{4}e[0-9]{4}", i) for i in ids), (
            f"{name}: 12345e6789-shaped id"
        )
    names = [loc["location_name"] for loc in rows(clean_batch, "locations")]
    assert any("," in n for n in names)
    raw_locations = (clean_batch / "locations.csv").read_text()
    assert any(f'"{n}"' in raw_locations for n in names if "," in n)
    registration = {v["registration_name"] for v in rows(clean_batch, "vehicles")}
    assert "\\HERPA, CHHIRING" in registration
    licences = [v["vehicle_license_number"] for v in rows(clean_batch, "vehicles")]
    assert any(x.startswith("V") for x in licences) and any(x.isdigit() for x in licences)


def test_ids_survive_a_typed_round_trip(clean_batch):
    """Read with the contract's types (what the validator does): ids come back unchanged.
    With type inference, the same file turns the trap ids into numbers: the contract matters."""
    from carrental.contracts import LogicalType, dataset

    contract = dataset("rental_transactions")
    string_columns = [c.name for c in contract.columns if c.type is LogicalType.STRING]
    import pyarrow as pa

    typed = pacsv.read_csv(
        clean_batch / "rental_transactions.csv",
        convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in string_columns}),
    )
    original = rows(clean_batch, "rental_transactions")
    for column in ("rental_id", "user_id", "vehicle_id"):
        assert typed[column].to_pylist() == [r[column] for r in original]
    digits_only = [r for r in original if r["rental_id"].isdigit()]
    assert digits_only
    inferred = pacsv.read_csv(clean_batch / "rental_transactions.csv")
    assert inferred["rental_id"].type == pa.string()  # mixed column stays text...
    one_column = pacsv.read_csv(
        pa.py_buffer(
            ("rental_id\n" + "\n".join(r["rental_id"] for r in digits_only) + "\n").encode()
        )
    )
    assert one_column["rental_id"].type == pa.int64()  # ...but a digits-only file would not


def _independent_violations(folder: Path) -> Counter:
    """Recompute every rule break of rental_transactions.csv from the raw files."""
    users = {u["user_id"] for u in rows(folder, "users")}
    vehicles = {v["vehicle_id"] for v in rows(folder, "vehicles")}
    locations = {loc["location_id"] for loc in rows(folder, "locations")}
    found: Counter = Counter()
    seen_ids: set[str] = set()
    for number, r in enumerate(rows(folder, "rental_transactions"), start=1):
        for key in ("rental_id", "user_id", "vehicle_id", "pickup_location"):
            if r[key] == "":
                found[(number, f"{key}_not_null")] += 1
        parsed = {}
        for column in ("rental_start_time", "rental_end_time"):
            try:
                parsed[column] = datetime.strptime(r[column], STAMP)
            except ValueError:
                found[(number, f"{column}_format")] += 1
        if len(parsed) == 2 and parsed["rental_end_time"] <= parsed["rental_start_time"]:
            found[(number, "rental_end_after_start")] += 1
        if Decimal(r["total_amount"]) < 0:
            found[(number, "total_amount_non_negative")] += 1
        if r["user_id"] and r["user_id"] not in users:
            found[(number, "user_id_exists")] += 1
        if r["vehicle_id"] and r["vehicle_id"] not in vehicles:
            found[(number, "vehicle_id_exists")] += 1
        if r["pickup_location"] and r["pickup_location"] not in locations:
            found[(number, "pickup_location_exists")] += 1
        if r["dropoff_location"] not in locations:
            found[(number, "dropoff_location_exists")] += 1
        if r["rental_id"]:
            if r["rental_id"] in seen_ids:
                found[(number, "rental_id_unique")] += 1
            seen_ids.add(r["rental_id"])
    return found


def test_defects_json_lists_exactly_the_injected_defects(dirty_batch):
    truth = json.loads((dirty_batch / "defects.json").read_text())
    listed = Counter((d["row"], d["rule"]) for d in truth["defects"])
    assert truth["defect_count"] == len(truth["defects"])
    assert truth["rows"] == len(rows(dirty_batch, "rental_transactions"))
    # the generator corrupts exactly round(rows x rate) rows (tests/conftest.py: rate 0.03)
    assert truth["defect_count"] == round(truth["rows"] * 0.03)
    assert _independent_violations(dirty_batch) == listed
    # one broken rule per corrupted row: no row is listed twice, and the independent check
    # (which counts every rule a row breaks) finds exactly one per listed row
    assert max(Counter(d["row"] for d in truth["defects"]).values()) == 1
    kinds = {rule for _, rule in listed}
    assert len(kinds) == 13, kinds


def test_clean_batch_breaks_no_reject_rule(clean_batch):
    assert _independent_violations(clean_batch) == Counter()
    assert not (clean_batch / "defects.json").exists()


def test_cli_generate_reports_what_it_wrote(tmp_path, capsys):
    assert main(["generate", "--out", str(tmp_path), "--scale", "0.01", "--dirty-rate", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "rental_transactions 201 rows" in out
    assert "injected 20 defects" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*FILES, "defects.json"])


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    for bad in (["--scale", "-1"], ["--dirty-rate", "0.9"]):
        with pytest.raises(SystemExit) as exc:
            main(["generate", "--out", str(tmp_path), *bad])
        assert exc.value.code == 2
    assert "argument --dirty-rate: must be between 0 and 0.5, got 0.9" in capsys.readouterr().err
