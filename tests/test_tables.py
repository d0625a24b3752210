"""The output table definitions (carrental.tables) and what derives from them: docs/tables.md,
the lake's table list, the report's number formats, the hand-made test tables."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from carrental import lake, tables
from carrental.cli import main
from carrental.report import TWO_DECIMALS
from tests.conftest import REPO_ROOT
from tests.local.conftest import NO_VALID_RENTAL_ROWS, TABLE_ROWS, write_run
from tests.table_checks import defined_columns, key_violations, written_columns


def test_the_committed_tables_doc_is_the_generated_one():
    committed = (REPO_ROOT / "docs" / "tables.md").read_text(encoding="utf-8")
    assert committed == tables.to_markdown(), "run: .venv/bin/carrental tables > docs/tables.md"


def test_carrental_tables_prints_the_doc(capsys):
    assert main(["tables"]) == 0
    assert capsys.readouterr().out == (REPO_ROOT / "docs" / "tables.md").read_text(encoding="utf-8")


def test_the_doc_lists_every_table_with_its_key_and_columns():
    doc = tables.to_markdown()
    for t in tables.OUTPUT_TABLES:
        section = doc.split(f"\n## {t.name}\n", 1)[1].split("\n## ", 1)[0]
        assert f"| [`{t.name}`](#{t.name}) | {t.job} |" in doc
        for column in t.columns:
            assert f"\n| {column.name} | {column.type} | {column.description} |" in section
        if t.key:
            assert "Key: " + ", ".join(f"`{k}`" for k in t.key) in section


def test_the_lake_lists_the_defined_tables_jobs_and_keys():
    assert list(lake.TABLES) == [t.name for t in tables.OUTPUT_TABLES]
    assert lake.TABLES["run_inputs"] == "user_transaction_analysis"
    assert lake.TABLES["location_vehicle_type_performance"] == "vehicle_location_performance"
    assert lake.TABLE_KEYS["rental_rejects"] == ("source_file", "row_number")
    assert lake.TABLE_KEYS["business_summary"] == ()
    jobs = {p.stem for p in (REPO_ROOT / "emr_jobs").glob("*.py")}
    assert set(lake.TABLES.values()) <= jobs


def test_a_column_name_has_one_type_in_every_table():
    # The report formats a column by its name (report.TWO_DECIMALS): a name must mean one type.
    types = defaultdict(set)
    for t in tables.OUTPUT_TABLES:
        for column in t.columns:
            types[column.name].add(column.type)
    assert {name: kinds for name, kinds in types.items() if len(kinds) > 1} == {}


def test_the_report_writes_the_money_and_hours_columns_with_two_decimals():
    assert sorted(TWO_DECIMALS) == [
        "avg_rental_amount",
        "avg_rental_hours",
        "max_rental_amount",
        "min_rental_amount",
        "total_rental_hours",
        "total_revenue",
        "total_spent",
    ]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"key": ("nope",)}, r"key columns \['nope'\] are not columns of the table"),
        (
            {"columns": (tables.OutputColumn("a", "FLOAT", "?"),)},
            r"t\.a: unknown type 'FLOAT'",
        ),
        (
            {"columns": (tables.OutputColumn("a", "INT", "?"),) * 2},
            r"a column is listed twice",
        ),
        ({"job": "j"}, r"t: unknown job 'j'"),
    ],
)
def test_a_definition_that_contradicts_itself_is_an_error(change, error):
    fields = {
        "name": "t",
        "job": tables.JOBS[0],
        "grain": "g",
        "key": ("a",),
        "description": "d",
        "columns": (tables.OutputColumn("a", "INT", "?"),),
    }
    with pytest.raises(ValueError, match=error):
        tables.Table(**{**fields, **change})


def test_unknown_table_is_named():
    with pytest.raises(KeyError, match=r"unknown table 'nope' \(known: location_performance"):
        tables.table("nope")


@pytest.mark.parametrize("rows", [TABLE_ROWS, NO_VALID_RENTAL_ROWS], ids=["run", "no-valid"])
def test_the_hand_made_tables_have_the_defined_columns_types_and_keys(tmp_path: Path, rows):
    write_run(tmp_path, "r1", rows)
    for table in tables.TABLES:
        folder = Path(lake.table_run_path(str(tmp_path / lake.PROCESSED), table, "r1"))
        assert written_columns(folder) == defined_columns(table), table
        assert key_violations(folder, table) == [], table


def test_the_key_check_sees_repeated_and_null_keys_and_a_second_summary_row(tmp_path: Path):
    repeated = """
        SELECT * FROM (VALUES ('users', 'user_id_unique', 'reject', 1),
                              ('users', 'user_id_unique', 'reject', 2),
                              (NULL, 'user_id_not_null', 'reject', 0))
        AS t(dataset, rule, severity, violations)"""
    two_summaries = f"{TABLE_ROWS['business_summary']} UNION ALL {TABLE_ROWS['business_summary']}"
    write_run(tmp_path, "r1", {"data_quality": repeated, "business_summary": two_summaries})
    processed = str(tmp_path / lake.PROCESSED)
    assert key_violations(
        Path(lake.table_run_path(processed, "data_quality", "r1")), "data_quality"
    ) == [
        "data_quality: 1 rows with a null in key ('dataset', 'rule')",
        "data_quality: key ('dataset', 'rule') repeated (values and counts: "
        "[('users', 'user_id_unique', 2)])",
    ]
    summary = Path(lake.table_run_path(processed, "business_summary", "r1"))
    assert key_violations(summary, "business_summary") == [
        "business_summary: 2 rows, expected exactly one"
    ]
