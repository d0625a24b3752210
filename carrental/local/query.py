"""Athena SQL on the local catalog, as `carrental query` runs it: read-only, sandboxed, streamed.

- One statement, and only one that reads: a query (SELECT, WITH, UNION, a parenthesised query)
  or DESCRIBE. Anything else (COPY, SET, ATTACH, INSTALL, EXPLAIN ANALYZE, ...) is refused
  before DuckDB sees it: sqlglot parses the Athena (Trino) SQL and writes the DuckDB SQL, so
  DuckDB only ever receives the statement sqlglot wrote.
- `lock_down` then closes DuckDB around the lake once the catalog's views exist: external
  access off (no file outside `allowed_directories`, no network, no extension installed or
  loaded), then the configuration locked so that no SET can undo it
  (https://duckdb.org/docs/2.0/operations_manual/securing_duckdb/overview.html). DuckDB lets a
  statement *write* inside an allowed directory as well: that is why writing statements are
  refused first.
- Errors name the problem and where it is in the user's SQL (line, column, the span): sqlglot
  parse errors carry a position; DuckDB's point into the translated SQL and are mapped back
  through the token they highlight.
- Rows are fetched in batches (`QueryResult.batches`): a result is never held in memory whole.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import sqlglot
import sqlglot.errors
from sqlglot import exp
from sqlglot.errors import ErrorLevel

READ_DIALECT = "athena"
BATCH_ROWS = 10_000
_STATEMENT_KEYWORDS = ("SELECT", "WITH", "VALUES", "DESCRIBE")
# Athena statements that only read, but that sqlglot cannot translate (it keeps them as raw
# text, which is never passed on).
_READING_COMMANDS = ("SHOW", "EXPLAIN")

# sqlglot logs a warning ("Falling back to parsing as a 'Command'") for statements it does not
# know; those are refused with a clear error below, so its log line is noise on the terminal.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


@dataclass
class QueryError(Exception):
    """A query that cannot run. `line`/`column` (1-based) and `length` locate the problem in
    `sql` when known; `hints` are further lines (DuckDB's candidates, a did-you-mean)."""

    message: str
    sql: str = ""
    line: int | None = None
    column: int | None = None
    length: int = 1
    hints: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        where = f" at line {self.line}, column {self.column}" if self.line else ""
        return f"{self.message}{where}"


@dataclass
class QueryResult:
    """An executed query whose rows have not been fetched yet."""

    cursor: duckdb.DuckDBPyConnection
    columns: list[str]
    types: list[str]
    sql: str

    def fetch(self, n: int) -> list[tuple]:
        """The next `n` rows (fewer at the end), as Python values (DECIMAL stays Decimal)."""
        return _fetch(self.cursor.fetchmany, n, sql=self.sql)

    def batches(self, size: int = BATCH_ROWS) -> Iterator[list[tuple]]:
        """The remaining rows, `size` at a time."""
        while rows := self.fetch(size):
            yield rows

    def fetchall(self) -> list[tuple]:
        return [row for batch in self.batches() for row in batch]

    def count_remaining(self) -> int:
        """How many rows are left, counted in DataFrame chunks of 4 x 2048 rows: 10x faster
        than converting them to Python, and streamed (an Arrow reader here copies them all)."""
        count = 0
        while rows := len(_fetch(self.cursor.fetch_df_chunk, 4, sql=self.sql)):
            count += rows
        return count


def lock_down(con: duckdb.DuckDBPyConnection, allowed_directories: Sequence[Path]) -> None:
    """From now on `con` reads files only under `allowed_directories` (and DuckDB's own temp
    folder), reaches no network, loads no extension, and accepts no SET. Irreversible."""
    folders = [str(Path(d).resolve()) + "/" for d in allowed_directories]
    con.execute("SET enable_progress_bar = false")  # it would draw on stderr mid-output
    con.execute("SET allowed_directories = ?", [folders])
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def run(
    con: duckdb.DuckDBPyConnection, allowed_directories: Sequence[Path], athena_sql: str
) -> QueryResult:
    """Lock `con` down to `allowed_directories`, then run one read-only Athena statement."""
    lock_down(con, allowed_directories)
    return execute(con, athena_sql)


def execute(
    con: duckdb.DuckDBPyConnection, athena_sql: str, params: Sequence | None = None
) -> QueryResult:
    """Run one read-only Athena statement on `con` (no lockdown: for SQL of this repository)."""
    duck_sql = translate(athena_sql)
    cursor = _fetch(con.execute, duck_sql, list(params or []), sql=athena_sql, duck=duck_sql)
    return QueryResult(
        cursor=cursor,
        columns=[d[0] for d in cursor.description],
        types=[str(d[1]) for d in cursor.description],
        sql=athena_sql,
    )


def translate(athena_sql: str) -> str:
    """Athena (Trino) SQL -> the DuckDB SQL of its one read-only statement, or a QueryError."""
    if not athena_sql.strip():
        raise QueryError(
            "the query is empty: pass one SQL statement, e.g. "
            '"SELECT * FROM location_performance LIMIT 5"'
        )
    try:
        parsed = sqlglot.parse(athena_sql, read=READ_DIALECT)
        # an empty statement is None, or a bare Semicolon when a comment precedes it
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except sqlglot.errors.ParseError as exc:
        raise _parse_error(athena_sql, exc) from None
    except sqlglot.errors.TokenError:
        raise _token_error(athena_sql) from None
    except RecursionError:
        raise QueryError("the query is nested too deeply to parse", athena_sql) from None
    if not statements:
        raise QueryError("the query holds no SQL statement (only comments or ';')", athena_sql)
    if len(statements) > 1:
        raise QueryError(
            f"expected one SQL statement, got {len(statements)}: run them one at a time",
            athena_sql,
        )
    (statement,) = statements
    if not isinstance(statement, exp.Query | exp.Describe):
        kind = _statement_kind(athena_sql)
        why = (
            "is not supported here"
            if kind in _READING_COMMANDS
            else "is not allowed: the lake's tables are read-only here"
        )
        raise QueryError(
            f"{kind} {why}",
            athena_sql,
            *_first_token_position(athena_sql),
            hints=[
                "run a query (SELECT, WITH, VALUES) or DESCRIBE <table>; list the tables with "
                "SELECT table_name FROM information_schema.tables"
            ],
        )
    try:
        return statement.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except sqlglot.errors.UnsupportedError as exc:
        raise QueryError(f"not supported by the local engine (DuckDB): {exc}", athena_sql) from None
    except RecursionError:
        raise QueryError("the query is nested too deeply to translate", athena_sql) from None


def _fetch(call, *args, sql: str, duck: str | None = None):
    """Call DuckDB; its errors become QueryErrors located in the user's SQL, and an interrupt
    (which DuckDB reports as RuntimeError("Query interrupted")) a KeyboardInterrupt again."""
    try:
        return call(*args)
    except duckdb.Error as exc:
        raise _duckdb_error(sql, duck, exc) from None
    except RuntimeError as exc:
        if "interrupted" in str(exc).lower():
            raise KeyboardInterrupt from None
        raise
    except (ValueError, OverflowError) as exc:  # a value Python cannot represent
        raise QueryError(f"cannot convert a result value to Python: {exc}", sql) from None


# --- errors -----------------------------------------------------------------------------------

_SQLGLOT_CLASS = re.compile(r"<class '(?:[\w.]+\.)?(\w+)'>")
_SQLGLOT_TOKEN = re.compile(r"<Token token_type: TokenType\.(\w+), text: (.*?), line: .*?>")


def _plain_sqlglot(description: str) -> str:
    """sqlglot's descriptions name its classes and tokens as Python reprs: keep the names."""
    text = _SQLGLOT_CLASS.sub(r"\1", description)
    return _SQLGLOT_TOKEN.sub(
        lambda m: "the end of the query" if m.group(1) == "SENTINEL" else repr(m.group(2)), text
    )


def _parse_error(sql: str, exc: sqlglot.errors.ParseError) -> QueryError:
    if not exc.errors:
        return QueryError(f"SQL syntax error: {_plain_sqlglot(str(exc))}", sql)
    error = exc.errors[0]
    highlight = error.get("highlight") or ""
    line, end_column = error.get("line"), error.get("col")
    hints = _keyword_hints(sql)
    near = f" near {highlight!r}" if highlight else ""
    message = f"SQL syntax error{near}: {_plain_sqlglot(error.get('description') or '')}"
    if not line or not end_column:
        return QueryError(message, sql, hints=hints)
    if "\n" in highlight:  # a token over several lines: point at its end
        return QueryError(message, sql, line, end_column, 1, hints)
    # sqlglot's col is the highlighted token's last character (1-based)
    column = max(1, end_column - len(highlight) + 1)
    return QueryError(message, sql, line, column, max(1, len(highlight)), hints)


def _keyword_hints(sql: str) -> list[str]:
    """A statement that starts with a misspelt keyword (SELEC) gets a did-you-mean."""
    word = re.match(r"\s*([A-Za-z_]+)", sql)
    if not word or word.group(1).upper() in _STATEMENT_KEYWORDS:
        return []
    close = difflib.get_close_matches(word.group(1).upper(), _STATEMENT_KEYWORDS, n=1)
    return [f"{word.group(1)!r} is not a SQL keyword: did you mean {close[0]}?"] if close else []


def _token_error(sql: str) -> QueryError:
    found = _unterminated(sql)
    if found is None:
        return QueryError("SQL syntax error: the query cannot be split into tokens", sql)
    offset, what = found
    line, column = _line_column(sql, offset)
    return QueryError(f"SQL syntax error: {what} is never closed", sql, line, column)


def _unterminated(sql: str) -> tuple[int, str] | None:
    """Where an unclosed string, quoted name or comment starts (what sqlglot's tokenizer chokes
    on), scanning as Trino does: '' and "" escape their quote, -- runs to the end of a line."""
    closers = {"'": ("'", "a string literal '"), '"': ('"', 'a quoted name "')}
    i = 0
    while i < len(sql):
        char = sql[i]
        if char in closers:
            quote, what = closers[char]
            j = i + 1
            while True:
                j = sql.find(quote, j)
                if j < 0:
                    return i, what
                if sql.startswith(quote * 2, j):
                    j += 2
                    continue
                break
            i = j + 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = len(sql) if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            if end < 0:
                return i, "a comment /*"
            i = end + 2
        else:
            i += 1
    return None


_DUCKDB_CONTEXT = re.compile(r"\n*LINE (\d+): (.*)\n( *)(\^+)\s*$")


def _duckdb_error(sql: str, duck: str | None, exc: duckdb.Error) -> QueryError:
    """DuckDB's message, its position mapped from the translated SQL back to the user's.

    DuckDB ends a located error with `LINE n: <context>` and carets under the offending span;
    the context may be cut short with "..." on a long line. The span's first token is found in
    the translated SQL, then the same occurrence of the same token in the user's SQL."""
    text = str(exc).strip()
    context = _DUCKDB_CONTEXT.search(text)
    body = text[: context.start()] if context else text
    first, *rest = [line for line in body.splitlines() if line.strip()] or [type(exc).__name__]
    kind = re.match(r"([A-Z][A-Za-z ]*?) Error: ", first)
    if kind:  # "Binder Error: Referenced column ..." -> "SQL error (DuckDB binder): ..."
        first = f"SQL error (DuckDB {kind.group(1).lower()}): {first[kind.end() :]}"
    else:
        first = f"SQL error (DuckDB): {first}"
    if isinstance(exc, duckdb.PermissionException):
        rest.append("a query reads only the lake's tables: no other file, no network")
    error = QueryError(first, sql, hints=rest)
    if not context or duck is None:
        return error
    line_number, shown, indent, carets = context.groups()
    offset_in_shown = len(indent) - len(f"LINE {line_number}: ")
    span = shown[offset_in_shown : offset_in_shown + len(carets)]
    duck_lines = duck.split("\n")
    index = int(line_number) - 1
    if not span.strip() or not 0 <= index < len(duck_lines):
        return error
    visible = shown.removeprefix("...").removesuffix("...")
    start_in_line = duck_lines[index].find(visible)
    if start_in_line < 0:
        return error
    cut = len(shown) - len(shown.removeprefix("..."))
    duck_offset = sum(len(x) + 1 for x in duck_lines[:index]) + start_in_line
    duck_offset += offset_in_shown - cut
    located = _same_token_in(sql, duck, duck_offset)
    if located:
        error.line, error.column, error.length = located
    return error


def _tokens(sql: str):
    try:
        return sqlglot.Dialect.get_or_raise(READ_DIALECT).tokenize(sql)
    except sqlglot.errors.SqlglotError:
        return []


def _same_token_in(user_sql: str, duck_sql: str, duck_offset: int) -> tuple[int, int, int] | None:
    duck_tokens = _tokens(duck_sql)
    target = next((t for t in duck_tokens if t.start <= duck_offset <= t.end), None)
    if target is None:
        return None
    key = target.text.lower()
    occurrence = sum(1 for t in duck_tokens if t.text.lower() == key and t.start < target.start)
    matches = [t for t in _tokens(user_sql) if t.text.lower() == key]
    if occurrence < len(matches) and (
        len(matches) == 1 or len(matches) == sum(1 for t in duck_tokens if t.text.lower() == key)
    ):
        token = matches[occurrence]
    elif len(matches) == 1:
        token = matches[0]
    else:
        return None
    line, column = _line_column(user_sql, token.start)
    return line, column, token.end - token.start + 1


def _first_token_position(sql: str) -> tuple[int, int, int] | tuple[()]:
    word = re.search(r"\S+", sql)
    if not word:
        return ()
    line, column = _line_column(sql, word.start())
    return line, column, len(word.group())


def _statement_kind(sql: str) -> str:
    word = re.search(r"[A-Za-z_]+", sql)
    return word.group().upper() if word else "this statement"


def _line_column(text: str, offset: int) -> tuple[int, int]:
    before = text[:offset]
    return before.count("\n") + 1, offset - (before.rfind("\n") + 1) + 1
