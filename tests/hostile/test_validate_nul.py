"""Issue 12, item 3: a NUL byte is rejected wherever it is in a file, with its row and column.
Row numbers are worked out here from the file's bytes (row 1 = the line after the header)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from carrental.cli import main
from carrental.validation import validate_path
from tests.conftest import generated_batch


@pytest.fixture(scope="module")
def users_csv(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    # users.csv: ~290 KB, ~3,000 rows
    out = generated_batch(tmp_path_factory, "nul_batch", scale=0.1, seed=3)
    return (out / "users.csv").read_bytes()


def with_nul(content: bytes, offset: int) -> bytes:
    return content[:offset] + b"\x00" + content[offset:]


def row_and_column(content: bytes, offset: int) -> tuple[int, str]:
    """The row holding byte `offset` and its column, by counting the bytes before it (the
    generated users.csv quotes no field, so commas separate fields)."""
    lines = content.split(b"\n")
    header = lines[0].decode().split(",")
    start = 0
    for number, line in enumerate(lines):
        if offset <= start + len(line):
            return number, header[line[: offset - start].count(b",")]
        start += len(line) + 1
    raise AssertionError("offset beyond the file")


def verdict_of(path: Path, capsys) -> dict:
    code = main(["validate", "--json", str(path)])
    (verdict,) = json.loads(capsys.readouterr().out)
    assert code == (0 if verdict["accepted"] else 1)
    return verdict


@pytest.mark.parametrize("where", [0.25, 0.5, 0.82, 0.999])
def test_a_nul_in_a_value_is_rejected_with_its_row_and_column(users_csv, tmp_path, capsys, where):
    """0.82 of ~290 KB is past byte 239,930 (the NUL the issue saw accepted)."""
    offset = int(len(users_csv) * where)
    while users_csv[offset : offset + 1] in (b",", b"\n"):  # inside a value, not at its edge
        offset += 1
    row, column = row_and_column(users_csv, offset)
    path = tmp_path / "users.csv"
    path.write_bytes(with_nul(users_csv, offset))
    verdict = verdict_of(path, capsys)
    assert verdict["verdict"] == "rejected"
    (problem,) = verdict["problems"]
    assert problem["rule"] == "not_csv_text" and problem["column"] == column
    assert problem["message"].startswith(f"row {row:,}, column {column}: a NUL byte")
    assert problem["examples"][0]["row"] == row and "\x00" in problem["examples"][0]["value"]


def test_a_nul_in_the_header_or_a_binary_start_makes_the_file_binary(users_csv, tmp_path):
    for content in (with_nul(users_csv, 10), b"user_id\n\x00\x01\x02\x03" + users_csv[:200]):
        path = tmp_path / "users.csv"
        path.write_bytes(content)
        (problem,) = validate_path(path).problems
        assert problem.rule == "not_csv_text" and problem.message.startswith("the file is binary")


def test_a_nul_in_a_row_with_a_wrong_field_count_still_rejects_the_file(users_csv, tmp_path):
    lines = users_csv.split(b"\n")
    lines[2000] = b"only,three\x00,fields"
    path = tmp_path / "users.csv"
    path.write_bytes(b"\n".join(lines))
    offset = sum(len(line) + 1 for line in lines[:2000]) + len(b"only,three")
    verdict = validate_path(path)
    assert not verdict.accepted
    assert {p.rule for p in verdict.problems} == {"field_count", "not_csv_text"}
    nul = next(p for p in verdict.problems if p.rule == "not_csv_text")
    assert nul.message.startswith(f"byte {offset:,} of the file is a NUL byte")


def test_a_nul_inside_quotes_and_at_the_very_end(users_csv, tmp_path):
    lines = users_csv.rstrip(b"\n").split(b"\n")
    fields = lines[5].split(b",")
    fields[1] = b'"Ly\x00nn, quoted"'
    lines[5] = b",".join(fields)
    quoted = tmp_path / "quoted" / "users.csv"
    quoted.parent.mkdir()
    quoted.write_bytes(b"\n".join(lines) + b"\n")
    (problem,) = validate_path(quoted).problems
    assert problem.message.startswith("row 5, column first_name: a NUL byte")
    at_end = tmp_path / "end" / "users.csv"
    at_end.parent.mkdir()
    at_end.write_bytes(users_csv.rstrip(b"\n") + b"\x00")
    (problem,) = validate_path(at_end).problems
    last_row = users_csv.rstrip(b"\n").count(b"\n")
    assert problem.message.startswith(f"row {last_row:,}, column is_active: a NUL byte")


def test_utf16_without_a_byte_order_mark_is_named(users_csv, tmp_path):
    path = tmp_path / "users.csv"
    path.write_bytes(users_csv[:4000].decode().encode("utf-16-le"))
    (problem,) = validate_path(path).problems
    assert problem.rule == "not_utf8" and "UTF-16" in problem.message
