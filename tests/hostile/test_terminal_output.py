"""Issue 12, item 1: values printed to a terminal are never interpreted (markup, emoji codes,
control characters), in `carrental query`, `carrental validate` and the helpers the run
summary uses."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console
from rich.table import Table

from carrental.cli import main
from carrental.local.output import console, markup, safe_text
from tests.hostile.conftest import run_cli, run_on_terminal

NAMES_SQL = "SELECT first_name, last_name, email FROM user_metrics ORDER BY user_id"
ANY_COLOUR = re.compile(rb"\x1b\[[0-9;]*(3[0-9]|9[0-7]|38;)")


def test_query_prints_markup_emoji_codes_and_controls_as_written(hostile_lake):
    result = run_cli("query", "--lake", str(hostile_lake), NAMES_SQL)
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    for written in ("[bold]Ryan", "Smith [/] Sons", "postgres:x:101 :thumbs_up:", "Gëorge"):
        assert written in out
    # the ESC, the carriage return and the bidi override arrive as visible escapes
    assert "\\x1b[31mred\\rover" in out and "\\u202eevil" in out
    assert not set(out) & {"\x1b", "\r", "\u202e", "👍"}
    assert out.rstrip().endswith("2 rows")


def test_on_a_terminal_escapes_are_dimmed_and_data_never_reaches_it_raw(hostile_lake):
    code, out = run_on_terminal("query", "--lake", str(hostile_lake), NAMES_SQL)
    assert code == 0
    assert b"\x1b[31mred" not in out and "\u202e".encode() not in out
    assert b"\x1b[2m\\x1b\x1b[0m[31mred" in out  # the escape styled dim, the rest plain
    assert b"[bold]Ryan" in out and b":thumbs_up:" in out


def test_validate_shows_hostile_values_and_file_names_escaped(tmp_path, capsys):
    folder = tmp_path / "users"
    folder.mkdir()
    path = folder / "evil\x1b[2Jname.csv"
    header = (
        "user_id,first_name,last_name,email,phone_number,driver_license_number,"
        "driver_license_expiry,creation_date,is_active\n"
    )
    path.write_text(
        header + "0000000001,[bold]Ryan,Smith [/] Sons,a@b.c,1,D1,\x1b[31m2025-01-01,2024-01-01,1\n"
    )
    assert main(["validate", str(path)]) == 0  # a warn rule: accepted, with the example
    out = capsys.readouterr().out
    assert "\x1b" not in out
    assert "evil\\x1b[2Jname.csv: ACCEPTED" in out
    assert "row 1: '\\x1b[31m2025-01-01'" in out


def test_rich_helpers_for_the_run_summary_never_interpret_values():
    buffer = io.StringIO()
    term = Console(file=buffer, force_terminal=True, color_system="truecolor", width=80)
    table = Table("name")
    table.add_row(safe_text("Smith [/] Sons :thumbs_up: \x1b[31m"))
    term.print(table)
    term.print(markup("run [bold]{}[/] · input {}", "r1", "/data/[red]x[/] :smile:\\"))
    out = buffer.getvalue()
    assert "Smith [/] Sons :thumbs_up: " in out and "😄" not in out and "👍" not in out
    assert "\x1b[31m" not in out and "\\x1b[31m" in out.replace("\x1b[2m", "").replace(
        "\x1b[0m", ""
    )
    assert "/data/[red]x[/] :smile:\\" in out
    assert "\x1b[1mr1\x1b[0m" in out  # our own markup still applies


def test_a_message_of_several_lines_keeps_its_line_breaks_only():
    text = safe_text("rejected:\n  row 1: '\x1b[2J'\r", keep="\n")
    assert text.plain == "rejected:\n  row 1: '\\x1b[2J'\\r"


def test_the_output_console_writes_no_style_to_a_pipe():
    buffer = io.StringIO()
    console(file=buffer).print(markup("[bold red]{}[/]", "value"))
    assert buffer.getvalue() == "value\n"


def test_no_color_turns_colours_off_on_a_terminal(hostile_lake):
    sql = "SELECT * FROM location_performance"  # wide: shown vertically, with coloured rules
    code, coloured = run_on_terminal("query", "--lake", str(hostile_lake), sql)
    assert code == 0 and ANY_COLOUR.search(coloured)
    code, plain = run_on_terminal("query", "--lake", str(hostile_lake), sql, env={"NO_COLOR": "1"})
    assert code == 0 and not ANY_COLOUR.search(plain)


def test_json_escapes_only_what_a_terminal_could_act_on(hostile_lake, capsys):
    assert main(["query", "--lake", str(hostile_lake), "--format", "json", NAMES_SQL]) == 0
    out = capsys.readouterr().out
    assert "\\u001b[31mred\\rover" in out and "\\u202eevil" in out and "Gëorge" in out
    assert [r["last_name"] for r in json.loads(out)] == [
        "Smith [/] Sons",
        "\x1b[31mred\rover",
    ]
