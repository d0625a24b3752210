"""Issue 12, item 7 (and the parts of items 4 and 8 that live in `query` and `validate`): a
closed pipe, Ctrl-C, a damaged catalog and SQL errors each end in a clear message, never a
traceback, with no terminal codes unless the output is a terminal."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from carrental import lake
from carrental.cli import main
from tests.conftest import generated_batch
from tests.hostile.conftest import REPO_ROOT, interrupted, run_cli, run_on_terminal


def closed_pipe() -> int:
    """A pipe whose reader is already gone: the first write fails with EPIPE."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end


@pytest.fixture(scope="module")
def batch_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_batch(tmp_path_factory, "plumbing_batch", scale=0.05, seed=2)


def commands_that_print(lake: Path, batch: Path, tmp: Path) -> dict[str, list[str]]:
    return {
        "generate": ["generate", "--out", str(tmp / "gen"), "--scale", "0.01"],
        "contracts": ["contracts"],
        "validate": ["validate", str(batch / "users.csv"), str(batch / "vehicles.csv")],
        "validate --json": ["validate", "--json", str(batch / "users.csv")],
        "ingest": ["ingest", "--lake", str(tmp / "lake"), str(batch / "users.csv")],
        "sync-template-sql --check": ["sync-template-sql", "--check"],
        **{
            f"query --format {fmt}": [
                "query",
                "--lake",
                str(lake),
                "--format",
                fmt,
                "SELECT * FROM daily_metrics",
            ]
            for fmt in ("table", "csv", "json", "markdown")
        },
    }


def test_a_closed_pipe_ends_every_command_quietly(big_lake, batch_file, tmp_path):
    """`carrental ... | head`, deterministically: the reader is gone before the first write.
    (`carrental run` ends through the same main(); its stages need Spark, see tests/local.)"""
    for name, arguments in commands_that_print(big_lake, batch_file, tmp_path).items():
        write_end = closed_pipe()
        try:
            result = run_cli(*arguments, stdout=write_end)
        finally:
            os.close(write_end)
        assert result.returncode == 141, (name, result.stderr)
        assert result.stderr == b"", name


def test_a_real_head_stops_a_big_export(big_lake):
    command = (
        f"{sys.executable} -m carrental.cli query --lake {big_lake} --format csv "
        "'SELECT * FROM daily_metrics' | head -n 3"
    )
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, cwd=REPO_ROOT
    )
    assert result.stdout.decode().splitlines()[0].startswith("rental_date,rental_count")
    assert len(result.stdout.splitlines()) == 3
    assert result.returncode == 141 and result.stderr == b""


def query_error(lake: Path, sql: str, capsys) -> list[str]:
    assert main(["query", "--lake", str(lake), sql]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.rstrip("\n").split("\n")


def test_a_sqlglot_parse_error_points_at_the_users_sql(hostile_lake, capsys):
    assert query_error(hostile_lake, "SELEC * FROM x", capsys) == [
        "carrental query: SQL syntax error near 'FROM': Required keyword: 'expression' missing "
        "for Mul (line 1, column 9)",
        "  SELEC * FROM x",
        "          ^^^^",
        "  'SELEC' is not a SQL keyword: did you mean SELECT?",
    ]
    assert query_error(hostile_lake, "SELECT *\nFROM user_metrics\nWHERE a = = 1", capsys) == [
        "carrental query: SQL syntax error near '=': Required keyword: 'expression' missing for "
        "EQ (line 3, column 11)",
        "  WHERE a = = 1",
        "            ^",
    ]


def test_an_unclosed_string_or_comment_is_located(hostile_lake, capsys):
    assert query_error(hostile_lake, "SELECT 1,\n  'abc FROM t", capsys) == [
        "carrental query: SQL syntax error: a string literal ' is never closed (line 2, column 3)",
        "    'abc FROM t",
        "    ^",
    ]
    assert query_error(hostile_lake, "SELECT 1 /* forever", capsys)[0].endswith(
        "a comment /* is never closed (line 1, column 10)"
    )


def test_a_duckdb_error_is_mapped_back_to_the_users_sql(hostile_lake, capsys):
    """The translated SQL differs (approx_distinct becomes approx_count_distinct), the caret
    still lands on the user's own text: line 2, the 3rd character."""
    sql = "SELECT approx_distinct(user_id),\n  nope\nFROM user_metrics"
    lines = query_error(hostile_lake, sql, capsys)
    assert lines[:3] == [
        'carrental query: SQL error (DuckDB binder): Referenced column "nope" not found in FROM '
        "clause! (line 2, column 3)",
        "    nope",
        "    ^^^^",
    ]
    assert lines[3].startswith("  Candidate bindings: ")


def test_empty_and_multiple_statements(hostile_lake, capsys):
    assert query_error(hostile_lake, "", capsys) == [
        "carrental query: the query is empty: pass one SQL statement, e.g. "
        '"SELECT * FROM location_performance LIMIT 5"'
    ]
    assert query_error(hostile_lake, " -- a comment\n;", capsys) == [
        "carrental query: the query holds no SQL statement (only comments or ';')"
    ]
    assert query_error(hostile_lake, "SELECT 1; SELECT 2", capsys) == [
        "carrental query: expected one SQL statement, got 2: run them one at a time"
    ]


def test_no_terminal_codes_in_piped_errors_and_tables(hostile_lake, tmp_path):
    for arguments in (
        ["query", "--lake", str(hostile_lake), "SELEC * FROM x"],
        ["query", "--lake", str(hostile_lake), "SELECT * FROM location_performance"],
        ["query", "--lake", str(hostile_lake), "SELECT location_name FROM location_performance"],
        ["validate", str(tmp_path / "missing.csv")],
    ):
        result = run_cli(*arguments)
        assert b"\x1b" not in result.stdout + result.stderr, arguments
        assert b"Traceback" not in result.stderr


def test_a_table_on_a_terminal_is_styled(hostile_lake):
    code, out = run_on_terminal(
        "query", "--lake", str(hostile_lake), "SELECT location_name FROM location_performance"
    )
    assert code == 0 and b"\x1b[1m" in out  # the bold header: the pipe test above can fail


@pytest.mark.parametrize("what", ["damaged", "truncated", "folder"])
def test_a_damaged_publish_record_is_named_with_what_to_do(hostile_lake, tmp_path, what):
    broken = tmp_path / "lake"
    shutil.copytree(hostile_lake, broken)
    target = broken / lake.PUBLISHED_RECORD
    if what == "damaged":
        target.write_bytes(b"\x00\x01not a record\n")
    elif what == "truncated":
        target.write_bytes(target.read_bytes()[:25])
    else:
        target.unlink()
        target.mkdir()
    result = run_cli("query", "--lake", str(broken), "SELECT 1")
    assert result.returncode == 1
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"carrental query: {target}")
    assert line.endswith(("restore the file or remove the line", "restore it from a backup"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")
def test_ctrl_c_during_a_query_ends_in_one_line(big_lake):
    sql = "SELECT count(*) FROM daily_metrics a, daily_metrics b, daily_metrics c"
    code, err = interrupted(["query", "--lake", str(big_lake), sql], ".parquet")
    assert (code, err) == (130, "carrental query: interrupted\n")


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="needs Linux /proc")
def test_ctrl_c_during_validation_ends_in_one_line_and_leaves_nothing(batch_file, tmp_path):
    """A 200 MB rentals file (the batch's rows over and over), interrupted while it is read."""
    rows = (batch_file / "rental_transactions.csv").read_bytes().split(b"\n", 1)
    big = tmp_path / "raw" / "rental_transactions" / "big.csv"
    big.parent.mkdir(parents=True)
    with big.open("wb") as out:
        out.write(rows[0] + b"\n")
        while out.tell() < 200e6:
            out.write(rows[1])
    spill_dirs = set(Path(os.environ.get("TMPDIR", "/tmp")).glob("carrental-keys-*"))
    code, err = interrupted(["validate", str(big)], "big.csv")
    assert (code, err) == (130, "carrental validate: interrupted\n")
    assert set(Path(os.environ.get("TMPDIR", "/tmp")).glob("carrental-keys-*")) <= spill_dirs
