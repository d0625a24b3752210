"""Issue 14, item 5 and issue 12, item 10: `carrental query` reads well in 80 columns, in four
formats, with a row limit that says what it left out; JSON and CSV are plain UTF-8. Expected
values are the hand-made rows of tests/local/conftest.py."""

from __future__ import annotations

import json

from rich.cells import cell_len

from carrental.cli import main
from tests.hostile.conftest import run_cli

TOP_LOCATIONS = (
    "SELECT location_name, city, total_revenue FROM location_performance "
    "ORDER BY total_revenue DESC"
)


def query(lake, *arguments: str, env: dict[str, str] | None = None) -> str:
    result = run_cli("query", "--lake", str(lake), *arguments, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.decode()


def test_a_narrow_result_is_a_table_that_fits_80_columns(hostile_lake):
    out = query(hostile_lake, TOP_LOCATIONS)
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert "│ Jackson, Velazquez and Gonzales │ Modesto │       1300.00 │" in lines
    assert "│ Bean LLC                        │ Fontana │        450.00 │" in lines
    assert lines[-1] == "2 rows"


def test_a_wide_row_is_shown_one_field_per_line_without_losing_a_character(hostile_lake):
    out = query(hostile_lake, "SELECT * FROM location_performance ORDER BY location_id")
    lines = out.splitlines()
    assert max(cell_len(line) for line in lines) <= 80
    assert lines[0].startswith("row 1 ─")
    fields = dict(line.split(None, 1) for line in lines[1:15])
    assert fields == {
        "location_id": "1154",
        "location_name": "Bean LLC",
        "city": "Fontana",
        "state": "CA",
        "rental_count": "3",
        "total_revenue": "450.00",
        "avg_rental_amount": "150.000000",
        "min_rental_amount": "100.00",
        "max_rental_amount": "200.00",
        "unique_vehicles": "2",
        "unique_users": "3",
        "total_rental_hours": "30.000000",
        "avg_rental_hours": "10.000000",
        "run_id": "r1",
    }
    assert "location_name       Jackson, Velazquez and Gonzales" in lines
    assert lines[-1] == "2 rows" and not any(line.endswith(" ") for line in lines)


def test_a_wide_terminal_keeps_the_table(hostile_lake):
    out = query(hostile_lake, "SELECT * FROM location_performance", env={"COLUMNS": "250"})
    assert out.splitlines()[1].startswith("┃ location_id ┃ location_name ")


def test_the_row_limit_says_how_many_rows_it_left_out(big_lake):
    out = query(big_lake, "--max-rows", "3", "SELECT rental_date FROM daily_metrics")
    lines = out.splitlines()
    assert [line.strip("│ ") for line in lines[3:6]] == ["2000-01-01", "2000-01-02", "2000-01-03"]
    assert lines[-1] == "3 of 100,000 rows shown, 99,997 left out (--max-rows N shows more)"
    default = query(big_lake, "SELECT rental_date FROM daily_metrics").splitlines()
    assert default[-1] == "40 of 100,000 rows shown, 99,960 left out (--max-rows N shows more)"


def test_csv_json_and_markdown_write_every_row(big_lake, capsys):
    sql = "SELECT rental_date, total_revenue FROM daily_metrics"
    assert main(["query", "--lake", str(big_lake), "--format", "csv", sql]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 100_001 and lines[1] == "2000-01-01,0.00" and lines[-1].endswith(",999.00")
    assert main(["query", "--lake", str(big_lake), "--format", "json", sql]) == 0
    records = json.loads(capsys.readouterr().out)
    assert len(records) == 100_000
    assert records[1234] == {"rental_date": "2003-05-19", "total_revenue": "234.00"}
    assert main(["query", "--lake", str(big_lake), "--format", "markdown", sql]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 100_002


def test_markdown_escapes_what_a_renderer_would_act_on(hostile_lake, capsys):
    sql = "SELECT first_name, last_name, rental_count FROM user_metrics ORDER BY user_id"
    assert main(["query", "--lake", str(hostile_lake), "--format", "markdown", sql]) == 0
    assert capsys.readouterr().out == (
        "| first_name | last_name | rental_count |\n"
        "| --- | --- | ---: |\n"
        "| \\[bold\\]Ryan | Smith \\[/\\] Sons | 1 |\n"
        "| Gëorge | \\\\x1b\\[31mred\\\\rover | 2 |\n"
    )


def test_json_and_csv_are_plain_utf8_whatever_the_locale(hostile_lake, tmp_path):
    sql = "SELECT first_name FROM user_metrics ORDER BY user_id"
    for encoding in ("utf-8", "latin-1", "ascii"):
        env = {"PYTHONIOENCODING": encoding, "LC_ALL": "C"}
        result = run_cli("query", "--lake", str(hostile_lake), "--format", "json", sql, env=env)
        assert result.returncode == 0, (encoding, result.stderr)
        assert (
            result.stdout
            == b'[\n{"first_name": "[bold]Ryan"},\n{"first_name": "G\xc3\xaborge"}\n]\n'
        )
        result = run_cli("query", "--lake", str(hostile_lake), "--format", "csv", sql, env=env)
        assert result.stdout == b"first_name\n[bold]Ryan\nG\xc3\xaborge\n"
        # the table view writes in the terminal's encoding; what it lacks becomes an escape
        result = run_cli("query", "--lake", str(hostile_lake), sql, env=env)
        assert result.returncode == 0 and b"Traceback" not in result.stderr


def test_validate_json_is_plain_utf8(tmp_path, capsys):
    folder = tmp_path / "users"
    folder.mkdir()
    path = folder / "gëorge.csv"
    path.write_text(
        "user_id,first_name,last_name,email,phone_number,driver_license_number,"
        "driver_license_expiry,creation_date,is_active\n"
        "0000000001,Gëorge,Zoë,g@b.c,1,D1,2025-13-01,2024-01-01,1\n",
        encoding="utf-8",
    )
    result = run_cli("validate", "--json", str(path), env={"PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0
    assert "gëorge.csv".encode() in result.stdout and b"\\u00eb" not in result.stdout
    (verdict,) = json.loads(result.stdout)
    assert verdict["rule_examples"]["driver_license_expiry_format"] == [
        {"row": 1, "value": "2025-13-01"}
    ]
