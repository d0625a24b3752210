"""Property-based attacks (hypothesis; profile "fast" in `make test`, HYPOTHESIS_PROFILE=thorough
for a long run): random bytes and mutated CSVs into `carrental validate` and the ValidateUpload
handler under moto, random SQL into `carrental query`. Whatever comes in: no traceback, a
verdict (accepted, or rejected with reasons) or a short error, memory bounded, and no file
touched outside the lake."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from carrental import lake
from carrental.cli import main
from carrental.validation import validate_stream
from tests.aws.conftest import load_function, use_fake_aws
from tests.aws.daily import daily_stack
from tests.conftest import generated_batch
from tests.hostile.conftest import REPO_ROOT, file_states, publish_run

DATASETS = ("vehicles", "locations", "users", "rental_transactions")


@pytest.fixture(scope="module")
def valid_csvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Small valid files of every dataset (a few dozen rows: mutations stay cheap)."""
    out = generated_batch(tmp_path_factory, "fuzz_batch", scale=0.002, seed=9)
    return {name: (out / f"{name}.csv").read_bytes() for name in DATASETS}


# --- mutated CSVs -------------------------------------------------------------------------------

INSERTS = [b'"', b",", b"\n", b"\r\n", b"\r", b"\x00", b"\xff", b"\xef\xbb\xbf", b";", b"\t"]
INSERTS += [b'""', b'"a,b"', b"\\", b"\x1b[31m", "é".encode(), "é".encode("latin-1"), b"-1"]


@st.composite
def mutated(draw, valid_csvs: dict[str, bytes]) -> tuple[str, bytes]:
    dataset = draw(st.sampled_from(DATASETS))
    content = valid_csvs[dataset]
    for _ in range(draw(st.integers(1, 4))):
        size = len(content)
        at = draw(st.integers(0, size))
        operation = draw(
            st.sampled_from(
                [
                    "insert",
                    "random bytes",
                    "delete",
                    "truncate",
                    "huge field",
                    "re-encode",
                    "crlf",
                    "duplicate line",
                    "swap header",
                ]
            )
        )
        if operation == "insert":
            content = content[:at] + draw(st.sampled_from(INSERTS)) + content[at:]
        elif operation == "random bytes":
            content = content[:at] + draw(st.binary(min_size=1, max_size=64)) + content[at:]
        elif operation == "delete":
            content = content[:at] + content[at + draw(st.integers(1, 200)) :]
        elif operation == "truncate":
            content = content[:at]
        elif operation == "huge field":  # past the reader's 256 KiB block, or just under it
            length = draw(st.sampled_from([100_000, 262_143, 300_000]))
            content = content[:at] + b"x" * length + content[at:]
        elif operation == "re-encode":
            codec = draw(st.sampled_from(["utf-16", "utf-16-le", "utf-8-sig", "latin-1", "cp1252"]))
            text = content.decode("utf-8", "replace").replace("a", "ä", 3)
            content = text.encode(codec, "replace")
        elif operation == "crlf":
            content = content.replace(b"\n", b"\r\n")
        elif operation == "duplicate line":
            lines = content.split(b"\n")
            line = draw(st.integers(0, len(lines) - 1))
            content = b"\n".join([*lines[: line + 1], lines[line], *lines[line + 1 :]])
        else:
            header, _, rest = content.partition(b"\n")
            names = header.split(b",")
            i, j = draw(st.integers(0, len(names) - 1)), draw(st.integers(0, len(names) - 1))
            names[i], names[j] = names[j], names[i]
            content = b",".join(names) + b"\n" + rest
    return dataset, content


def assert_a_verdict(verdict: dict) -> None:
    assert verdict["verdict"] in ("accepted", "rejected")
    assert verdict["accepted"] == (verdict["verdict"] == "accepted")
    if not verdict["accepted"]:
        assert verdict["problems"], verdict
        assert all(p["rule"] and p["message"] for p in verdict["problems"])


def test_random_bytes_get_a_verdict(tmp_path):
    allocated = pa.total_allocated_bytes()

    @given(data=st.binary(max_size=4096), dataset=st.sampled_from(DATASETS))
    @settings(suppress_health_check=[HealthCheck.too_slow])
    def check(data: bytes, dataset: str) -> None:
        verdict = validate_stream(io.BytesIO(data), dataset=dataset, source="fuzz")
        assert_a_verdict(verdict.to_dict())
        # nothing is kept once the verdict is out (no batch, no key index)
        assert pa.total_allocated_bytes() <= allocated + 1024 * 1024

    check()


def test_mutated_csvs_through_the_cli_get_a_verdict(valid_csvs, tmp_path):
    @given(case=mutated(valid_csvs))
    @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    def check(case: tuple[str, bytes]) -> None:
        dataset, content = case
        path = tmp_path / dataset / f"{dataset}.csv"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(content)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["validate", "--json", str(path)])
        assert err.getvalue() == ""
        (verdict,) = json.loads(out.getvalue())
        assert_a_verdict(verdict)
        assert code == (0 if verdict["accepted"] else 1)

    check()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux /proc")
def test_a_pathological_field_keeps_memory_bounded(tmp_path):
    """A 150 MB field: the validator stops at its 256 KiB block (a fresh process, so the peak
    RSS is this validation's alone)."""
    path = tmp_path / "users" / "users.csv"
    path.parent.mkdir()
    with path.open("wb") as out:
        out.write(b"user_id,first_name,last_name,email,phone_number,driver_license_number,")
        out.write(b'driver_license_expiry,creation_date,is_active\n0000000001,"')
        for _ in range(150):
            out.write(b"x" * 1_000_000)
        out.write(b'",a,b,c,d,2025-01-01,2024-01-01,1\n')
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec from the forked pytest process
    measure = (
        "import sys; from carrental.cli import main; code = main(sys.argv[1:]); "
        "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0], file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", measure, "validate", "--json", str(path)],
        capture_output=True,
        cwd=REPO_ROOT,
    )
    (verdict,) = json.loads(result.stdout)
    assert [p["rule"] for p in verdict["problems"]] == ["row_too_large"]
    assert verdict["bytes"] < 16e6  # it read on only as far as the reader's readahead
    peak_kib = int(result.stderr.decode().split()[-1])
    assert peak_kib * 1024 < 200e6, peak_kib


# --- the ValidateUpload handler under moto ------------------------------------------------------


def test_mutated_uploads_through_the_lambda_handler_get_a_verdict(
    valid_csvs, monkeypatch, tmp_path
):
    use_fake_aws(monkeypatch)
    validate_app = load_function("validate_upload", "validate-upload")
    scheduler_app = load_function("run_scheduler", "run-scheduler")  # the stack's, unused here
    uploads = iter(range(1_000_000))
    with daily_stack(validate_app, scheduler_app, monkeypatch, tmp_path / "staging") as stack:

        @given(case=mutated(valid_csvs))
        @settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        def check(case: tuple[str, bytes]) -> None:
            dataset, content = case
            event = stack.upload(lake.raw_key(dataset, f"fuzz-{next(uploads)}.csv"), content)
            with contextlib.redirect_stdout(io.StringIO()):  # Powertools' logs and metrics
                outcome = stack.validate(event, monkeypatch)
            assert outcome["status"] in ("accepted", "rejected"), outcome
            assert outcome["reason"]
            if outcome["status"] == "rejected":
                verdict = json.loads(stack.body(outcome["quarantine_key"] + ".errors.json"))
                assert_a_verdict(verdict) and verdict["verdict"] == "rejected"
                assert stack.body(outcome["quarantine_key"]) == content

        check()


# --- random SQL ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sql_fuzz")
    lake_root, outside = root / "lake", root / "outside"
    publish_run(lake_root)
    outside.mkdir()
    (outside / "secret.csv").write_text("password\nhunter2\n")
    return lake_root, outside


def sql_fragments(lake_root: Path, outside: Path) -> list[str]:
    secret = outside / "secret.csv"
    return [
        "SELECT",
        "FROM",
        "WHERE",
        "GROUP BY",
        "ORDER BY",
        "LIMIT 3",
        "UNION ALL",
        "WITH x AS",
        "AS",
        "JOIN",
        "ON",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS NULL",
        "CASE WHEN",
        "THEN",
        "END",
        "(",
        ")",
        ",",
        ";",
        "*",
        "=",
        "<",
        "+",
        "/",
        "||",
        "--",
        "/*",
        "*/",
        "'",
        '"',
        "?",
        "user_metrics",
        "location_performance",
        "data_quality",
        "daily_metrics",
        "information_schema.tables",
        "first_name",
        "total_revenue",
        "run_id",
        "rental_date",
        "count(*)",
        "sum(total_revenue)",
        "approx_distinct(user_id)",
        "CAST(1 AS INTEGER)",
        "date_diff('day', DATE '2024-01-01', rental_date)",
        "1",
        "0",
        "-1",
        "1.5",
        "1e308",
        "NULL",
        "TRUE",
        "'str'",
        "'[/] :thumbs_up:'",
        "'\x1b[31m'",
        "'\x00'",
        "'é'",
        "x",
        f"read_csv('{secret}')",
        f"read_text('{secret}')",
        "glob('/*')",
        "'x.csv'",
        f"'{lake_root}/processed/x.csv'",
        "COPY",
        "TO",
        "ATTACH",
        "INSTALL httpfs",
        "LOAD",
        "SET threads = 1",
        "PRAGMA",
        "CREATE TABLE t AS",
        "DROP VIEW user_metrics",
        "INSERT INTO",
        "DESCRIBE",
        "SHOW TABLES",
        "EXPLAIN ANALYZE",
        "CALL",
        "EXPORT DATABASE",
        "query('SELECT 1')",
        "range(3)",
        "unnest([1, 2])",
        "{'a': 1}",
        "[1, 2][1]",
    ]


@st.composite
def random_sql(draw, fragments: list[str]) -> str:
    pieces = draw(
        st.lists(
            st.one_of(st.sampled_from(fragments), st.text(max_size=8)), min_size=0, max_size=14
        )
    )
    if draw(st.booleans()):
        pieces = ["SELECT", *pieces]
    return draw(st.sampled_from([" ", "\n", ""])).join(pieces)


def test_random_sql_gets_an_answer_or_a_short_error_and_touches_no_file(fuzz_lake, monkeypatch):
    lake_root, outside = fuzz_lake
    monkeypatch.chdir(outside)  # a relative COPY target would land here
    before = file_states(lake_root, outside)

    @given(
        sql=random_sql(sql_fragments(lake_root, outside)),
        fmt=st.sampled_from(["table", "csv", "json", "markdown"]),
    )
    @settings(suppress_health_check=[HealthCheck.too_slow])
    def check(sql: str, fmt: str) -> None:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            # "--": argparse would read a SQL string like "-1\nSELECT" as an option
            code = main(["query", "--lake", str(lake_root), "--format", fmt, "--", sql])
        if code == 0:
            assert err.getvalue() == "" and out.getvalue()
        else:
            assert code == 1, (sql, err.getvalue())
            first, *rest = err.getvalue().rstrip("\n").split("\n")
            assert first.startswith("carrental query: "), (sql, first)
            assert all(line.startswith("  ") for line in rest), (sql, rest)
        assert "hunter2" not in out.getvalue() + err.getvalue()
        assert "Traceback" not in err.getvalue()

    check()
    assert file_states(lake_root, outside) == before
