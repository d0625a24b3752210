"""The validation core (carrental.validation) and `carrental validate`.

Expectations come from defects.json (the generator's ground truth), from hand-written files,
or from plain-Python reference checks written here: never from the validator itself.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import re
import subprocess
import sys
import zipfile
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carrental.cli import main
from carrental.contracts import DATASETS, LOCATIONS, RENTAL_TRANSACTIONS, USERS, RuleKind, Severity
from carrental.lake import infer_dataset
from carrental.validation import (
    BLOCK_SIZE,
    FileVerdict,
    validate_path,
    validate_stream,
)
from carrental.validation.keys import DuplicateKeys

FILES = ["vehicles", "locations", "users", "rental_transactions"]
GOOD_RENTAL = {
    "rental_id": "00000000a1",
    "user_id": "00000000b1",
    "vehicle_id": "00000000c1",
    "rental_start_time": "2024-01-01 08:00:00",
    "rental_end_time": "2024-01-01 10:00:00",
    "pickup_location": "1001",
    "dropoff_location": "1002",
    "total_amount": "20.0",
}


def csv_text(header, rows, *, crlf=False, bom=False, quote_all=False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(
        out,
        lineterminator="\r\n" if crlf else "\n",
        quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL,
    )
    writer.writerow(header)
    writer.writerows(rows)
    return (b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8")


def rentals(*changes: dict) -> bytes:
    """A rentals file: one good row per change dict, with that row's values replaced."""
    header = RENTAL_TRANSACTIONS.header
    rows = []
    for i, change in enumerate(changes):
        row = {**GOOD_RENTAL, "rental_id": f"{i:010x}", **change}
        rows.append([row[c] for c in header])
    return csv_text(header, rows)


def check(data: bytes, dataset: str = "rental_transactions", **options) -> FileVerdict:
    return validate_stream(io.BytesIO(data), dataset=dataset, source="test.csv", **options)


def broken(verdict: FileVerdict) -> dict[str, int]:
    return {rule: n for rule, n in verdict.rule_counts.items() if n}


def rows_of(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- generated batches


def test_counts_match_defects_json_exactly(dirty_batch):
    truth = json.loads((dirty_batch / "defects.json").read_text())
    single = [d for d in truth["defects"] if RENTAL_TRANSACTIONS.rule(d["rule"]).single_dataset]
    verdict = validate_path(dirty_batch / "rental_transactions.csv")
    assert verdict.accepted, verdict.render()  # 3 % dirty < 5 % threshold
    assert verdict.rows == truth["rows"]
    assert broken(verdict) == Counter(d["rule"] for d in single)
    # every single-dataset rule of the contract is counted, zeros included
    assert set(verdict.rule_counts) == {
        r.name for r in RENTAL_TRANSACTIONS.rules if r.single_dataset
    }
    # one broken rule per corrupted row, every one of them a reject rule
    assert verdict.rejected_rows == len(single)
    raw = rows_of(dirty_batch / "rental_transactions.csv")
    for rule, examples in verdict.rule_examples.items():
        expected_rows = sorted(d["row"] for d in single if d["rule"] == rule)[:10]
        assert [row for row, _ in examples] == expected_rows, rule
        column = RENTAL_TRANSACTIONS.rule(rule).columns[-1]
        for row, value in examples:
            written = raw[row - 1][column]
            if RENTAL_TRANSACTIONS.rule(rule).kind is RuleKind.NOT_NULL:
                assert (written, value) == ("", ""), (rule, row)  # the empty field, as written
            else:  # the value as written (an `after` example adds the start time)
                assert written and value.startswith(written), (rule, row, value)


def test_dirty_batch_over_a_lower_threshold_is_rejected_with_reasons(dirty_batch):
    truth = json.loads((dirty_batch / "defects.json").read_text())
    verdict = validate_path(dirty_batch / "rental_transactions.csv", reject_threshold=0.01)
    assert not verdict.accepted
    first, *per_rule = verdict.problems
    assert first.rule == "reject_threshold"
    assert f"of {truth['rows']:,} rows" in first.message and "1.0% allowed" in first.message
    assert {p.rule for p in per_rule} == set(broken(verdict))
    for problem in per_rule:
        assert problem.column == RENTAL_TRANSACTIONS.rule(problem.rule).columns[-1]
        assert len(problem.examples) == min(10, verdict.rule_counts[problem.rule])
    text = verdict.render()
    assert "REJECTED" in text and "rental_start_time_format [column rental_start_time]" in text


def test_clean_and_lab_shaped_files_are_accepted(clean_batch):
    for name in FILES:
        verdict = validate_path(clean_batch / f"{name}.csv")
        assert verdict.accepted, verdict.render()
        assert verdict.rows == len(rows_of(clean_batch / f"{name}.csv"))
        assert verdict.bytes == (clean_batch / f"{name}.csv").stat().st_size
        assert broken(verdict) == {}, name


def test_spilling_keys_to_disk_gives_the_same_verdict(dirty_batch):
    path = dirty_batch / "rental_transactions.csv"
    in_memory = validate_path(path)
    with open(path, "rb") as stream:
        spilled = validate_stream(
            stream, dataset="rental_transactions", source=str(path), key_memory_budget=4096
        )
    assert spilled.to_dict() == in_memory.to_dict()
    assert spilled.rule_counts["rental_id_unique"] > 0


def test_short_reads_change_nothing(dirty_batch):
    """S3 bodies return fewer bytes than asked: the verdict must not depend on read sizes."""
    data = (dirty_batch / "rental_transactions.csv").read_bytes()
    whole = check(data).to_dict()
    assert check_trickled(data, chunk=4093).to_dict() == whole


class Trickle(io.RawIOBase):
    def __init__(self, data: bytes, chunk: int) -> None:
        self._data = io.BytesIO(data)
        self._chunk = chunk

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        return self._data.read(self._chunk if n < 0 else min(n, self._chunk))


def check_trickled(data: bytes, chunk: int) -> FileVerdict:
    return validate_stream(Trickle(data, chunk), dataset="rental_transactions", source="test.csv")


# --------------------------------------------------------------------------- file-level problems


def problem_rules(verdict: FileVerdict) -> list[str]:
    assert not verdict.accepted
    return [p.rule for p in verdict.problems]


def test_unknown_dataset():
    verdict = check(rentals({}), dataset="cars")
    assert problem_rules(verdict) == ["unknown_dataset"]
    assert "vehicles, locations, users, rental_transactions" in verdict.problems[0].message


def test_not_utf8_names_row_and_column():
    data = rentals({}, {}, {"user_id": "caf\xe9"}).replace("caf\xe9".encode(), b"caf\xe9")
    verdict = check(data)
    assert problem_rules(verdict) == ["not_utf8"]
    problem = verdict.problems[0]
    assert problem.column == "user_id" and problem.examples == ((3, "caf\\xe9"),)
    assert "row 3, column user_id" in problem.message


@pytest.mark.parametrize(
    ("content", "rule", "words"),
    [
        (gzip.compress(rentals({})), "not_csv_text", "gzip"),
        (b"\xff\xfe" + "rental_id".encode("utf-16-le"), "not_utf8", "UTF-16"),
        (b"PAR1\x00\x00", "not_csv_text", "Parquet"),
        (b"rental_id,user_id\n\x00\x01\x02", "not_csv_text", "NUL byte"),
        (b"", "header_missing", "empty"),
        (b"\n\n", "header_missing", "empty"),
        (b"\xef\xbb\xbfr\xe9ntal_id\n", "not_utf8", "header"),
    ],
)
def test_binary_compressed_and_empty_files(content, rule, words):
    verdict = check(content)
    assert problem_rules(verdict) == [rule]
    assert words in verdict.problems[0].message


def test_zip_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("rental_transactions.csv", rentals({}))
    assert problem_rules(check(buffer.getvalue())) == ["not_csv_text"]


def test_header_problems_name_each_column():
    header = [*RENTAL_TRANSACTIONS.header[:-1], "rental_id", "discount", "user_id "]
    verdict = check(csv_text(header, [["x"] * len(header)]))
    assert sorted((p.rule, p.column) for p in verdict.problems) == [
        ("header_duplicate_column", "rental_id"),
        ("header_extra_column", "discount"),
        ("header_extra_column", "user_id "),
        ("header_missing_column", "total_amount"),
    ]
    assert any("surrounding spaces" in p.message for p in verdict.problems)


def test_data_where_the_header_should_be():
    headless = rentals({}).split(b"\n", 1)[1]
    assert problem_rules(check(headless)) == ["header_missing"]


def test_header_without_rows():
    assert problem_rules(check(csv_text(RENTAL_TRANSACTIONS.header, []))) == ["no_data_rows"]


def test_wrong_field_counts_are_listed_and_later_rows_keep_their_numbers():
    lines = rentals({}, {}, {}, {}, {"total_amount": "-5.0"}).decode().splitlines()
    lines[2] += ",extra"  # row 2
    lines[3] = lines[3].rsplit(",", 2)[0]  # row 3
    verdict = check(("\n".join(lines) + "\n").encode())
    assert problem_rules(verdict) == ["field_count"]
    assert [row for row, _ in verdict.problems[0].examples] == [2, 3]
    assert "9 fields" in verdict.problems[0].examples[0][1]
    assert verdict.rows == 3
    assert verdict.rule_examples["total_amount_non_negative"] == [(5, "-5.0")]


def test_reading_stops_after_too_many_malformed_rows():
    good = rentals({}).decode()
    verdict = check((good + "1,2,3\n" * 5000).encode())
    assert problem_rules(verdict) == ["field_count"]
    assert verdict.problems[0].message.startswith("at least 1,000 rows")
    assert "reading stopped" in verdict.problems[0].message
    assert len(verdict.problems[0].examples) == 10


def test_unclosed_quote_does_not_swallow_rows_silently():
    """An unclosed quote in the last column would absorb every following line into one value."""
    lines = rentals(*[{}] * 50).decode().splitlines()
    lines[10] = lines[10].replace(",20.0", ',"20.0')
    verdict = check(("\n".join(lines) + "\n").encode())
    assert problem_rules(verdict) == ["line_break_in_value"]
    assert verdict.problems[0].column == "total_amount"
    assert verdict.problems[0].examples[0][0] == 10


class Endless(io.RawIOBase):
    """A header, the start of a row, then a field that never ends: nothing in memory."""

    def __init__(self, start: bytes, filler: bytes, total: int) -> None:
        self._start, self._filler, self._left = start, filler, total
        self.served = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if self._start:
            out, self._start = self._start[:n], self._start[n:]
        else:
            out = self._filler * min(n, self._left)
            self._left -= len(out)
        self.served += len(out)
        return out


@pytest.mark.parametrize("quote", [b'"', b""])
def test_a_50_mb_field_is_a_clear_error_not_an_oom(quote):
    start = rentals({}, {}) + b"00000000ff,u,v,2024-01-01 08:00:00,2024-01-01 09:00:00,1,2," + quote
    stream = Endless(start, b"9", 50 * 1024 * 1024)
    verdict = validate_stream(stream, dataset="rental_transactions", source="huge.csv")
    assert problem_rules(verdict) == ["row_too_large"]
    assert "from row 3 on is larger than 256 KiB" in verdict.problems[0].message
    assert stream.served < 64 * BLOCK_SIZE  # stopped early: never held the 50 MB


# --------------------------------------------------------------------------- accepted variants


def test_bom_crlf_quoting_and_column_order_are_fine():
    header = list(RENTAL_TRANSACTIONS.header)
    rows = [[GOOD_RENTAL[c] for c in header], [GOOD_RENTAL[c] for c in header]]
    rows[1][0] = "00000000a2"
    shuffled = header[::-1]
    reordered = [[dict(zip(header, r, strict=True))[c] for c in shuffled] for r in rows]
    for data in (
        csv_text(header, rows),
        csv_text(header, rows, crlf=True, bom=True),
        csv_text(header, rows, quote_all=True),
        csv_text(shuffled, reordered, crlf=True),
    ):
        verdict = check(data)
        assert verdict.accepted and verdict.rows == 2 and broken(verdict) == {}, verdict.render()


def test_threshold_is_inclusive():
    twenty = [{}] * 19 + [{"rental_id": ""}]  # 1 of 20 rows = exactly 5 %
    assert check(rentals(*twenty)).accepted
    assert not check(rentals(*twenty), reject_threshold=0.049).accepted
    assert not check(rentals(*twenty[1:])).accepted  # 1 of 19 > 5 %


def test_duplicate_keys_over_the_threshold_reject_the_file():
    rows = [{"rental_id": "same"}] * 3 + [{}] * 17
    verdict = check(rentals(*rows))
    assert "rental_id_unique" in problem_rules(verdict)
    assert verdict.rule_examples["rental_id_unique"] == [(2, "same"), (3, "same")]
    assert verdict.rejected_rows == 2


def test_a_row_breaking_two_rules_counts_once():
    rows = [{"rental_id": "dup"}, {"rental_id": "dup", "total_amount": "-1"}] + [{}] * 38
    verdict = check(rentals(*rows))
    assert broken(verdict) == {"rental_id_unique": 1, "total_amount_non_negative": 1}
    assert verdict.rejected_rows == 1 and verdict.accepted


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("rental_start_time", "2024-02-30 08:00:00"),  # no such day
        ("rental_start_time", "2023-02-29 08:00:00"),  # not a leap year
        ("rental_start_time", "2024-01-01 24:00:00"),
        ("rental_start_time", "2024-01-01 08:60:00"),
        ("rental_start_time", "2024-1-1 8:00:00"),
        ("rental_start_time", " 2024-01-01 08:00:00"),
        ("rental_start_time", "2024-01-01T08:00:00"),
        ("rental_start_time", "2024-01-01 08:00"),
        ("rental_start_time", "\uff12\uff10\uff12\uff14-01-01 08:00:00"),  # full-width digits
        ("pickup_location", "+5"),
        ("pickup_location", " 5"),
        ("pickup_location", "5.0"),
        ("pickup_location", "2147483648"),
        ("pickup_location", "\u0665"),  # an Arabic-Indic digit
        ("total_amount", "1.234"),
        ("total_amount", "12345678901"),
        ("total_amount", "1e3"),
        ("total_amount", "20,0"),
    ],
)
def test_formats_are_strict(column, value):
    verdict = check(rentals(*[{}] * 30, {column: value}))
    assert broken(verdict) == {f"{column}_format": 1}, verdict.render()
    assert verdict.rule_examples[f"{column}_format"] == [(31, value)]


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("rental_start_time", "2024-02-29 00:00:00"),
        ("rental_start_time", "2000-02-29 23:59:59"),
        ("pickup_location", "-2147483648"),
        ("pickup_location", "0042"),
        ("total_amount", "0"),
        ("total_amount", "1234567890.99"),
        ("total_amount", "-0.5"),
    ],
)
def test_formats_accept_valid_edge_values(column, value):
    changes = {column: value}
    if column == "rental_start_time":
        changes["rental_end_time"] = "2099-01-01 00:00:00"
    verdict = check(rentals(changes))
    assert {r: n for r, n in broken(verdict).items() if r.endswith("_format")} == {}


DATETIME_PATTERNS = sorted({c.pattern for ds in DATASETS.values() for c in ds.columns if c.pattern})
# Spark pattern letters -> (strptime directive, datetime attribute)
FIELDS = {
    "yyyy": ("%Y", "year"),
    "MM": ("%m", "month"),
    "dd": ("%d", "day"),
    "HH": ("%H", "hour"),
    "mm": ("%M", "minute"),
    "ss": ("%S", "second"),
}


def reference_instant(value: str, pattern: str) -> int | None:
    """Wall-clock seconds since 1970 of a value written exactly in `pattern` (zero-padded ASCII
    digits where the pattern has letters, its other characters as they are), else None."""
    shape, strptime_format = re.escape(pattern), pattern
    for letters, (directive, _) in FIELDS.items():
        shape = shape.replace(letters, "[0-9]" * len(letters))
        strptime_format = strptime_format.replace(letters, directive)
    if not re.fullmatch(shape, value):
        return None
    try:
        instant = datetime.strptime(value, strptime_format)
    except ValueError:  # no such day or time of day, or year 0
        return None
    return int((instant - datetime(1970, 1, 1)).total_seconds())


def written(instant: datetime, pattern: str) -> str:
    for letters, (_, field) in FIELDS.items():
        pattern = pattern.replace(letters, f"{getattr(instant, field):0{len(letters)}d}")
    return pattern


def datetime_texts(pattern: str, *, only_real: bool):
    """Values of `pattern`: real instants, and (unless `only_real`) digits at random (a month
    13, a 30 February, a second 60, a year 0); each possibly with one character replaced."""
    real = st.datetimes(min_value=datetime(1, 1, 1)).map(lambda d: written(d, pattern))
    year_zero = written(datetime(2000, 1, 1), pattern).replace("2000", "0000")
    template = written(datetime(1111, 11, 11, 11, 11, 11), pattern)
    any_digits = st.lists(
        st.sampled_from("0123456789"), min_size=len(template), max_size=len(template)
    ).map(lambda ds: "".join(d if c == "1" else c for d, c in zip(ds, template, strict=True)))
    values = real if only_real else st.one_of(real, any_digits, st.just(year_zero))
    replaced = st.tuples(
        values, st.integers(0, len(pattern) - 1), st.sampled_from("0-: T+ax\u0663")
    )
    mutated = replaced.map(lambda v: v[0][: v[1]] + v[2] + v[0][v[1] + 1 :])
    # wrong shapes: the fast path keeps them out before the cast
    shapes = st.sampled_from(["", "2024-1-1", "2024-01-01T08:00:00", "+2024-01-01"])
    return st.one_of(values, shapes) if only_real else st.one_of(values, mutated, shapes)


@pytest.mark.parametrize("pattern", DATETIME_PATTERNS)
@given(data=st.data())
def test_datetimes_parse_as_python_reads_them(pattern, data):
    """Batches of real instants only (Arrow's cast reads them all) and batches with values of
    the right shape that are not real instants (then NumPy reads the digits)."""
    import pyarrow as pa

    from carrental.validation.columns import layout_of, parse_datetime

    texts = datetime_texts(pattern, only_real=data.draw(st.booleans()))
    values = data.draw(st.lists(texts, min_size=1, max_size=30))
    parsed = parse_datetime(pa.array(values, pa.string()), layout_of(pattern))
    expected = [reference_instant(v, pattern) for v in values]
    assert parsed.valid.tolist() == [e is not None for e in expected]
    got = [int(s) if ok else None for s, ok in zip(parsed.values, parsed.valid, strict=True)]
    assert got == expected


def test_after_and_min_value_rules():
    verdict = check(
        rentals(
            {"rental_end_time": "2024-01-01 08:00:00"},  # equal: not later
            {"rental_end_time": "2023-12-31 23:00:00"},
            {"rental_end_time": "2024-01-01 08:00:01"},  # one second later: fine
            {"rental_end_time": "garbage"},  # a format break, not an order break
            {"total_amount": "-0.01"},
            *[{}] * 95,
        )
    )
    assert broken(verdict) == {
        "rental_end_after_start": 2,
        "rental_end_time_format": 1,
        "total_amount_non_negative": 1,
    }
    assert verdict.rule_examples["rental_end_after_start"][0] == (
        1,
        "2024-01-01 08:00:00 (not after rental_start_time 2024-01-01 08:00:00)",
    )


def test_allowed_values_and_warn_rules_on_vehicles(clean_batch):
    raw = rows_of(clean_batch / "vehicles.csv")[:50]
    raw[3]["vehicle_type"] = "luxury"
    raw[4]["expiration_date"] = "2024-06-01"  # warn-level: the contract says dd-MM-yyyy
    raw[5]["vehicle_year"] = "twenty"
    header = list(raw[0])
    verdict = check(csv_text(header, [[r[c] for c in header] for r in raw]), dataset="vehicles")
    assert broken(verdict) == {
        "vehicle_type_known": 1,
        "expiration_date_format": 1,
        "vehicle_year_format": 1,
    }
    assert verdict.rejected_rows == 1  # only vehicle_type_known is a reject rule
    assert DATASETS["vehicles"].rule("expiration_date_format").severity is Severity.WARN
    assert verdict.accepted  # 1 of 50 = 2 %


# --------------------------------------------------------------------------- naming helpers


@pytest.mark.parametrize(
    ("path", "explicit", "expected"),
    [
        ("raw/vehicles/2024-06-01.csv", None, "vehicles"),
        ("s3://bucket/raw/users/sub/part 1.csv", None, "users"),
        ("data/locations/anything.csv", None, "locations"),
        ("data/sample/rental_transactions.csv", None, "rental_transactions"),
        ("whatever.csv", "users", "users"),
        ("raw/vehicles/users.csv", None, "vehicles"),
    ],
)
def test_infer_dataset(path, explicit, expected):
    assert infer_dataset(path, explicit) == expected


@pytest.mark.parametrize(("path", "explicit"), [("data/sample/cars.csv", None), ("x.csv", "cars")])
def test_infer_dataset_names_the_known_datasets(path, explicit):
    with pytest.raises(ValueError, match="vehicles, locations, users, rental_transactions"):
        infer_dataset(path, explicit)


def test_verdict_json_is_serialisable_and_complete(dirty_batch):
    verdict = validate_path(dirty_batch / "rental_transactions.csv", reject_threshold=0.01)
    as_json = json.loads(json.dumps(verdict.to_dict()))
    assert as_json["verdict"] == "rejected" and as_json["rows"] == verdict.rows
    assert as_json["problems"][1]["examples"][0].keys() == {"row", "value"}
    assert as_json["rule_counts"] == verdict.rule_counts


# --------------------------------------------------------------------------- duplicate keys


def reference_duplicates(keys: list[str], flags: list[bool]) -> tuple[int, int, list]:
    seen: set[str] = set()
    duplicates = []
    for row, (key, flagged) in enumerate(zip(keys, flags, strict=True), start=1):
        if key in seen:
            duplicates.append((row, key, flagged))
        seen.add(key)
    return (
        len(duplicates),
        sum(not flagged for _, _, flagged in duplicates),
        [(row, key) for row, key, _ in duplicates[:10]],
    )


def feed(index: DuplicateKeys, keys: list[str], flags: list[bool], batch: int) -> None:
    import numpy as np
    import pyarrow as pa

    for start in range(0, len(keys), batch):
        index.add(
            pa.array(keys[start : start + batch], pa.string()),
            np.arange(start + 1, start + 1 + len(keys[start : start + batch])),
            np.array(flags[start : start + batch], dtype=bool),
        )


key_text = st.one_of(
    st.text(min_size=1, max_size=12),
    st.text(alphabet="ab", min_size=1, max_size=3),  # many collisions
    st.text(alphabet="xyz", min_size=60, max_size=90),  # the long-key hash path
)


@given(
    keys=st.lists(key_text, min_size=1, max_size=300),
    seed=st.integers(0, 2**32 - 1),
    budget=st.sampled_from([64, 2048, 10**9]),
    batch=st.integers(1, 97),
)
def test_duplicate_keys_match_a_plain_set(keys, seed, budget, batch):
    flags = [random.Random(seed + i).random() < 0.3 for i in range(len(keys))]
    index = DuplicateKeys(memory_budget=budget)
    feed(index, keys, flags, batch)
    assert index.finish() == reference_duplicates(keys, flags)


def test_spilling_really_happens_and_cleans_up():
    keys = [f"k{i % 5000:05d}" for i in range(20_000)]
    index = DuplicateKeys(memory_budget=10_000)
    feed(index, keys, [False] * len(keys), 1000)
    assert index.spilled
    folder = Path(index._spill_dir.name)
    assert any(folder.iterdir())
    assert index.finish() == reference_duplicates(keys, [False] * len(keys))
    assert not folder.exists()


# --------------------------------------------------------------------------- CSV properties

# Any text except line breaks (a value is single-line by contract), NUL (binary content) and
# lone surrogates (not encodable): quotes, commas, spaces, unicode, empty strings all included.
value_text = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n\x00"), max_size=12
)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def is_date(value: str) -> bool:
    if not DATE.fullmatch(value):
        return False
    try:
        return datetime.strptime(value, "%Y-%m-%d").year >= 1
    except ValueError:
        return False


users_row = st.fixed_dictionaries(
    {
        "user_id": st.one_of(st.sampled_from(["", "u1", "u2", "u,3", 'u"4']), value_text),
        "first_name": value_text,
        "last_name": value_text,
        "email": value_text,
        "phone_number": value_text,
        "driver_license_number": value_text,
        "driver_license_expiry": st.one_of(st.just("2030-01-31"), value_text),
        "creation_date": st.one_of(st.sampled_from(["2024-02-29", "2023-02-29"]), value_text),
        "is_active": st.one_of(st.sampled_from(["0", "1", ""]), value_text),
    }
)


def expected_user_counts(rows: list[dict[str, str]]) -> dict[str, int]:
    """The users contract's single-dataset rules, recomputed in plain Python."""
    counts: Counter = Counter()
    seen: set[str] = set()
    for row in rows:
        if row["user_id"] == "":
            counts["user_id_not_null"] += 1
        elif row["user_id"] in seen:
            counts["user_id_unique"] += 1
        seen.add(row["user_id"])
        for column in ("driver_license_expiry", "creation_date"):
            if row[column] and not is_date(row[column]):
                counts[f"{column}_format"] += 1
        if row["is_active"] and row["is_active"] not in ("0", "1"):
            counts["is_active_format"] += 1
    return dict(counts)


@given(
    rows=st.lists(users_row, min_size=1, max_size=25),
    crlf=st.booleans(),
    bom=st.booleans(),
    quote_all=st.booleans(),
    order_seed=st.integers(0, 1000),
    chunk=st.sampled_from([1, 7, 4096]),
)
def test_csv_edge_cases_round_trip(rows, crlf, bom, quote_all, order_seed, chunk):
    header = list(USERS.header)
    random.Random(order_seed).shuffle(header)
    data = csv_text(
        header, [[r[c] for c in header] for r in rows], crlf=crlf, bom=bom, quote_all=quote_all
    )
    verdict = validate_stream(Trickle(data, chunk), dataset="users", source="users.csv")
    assert verdict.rows == len(rows)
    assert broken(verdict) == expected_user_counts(rows)
    assert verdict.bytes == len(data)
    for rule, examples in verdict.rule_examples.items():
        column = USERS.rule(rule).columns[0]
        for row, value in examples:
            assert value == rows[row - 1][column]  # quotes, commas, unicode: verbatim


@given(names=st.lists(value_text, min_size=1, max_size=20))
def test_quoted_commas_and_quotes_in_names_keep_the_field_count(names):
    header = list(LOCATIONS.header)
    rows = [[str(i), name, "a", "c", "CA", "9", "1.5", "-2"] for i, name in enumerate(names)]
    verdict = check(csv_text(header, rows), dataset="locations")
    assert verdict.accepted, verdict.render()
    assert verdict.rows == len(names)


def test_utf8_split_across_reads_is_fine():
    data = rentals({"user_id": "ü" * 3000})
    for chunk in (1, 2, 3, 5):
        assert check_trickled(data, chunk).accepted


def test_the_core_imports_nothing_the_lambda_or_emr_lack():
    code = (
        "import sys, carrental.validation; "
        "print(sorted({'duckdb', 'sqlglot', 'rich', 'pyspark'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_array_helpers_read_slices_as_pyarrow_does():
    """carrental.validation.arrays reads buffers directly: slices (an offset into the buffers)
    and bitmaps must come out as pyarrow's own conversions say."""
    import numpy as np
    import pyarrow as pa

    from carrental.validation import arrays

    text = pa.array([f"v{i}" * (i % 3) for i in range(40)]).slice(5, 30)
    keep = np.arange(30) % 4 != 1
    assert arrays.null_where_not(text, keep).to_pylist() == [
        v if k else None for v, k in zip(text.to_pylist(), keep, strict=True)
    ]
    assert arrays.byte_lengths(text).tolist() == [len(v) for v in text.to_pylist()]
    flags = pa.array([i % 3 == 0 for i in range(50)]).slice(7, 33)
    assert arrays.bools(flags).tolist() == flags.to_pylist()
    assert arrays.arrow_bools(arrays.bools(flags)).to_pylist() == flags.to_pylist()
    integers = pa.array(range(100), pa.int64()).slice(11, 17)
    assert arrays.numbers(integers, np.int64).tolist() == integers.to_pylist()
    values = np.array([3, -1, 7], dtype=np.int64)
    with_nulls = arrays.arrow_numbers(values, pa.int64(), np.array([True, False, True]))
    assert with_nulls.to_pylist() == [3, None, 7]
    assert arrays.arrow_strings(["a", "bé", ""]).to_pylist() == ["a", "bé", ""]
    matrix = np.frombuffer(b"2024-01-0212:00", dtype=np.uint8).reshape(3, 5)
    assert arrays.fixed_width_strings(matrix).to_pylist() == ["2024-", "01-02", "12:00"]


def test_validating_and_staging_do_not_import_pandas(dirty_batch, tmp_path):
    """pyarrow imports pandas on its first NumPy or Python-object conversion: ~0.2 s of every
    fresh process (a cold Lambda) that the validator avoids (carrental.validation.arrays)."""
    code = (
        "import sys; from pathlib import Path; "
        "from carrental.contracts import DATASETS; "
        "from carrental.staging import StagedWriter; "
        "from carrental.validation import validate_stream; "
        f"folder = Path({str(tmp_path)!r}); "
        f"files = sorted(Path({str(dirty_batch)!r}).glob('*.csv')); "
        "verdicts = [validate_stream(open(f, 'rb'), dataset=f.stem, source=f.name, "
        "sink=StagedWriter(DATASETS[f.stem], folder)) for f in files]; "
        "print(len(files), sum(v.rows for v in verdicts), 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    files, rows, pandas = out.stdout.split()
    assert int(files) == 4 and int(rows) > 4000
    assert pandas == "False"


# --------------------------------------------------------------------------- the CLI


def test_cli_exit_codes_and_text(dirty_batch, clean_batch, tmp_path, capsys):
    files = [str(clean_batch / f"{name}.csv") for name in FILES]
    assert main(["validate", *files]) == 0
    out = capsys.readouterr().out
    assert all(f"{name}.csv: ACCEPTED" in out for name in FILES)

    dirty = str(dirty_batch / "rental_transactions.csv")
    assert main(["validate", dirty, "--reject-threshold", "0.01"]) == 1
    out = capsys.readouterr().out
    assert "REJECTED" in out and "rental_id_unique [column rental_id]" in out
    assert re.search(r"row \d+: '", out)

    wrong = tmp_path / "raw" / "users" / "export.csv"
    wrong.parent.mkdir(parents=True)
    wrong.write_bytes(rentals({}))
    assert main(["validate", str(wrong)]) == 1  # the folder says users: columns do not match
    assert "header_missing_column" in capsys.readouterr().out
    assert main(["validate", str(wrong), "--dataset", "rental_transactions"]) == 0
    capsys.readouterr()


def test_cli_json(dirty_batch, capsys):
    path = str(dirty_batch / "rental_transactions.csv")
    assert main(["validate", "--json", path]) == 0
    (verdict,) = json.loads(capsys.readouterr().out)
    assert verdict["verdict"] == "accepted" and verdict["source"] == path
    assert verdict == validate_path(path).to_dict()


def test_cli_usage_errors(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv: no such file" in capsys.readouterr().err
    assert main(["validate", str(tmp_path), "--dataset", "users"]) == 2
    assert main(["validate", "x.csv", "--dataset", "cars"]) == 2
    assert "unknown dataset 'cars'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["validate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main(["validate", "x.csv", "--reject-threshold", "2"])
    assert exc.value.code == 2


def test_cli_unknown_dataset_from_the_name_is_a_rejection(tmp_path, capsys):
    path = tmp_path / "cars.csv"
    path.write_bytes(rentals({}))
    assert main(["validate", str(path)]) == 1
    assert "unknown_dataset" in capsys.readouterr().out
