"""The header line: read with the csv module, its columns mapped to the contract by name."""

from __future__ import annotations

import csv
import io

from carrental.contracts import Dataset
from carrental.validation.stream import UTF8_BOM, CheckedStream
from carrental.validation.verdict import Problem, shorten

MAX_HEADER_BYTES = 64 * 1024


def read_header(stream: CheckedStream, contract: Dataset) -> tuple[tuple[str, ...], list[Problem]]:
    start = stream.peek(MAX_HEADER_BYTES)
    if not start.strip():
        return (), [Problem("header_missing", "the file is empty: no header, no rows")]
    end = start.find(b"\n")
    if end < 0 and len(start) == MAX_HEADER_BYTES:
        return (), [
            Problem(
                "header_missing",
                f"the first line is longer than {MAX_HEADER_BYTES:,} bytes: not a CSV header",
            )
        ]
    line = stream.read(end + 1 if end >= 0 else len(start))
    text = line.removeprefix(UTF8_BOM)
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (), [
            Problem(
                "not_utf8",
                f"the header is not UTF-8 text (byte {text[exc.start]:#04x} at offset {exc.start})",
                examples=((0, shorten(text.decode("utf-8", "backslashreplace"))),),
            )
        ]
    try:
        names = tuple(next(csv.reader(io.StringIO(decoded.rstrip("\r\n")), strict=True), []))
    except csv.Error as exc:
        return (), [Problem("header_missing", f"the header line is not valid CSV: {exc}")]
    return names, header_problems(names, contract)


def header_problems(names: tuple[str, ...], contract: Dataset) -> list[Problem]:
    expected = contract.header
    if not names or not set(names) & set(expected):
        return [
            Problem(
                "header_missing",
                f"the first line is not a {contract.name} header (none of its fields is a "
                f"column name); expected the columns {', '.join(expected)}; "
                f"got {shorten(', '.join(map(repr, names)))}",
            )
        ]
    problems = []
    for name in dict.fromkeys(names):
        if names.count(name) > 1:
            problems.append(
                Problem(
                    "header_duplicate_column",
                    f"column {name!r} appears {names.count(name)} times in the header",
                    column=name,
                )
            )
    for name in expected:
        if name not in names:
            problems.append(
                Problem("header_missing_column", f"the header lacks column {name!r}", column=name)
            )
    for name in dict.fromkeys(names):
        if name not in expected:
            hint = " (check for surrounding spaces)" if name.strip() in expected else ""
            problems.append(
                Problem(
                    "header_extra_column",
                    f"column {name!r} is not in the {contract.name} contract{hint}",
                    column=name,
                )
            )
    return problems
