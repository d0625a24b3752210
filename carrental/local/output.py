"""What the CLI prints: values that a terminal never interprets, and query results streamed as a
table, CSV, JSON or Markdown.

Values come from users' files and SQL: a last name `Smith [/] Sons`, `[bold]Ryan`, `:thumbs_up:`,
an ESC sequence, a carriage return, a bidi override. None of it may act on the terminal:

- Rich renders `str` arguments as markup (and emoji codes); values are given to Rich only as
  `Text` (`safe_text`, or `markup()` to fill a template of our own markup).
- Control characters (C0, DEL, C1), bidi controls and line/paragraph separators are shown as
  Python-style escapes (`\\x1b`, `\\n`, `\\u202e`), dimmed on a terminal so they stand apart from
  a literal backslash.
- JSON is UTF-8 (`"Gëorge"`, not `"G\\u00eborge"`); only the characters above are escaped, as
  JSON allows. CSV is the data verbatim, except on a terminal, where the same escapes apply.

Styles and colours only reach a terminal: Rich writes none to a pipe or file, and NO_COLOR
turns colours off (https://no-color.org/).
"""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape as escape_markup
from rich.table import Column, Table
from rich.text import Text

if TYPE_CHECKING:
    from carrental.local.query import QueryError, QueryResult

FORMATS = ("table", "csv", "json", "markdown")
DEFAULT_MAX_ROWS = 40
NULL = "NULL"
# The table view keeps a text column at least this wide (wrapping it); when even that does
# not fit the terminal, rows are shown one field per line instead.
MIN_WRAPPED_WIDTH = 12
ESCAPE_STYLE = "dim"

_UNSAFE_ABOVE_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_UNSAFE_ABOVE_C0}]")
# json.dumps escapes C0 itself (and the layout's line breaks must stay)
_UNSAFE_IN_JSON = re.compile(f"[{_UNSAFE_ABOVE_C0}]")
_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Markdown punctuation a renderer could act on; "_" only where it can start or end emphasis
# (GFM ignores it inside a word: location_name stays as it is).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*\[\]<>|~&]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")


def _escape_char(char: str) -> str:
    code = ord(char)
    return _NAMED_ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_controls(text: str, keep: str = "") -> str:
    """`text` with every character a terminal could act on escaped, except those in `keep`."""
    if not _UNSAFE.search(text):
        return text
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape_char(m.group()), text)


def safe_text(value: object, style: str = "", keep: str = "") -> Text:
    """`value` as Rich Text: no markup or emoji parsing, control characters shown escaped
    (except those in `keep`: "\n" for a message of several lines)."""
    text = value if isinstance(value, str) else display(value)
    result = Text(style=style)
    position = 0
    for match in _UNSAFE.finditer(text):
        if match.group() in keep:
            continue
        result.append(text[position : match.start()])
        result.append(_escape_char(match.group()), style=ESCAPE_STYLE)
        position = match.end()
    result.append(text[position:])
    return result


def markup(template: str, *values: object) -> Text:
    """Our own Rich markup with `values` filled into its `{}` fields, never interpreted:
    markup("run [bold]{}[/] · input {}", run_id, path)."""
    filled = template.format(*(escape_markup(escape_controls(display(v))) for v in values))
    return Text.from_markup(filled, emoji=False)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # Rich exits with status 1 here; the CLI ends every command alike on EPIPE instead.
        self.quiet = True
        raise BrokenPipeError


def console(*, stderr: bool = False, file: IO[str] | None = None) -> Console:
    """A Console for our output: styles only on a terminal, no emoji codes, no guessing
    highlighter, and a closed pipe raised as BrokenPipeError (for the CLI to end quietly).
    Plain `str` arguments are still markup: pass values through `safe_text` or `markup`."""
    return _Console(stderr=stderr, file=file, emoji=False, highlight=False)


def print_plain(text: str, file: IO[str] | None = None) -> None:
    """Print text that holds values (verdicts, error messages): line breaks kept, every other
    control character escaped."""
    print(escape_controls(text, keep="\n"), file=file or sys.stdout)


def to_json(value: object, indent: int | None = None) -> str:
    """JSON in plain UTF-8; escapes only what a terminal could act on (as \\uXXXX)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def display(value: object) -> str:
    """How a value reads in a table: NULL, dates in ISO form, a BLOB's bytes as \\xNN."""
    if value is None:
        return NULL
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return "".join(chr(b) if 32 <= b < 127 and b != 92 else f"\\x{b:02X}" for b in value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(display(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{display(k)}: {display(v)}" for k, v in value.items()) + "}"
    return str(value)


def json_value(value: object) -> object:
    """A JSON-ready value: DECIMAL as a string (exact), non-finite floats as strings (JSON has
    no NaN), dates in ISO form, nested values converted, map keys as strings."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {display(k): json_value(v) for k, v in value.items()}
    if isinstance(value, Decimal | datetime | date | time | timedelta | bytes | bytearray):
        return display(value)
    return str(value)


def unique_names(columns: list[str]) -> list[str]:
    """JSON keys: a repeated column name gets a suffix (a, a_2) instead of hiding a column."""
    taken: set[str] = set()
    names = []
    for name in columns:
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}_{n}"
        taken.add(candidate)
        names.append(candidate)
    return names


def write_result(
    result: QueryResult,
    fmt: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    out: IO[str] | None = None,
) -> None:
    """Stream `result` to `out` in `fmt`. Only the table view stops at `max_rows` rows (then
    counts the rest without converting them); the other formats write every row."""
    out = out or sys.stdout
    if fmt == "csv":
        _write_csv(result, out)
    elif fmt == "json":
        _write_json(result, out)
    elif fmt == "markdown":
        _write_markdown(result, out)
    elif fmt == "table":
        _write_table(result, out, max_rows)
    else:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")


# DuckDB result types by how their Python values are written: converting only the columns that
# need it keeps a million-row export from spending its time in per-value Python calls.
_TYPE_KINDS = (
    ("integer", re.compile(r"^U?(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT)$")),
    ("float", re.compile(r"^(FLOAT|DOUBLE)$")),
    ("decimal", re.compile(r"^DECIMAL\(.*\)$")),
    # str() of these is their display form: 2024-01-02 08:00:00, 2024-01-02, 1 day, 0:00:00
    ("temporal", re.compile(r"^(TIMESTAMP.*|DATE|TIME.*|INTERVAL|UUID)$")),
    ("text", re.compile(r"^VARCHAR$")),
    ("boolean", re.compile(r"^BOOLEAN$")),
)
_NUMBERS = {"integer", "float", "decimal"}


def _kinds(result: QueryResult) -> list[str]:
    return [
        next((kind for kind, pattern in _TYPE_KINDS if pattern.match(name)), "other")
        for name in result.types
    ]


def _numeric(result: QueryResult) -> list[bool]:
    """Which columns hold numbers (right-aligned, never wrapped)."""
    return [kind in _NUMBERS for kind in _kinds(result)]


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def _json_float(value: float | None) -> object:
    return value if value is None or math.isfinite(value) else json_value(value)


def _csv_cell(value: object) -> str:
    return "" if value is None else display(value)


def _json_converters(result: QueryResult) -> list:
    """None where the Python value is already JSON as it should read."""
    by_kind = {"integer": None, "text": None, "boolean": None, "float": _json_float}
    by_kind |= {"decimal": _str_or_none, "temporal": _str_or_none}
    return [by_kind.get(kind, json_value) for kind in _kinds(result)]


def _csv_converters(result: QueryResult, on_terminal: bool) -> list:
    """None where the csv module's own str() writes the display form (NULL as empty)."""
    if on_terminal:
        return [lambda v: escape_controls(_csv_cell(v))] * len(result.types)
    as_is = {"integer", "float", "decimal", "temporal", "text"}
    return [None if kind in as_is else _csv_cell for kind in _kinds(result)]


def _converted(batch: list[tuple], converters: list) -> list:
    changing = [(i, c) for i, c in enumerate(converters) if c is not None]
    if not changing:
        return batch
    rows = []
    for row in batch:
        values = list(row)
        for i, convert in changing:
            values[i] = convert(values[i])
        rows.append(values)
    return rows


def _write_csv(result: QueryResult, out: IO[str]) -> None:
    on_terminal = out.isatty()
    converters = _csv_converters(result, on_terminal)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([escape_controls(c) if on_terminal else c for c in result.columns])
    for batch in result.batches():
        writer.writerows(_converted(batch, converters))


def _write_json(result: QueryResult, out: IO[str]) -> None:
    """A JSON array, one object per line, written batch by batch."""
    names = unique_names(result.columns)
    converters = _json_converters(result)
    out.write("[")
    first = True
    for batch in result.batches():
        records = [
            to_json(dict(zip(names, row, strict=True))) for row in _converted(batch, converters)
        ]
        out.write(("\n" if first else ",\n") + ",\n".join(records))
        first = False
    out.write("]\n" if first else "\n]\n")


def _markdown_cell(value: object) -> str:
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape_controls(display(value)))


def _null_or_str(value: object) -> str:
    return NULL if value is None else str(value)


def _write_markdown(result: QueryResult, out: IO[str]) -> None:
    """A GitHub-flavoured Markdown table; numbers right-aligned."""
    # numbers, decimals and dates hold no character to escape
    plain = {*_NUMBERS, "temporal"}
    converters = [_null_or_str if kind in plain else _markdown_cell for kind in _kinds(result)]
    out.write("| " + " | ".join(_markdown_cell(c) for c in result.columns) + " |\n")
    out.write("|" + "|".join(" ---: " if n else " --- " for n in _numeric(result)) + "|\n")
    for batch in result.batches():
        out.write("".join("| " + " | ".join(row) + " |\n" for row in _converted(batch, converters)))


def _write_table(result: QueryResult, out: IO[str], max_rows: int) -> None:
    """Up to `max_rows` rows as a table that fits the terminal's width (long text wrapped);
    rows too wide for that are shown vertically, one `column  value` line per field."""
    shown = result.fetch(max_rows + 1)
    left_out = 0
    if len(shown) > max_rows:
        shown.pop()
        left_out = 1 + result.count_remaining()
    term = console(file=out)
    cells = [
        [safe_text(value, style=ESCAPE_STYLE if value is None else "") for value in row]
        for row in shown
    ]
    headers = [safe_text(name) for name in result.columns]
    minimum = _min_widths(headers, cells, _numeric(result))
    if _fits(minimum, term.width):
        term.print(_table(headers, cells, _numeric(result), minimum))
    else:
        _print_vertical(term, headers, cells)
    total = len(shown) + left_out
    noun = "row" if total == 1 else "rows"
    if left_out:
        term.print(
            safe_text(
                f"{len(shown):,} of {total:,} {noun} shown, {left_out:,} left out "
                "(--max-rows N shows more)"
            )
        )
    else:
        term.print(safe_text(f"{total:,} {noun}"))


def _natural_widths(headers: list[Text], cells: list[list[Text]]) -> list[int]:
    widths = [h.cell_len for h in headers]
    for row in cells:
        for i, text in enumerate(row):
            widths[i] = max(widths[i], max(cell_len(line) for line in text.plain.split("\n")))
    return widths


def _min_widths(headers: list[Text], cells: list[list[Text]], numeric: list[bool]) -> list[int]:
    """How narrow each column may get: numbers stay whole, text wraps at spaces only (no word
    is cut) and not below MIN_WRAPPED_WIDTH."""
    natural = _natural_widths(headers, cells)
    minimum = []
    for i, is_number in enumerate(numeric):
        if is_number:
            minimum.append(natural[i])
            continue
        words = [headers[i].plain, *(row[i].plain for row in cells)]
        longest = max(cell_len(word) for text in words for word in text.split() or [""])
        minimum.append(min(natural[i], max(longest, MIN_WRAPPED_WIDTH)))
    return minimum


def _fits(minimum: list[int], width: int) -> bool:
    """Whether a table with these column widths fits `width` (3 cells of border and padding
    per column, plus one)."""
    return sum(minimum) + 3 * len(minimum) + 1 <= width


def _table(
    headers: list[Text], cells: list[list[Text]], numeric: list[bool], minimum: list[int]
) -> Table:
    columns = [
        Column(
            header,
            justify="right" if is_number else "left",
            no_wrap=is_number,
            overflow="fold",
            min_width=width,
        )
        for header, is_number, width in zip(headers, numeric, minimum, strict=True)
    ]
    table = Table(*columns, header_style="bold")
    for row in cells:
        table.add_row(*row)
    return table


def _print_vertical(term: Console, headers: list[Text], cells: Iterable[list[Text]]) -> None:
    """Each row as a block: a `row N` rule, then one `column  value` line per field, long
    values wrapped under themselves."""
    name_width = min(max(h.cell_len for h in headers), max(12, term.width // 3))
    value_width = max(20, term.width - name_width - 2)
    labels = []
    for header in headers:
        label = header.copy()
        label.stylize("bold")
        label.truncate(name_width, overflow="ellipsis", pad=True)
        labels.append(label)
    indent = Text(" " * name_width)
    for number, row in enumerate(cells, start=1):
        term.rule(Text(f"row {number}"), align="left", characters="─")
        for label, value in zip(labels, row, strict=True):
            lines = value.wrap(term, value_width, overflow="fold") or [Text()]
            for i, line in enumerate(lines):
                line.rstrip()
                term.print(Text.assemble(label if i == 0 else indent, "  ", line), soft_wrap=True)


def describe_query_error(error: QueryError, width: int = 78) -> str:
    """The error on its first line; then, when located, the user's SQL line with a caret under
    the problem; then DuckDB's or our hints. Plain text: nothing in it is interpreted."""
    where = f" (line {error.line}, column {error.column})" if error.line and error.column else ""
    lines = [f"{escape_controls(error.message)}{where}"]
    sql_lines = error.sql.split("\n")
    if error.line and error.column and error.line <= len(sql_lines):
        shown, caret = _excerpt(sql_lines[error.line - 1], error.column - 1, error.length, width)
        lines += [f"  {shown}", f"  {caret}"]
    lines += [f"  {escape_controls(hint)}" for hint in error.hints]
    return "\n".join(lines)


def _excerpt(line: str, start: int, length: int, width: int) -> tuple[str, str]:
    """`line` (escaped, cut to `width` cells around the problem) and a caret line under the
    characters [start, start + length)."""
    before, span = line[:start], line[start : start + length] or " "
    after = line[start + length :]
    before, span, after = (escape_controls(p).expandtabs(4) for p in (before, span, after))
    room = width - 4
    if cell_len(before) > room // 2:
        keep = room // 2
        while cell_len(before) > keep:
            before = before[1:]
        before = "…" + before
    shown = before + span + after
    if cell_len(shown) > room:
        while cell_len(shown) > room - 1:
            shown = shown[:-1]
        shown += "…"
    carets = "^" * max(1, min(cell_len(span), room - cell_len(before)))
    return shown, " " * cell_len(before) + carets
