"""Issue 12, item 2: `carrental query` sees only the lake's tables. Each attack is refused with
an error (exit 1) and touches no file, in the lake or outside it, while the views work."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from carrental.cli import main
from carrental.local import catalog
from carrental.local.query import QueryError, run
from tests.hostile.conftest import file_states, publish_run


@pytest.fixture
def lake_and_outside(tmp_path: Path) -> tuple[Path, Path]:
    lake_root, outside = tmp_path / "lake", tmp_path / "outside"
    publish_run(lake_root)
    outside.mkdir()
    (outside / "secret.csv").write_text("password\nhunter2\n")
    (outside / "other.duckdb").write_bytes(b"")
    return lake_root, outside


def attacks(lake_root: Path, outside: Path) -> dict[str, str]:
    secret = outside / "secret.csv"
    parquet = next((lake_root / "processed" / "user_metrics").rglob("*.parquet"))
    return {
        "read_csv": f"SELECT * FROM read_csv('{secret}')",
        "read_csv_auto": f"SELECT * FROM read_csv_auto('{secret}')",
        "replacement scan": f"SELECT * FROM '{secret}'",
        "read_text": f"SELECT * FROM read_text('{secret}')",
        "read_blob": f"SELECT content FROM read_blob('{secret}')",
        "read_json": f"SELECT * FROM read_json('{secret}')",
        "glob": f"SELECT * FROM glob('{outside}/*')",
        "dot-dot out of the lake": (
            f"SELECT * FROM read_text('{lake_root}/processed/../../outside/secret.csv')"
        ),
        "a sibling folder with the lake's name as prefix": (
            f"SELECT * FROM read_text('{lake_root}/processed_x/secret.csv')"
        ),
        "http": "SELECT * FROM read_csv('https://example.com/x.csv')",
        "COPY TO outside": f"COPY (SELECT 1) TO '{outside}/x.csv'",
        "COPY TO inside the lake": f"COPY (SELECT 1) TO '{lake_root}/processed/x.csv'",
        "COPY over a table's Parquet": f"COPY (SELECT 1 AS a) TO '{parquet}' (FORMAT parquet)",
        "COPY FROM": f"COPY user_metrics FROM '{secret}'",
        "EXPORT DATABASE": f"EXPORT DATABASE '{outside}/export'",
        "ATTACH": f"ATTACH '{outside}/other.duckdb' AS other",
        "INSTALL": "INSTALL httpfs",
        "LOAD": "LOAD httpfs",
        "SET external access back on": "SET enable_external_access = true",
        "SET allowed_directories": "SET allowed_directories = ['/']",
        "RESET": "RESET lock_configuration",
        "PRAGMA": "PRAGMA enable_profiling",
        "CREATE TABLE": "CREATE TABLE t AS SELECT 1 AS a",
        "CREATE MACRO": "CREATE MACRO m(x) AS x",
        "DROP VIEW": "DROP VIEW user_metrics",
        "INSERT": "INSERT INTO user_metrics SELECT * FROM user_metrics",
        "CALL": "CALL pragma_version()",
        "EXPLAIN ANALYZE COPY": f"EXPLAIN ANALYZE COPY (SELECT 1) TO '{outside}/y.csv'",
        "query() of a COPY": f"SELECT * FROM query('COPY (SELECT 1) TO ''{outside}/z.csv''')",
        "sqlite_scan": f"SELECT * FROM sqlite_scan('{outside}/other.duckdb', 't')",
        "two statements": f"SELECT 1; COPY (SELECT 1) TO '{outside}/w.csv'",
    }


def test_every_attack_is_refused_and_touches_nothing(lake_and_outside, capsys):
    lake_root, outside = lake_and_outside
    before = file_states(lake_root, outside)
    for name, sql in attacks(lake_root, outside).items():
        assert main(["query", "--lake", str(lake_root), "--format", "csv", sql]) == 1, name
        captured = capsys.readouterr()
        assert captured.out in ("", "content\n"), name  # read_blob's header at most, no data
        assert captured.err.startswith("carrental query: "), name
        assert "hunter2" not in captured.err and "Traceback" not in captured.err, name
    assert file_states(lake_root, outside) == before


def test_the_views_and_the_lakes_own_parquet_still_work(lake_and_outside, capsys):
    lake_root, _ = lake_and_outside
    parquet = next((lake_root / "processed" / "user_metrics").rglob("*.parquet"))
    sql = (
        "SELECT (SELECT count(*) FROM user_metrics) AS viewed, "
        f"(SELECT count(*) FROM read_parquet('{parquet}')) AS read_directly"
    )
    assert main(["query", "--lake", str(lake_root), "--format", "csv", sql]) == 0
    assert capsys.readouterr().out == "viewed,read_directly\n2,2\n"  # TABLE_ROWS: 2 users


def test_the_lockdown_is_duckdbs_own_and_cannot_be_undone(lake_and_outside):
    """Below the statement check: straight DuckDB calls on a locked connection."""
    lake_root, outside = lake_and_outside
    con = catalog.open_catalog(lake_root)
    try:
        result = run(con, catalog.readable_folders(lake_root), "SELECT count(*) FROM daily_metrics")
        assert result.fetchall() == [(2,)]
        for sql in (
            f"SELECT * FROM read_text('{outside}/secret.csv')",
            f"COPY (SELECT 1) TO '{outside}/x.csv'",
            "SET enable_external_access = true",
            "SET lock_configuration = false",
            "LOAD httpfs",
        ):
            with pytest.raises(duckdb.Error):
                con.execute(sql)
        assert not (outside / "x.csv").exists()
    finally:
        con.close()


def test_a_refused_statement_says_why(lake_and_outside, capsys):
    lake_root, outside = lake_and_outside
    assert main(["query", "--lake", str(lake_root), f"COPY (SELECT 1) TO '{outside}/x.csv'"]) == 1
    assert capsys.readouterr().err.splitlines()[0] == (
        "carrental query: COPY is not allowed: the lake's tables are read-only here "
        "(line 1, column 1)"
    )
    sql = "SELECT * FROM read_text('/etc/hostname')"
    assert main(["query", "--lake", str(lake_root), sql]) == 1
    first_line = capsys.readouterr().err.splitlines()[0]
    assert first_line.startswith("carrental query: SQL error (DuckDB permission): Cannot access")
    assert first_line.endswith("(line 1, column 15)")


def test_describe_and_information_schema_are_allowed(lake_and_outside, capsys):
    lake_root, _ = lake_and_outside
    assert (
        main(["query", "--lake", str(lake_root), "--format", "csv", "DESCRIBE data_quality"]) == 0
    )
    described = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in described[1:]] == [
        "dataset",
        "rule",
        "severity",
        "violations",
        "run_id",
    ]
    sql = "SELECT table_name FROM information_schema.tables ORDER BY 1"
    assert main(["query", "--lake", str(lake_root), "--format", "csv", sql]) == 0
    tables = [*catalog.lake.TABLES, *(f"runs_{t}" for t in catalog.lake.TABLES), "published_runs"]
    assert capsys.readouterr().out.split() == ["table_name", *sorted(tables)]


def test_a_query_error_is_a_query_error_not_a_crash():
    with pytest.raises(QueryError, match="the query is empty"):
        run(duckdb.connect(), [], "   ")
