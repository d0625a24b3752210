"""A file's rows after its header: parsed by pyarrow's streaming CSV reader, every column as
text, in 256 KiB blocks regrouped into batches of about 4 MiB, each checked (line breaks, NUL
bytes, UTF-8, the row rules of carrental.validation.rules, the key's uniqueness) and handed to a
`RowSink`.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from carrental.contracts import Dataset, Rule, RuleKind, Severity
from carrental.validation import columns
from carrental.validation.arrays import arrow_bools, bools, byte_lengths
from carrental.validation.keys import DuplicateKeys
from carrental.validation.rules import breaks, example_value, shown_column
from carrental.validation.stream import CheckedStream
from carrental.validation.verdict import MAX_EXAMPLES, Example, Problem, shorten

# pyarrow's streaming reader reads up to 32 blocks ahead in a background thread, so the block
# size bounds memory (32 x 256 KiB = 8 MiB); it is also the largest row the reader accepts.
BLOCK_SIZE = 256 * 1024
# Reader batches are regrouped to about this size: each check costs a fixed overhead per batch
# (4 MiB: 3 % less time than 2 MiB on --scale 50 rentals, 8 MiB no better).
CHECK_ROWS_BYTES = 4 * 1024 * 1024
# How long an early stop waits for pyarrow's readahead thread to see the end of the stream.
_READAHEAD_SETTLE_SECONDS = 0.5
# Rows with a wrong number of fields are remembered (by number) up to this many, then reading stops.
MAX_BAD_ROWS = 1000


class RowSink(Protocol):
    """Receives every checked batch of rows, in file order (carrental.staging writes them as
    typed Parquet). `parsed(column)` gives a non-string column's parsed values."""

    def write(
        self,
        rows: np.ndarray,
        text: Mapping[str, pa.StringArray],
        present: Mapping[str, np.ndarray],
        parsed: Callable[[str], columns.Parsed],
    ) -> None: ...


class RowChecker:
    def __init__(
        self,
        contract: Dataset,
        stream: CheckedStream,
        reject_threshold: float,
        key_memory_budget: int,
        sink: RowSink | None = None,
    ) -> None:
        self.contract = contract
        self._stream = stream
        self._sink = sink
        self.reject_threshold = reject_threshold
        self.rules = [r for r in contract.rules if r.single_dataset]
        self.unique = next(r for r in self.rules if r.kind is RuleKind.UNIQUE)
        self.counts = {r.name: 0 for r in self.rules}
        self.examples: dict[str, list[Example]] = {r.name: [] for r in self.rules}
        self.rows = 0
        self.rejected_rows = 0
        self._flagged_rows = 0  # rows breaking a reject rule other than `unique`
        self._keys = DuplicateKeys(key_memory_budget)
        self._bad_rows: list[int] = []  # numbers of rows with a wrong number of fields
        self._bad_examples: list[Example] = []
        self._next_row = 1
        self._rows_parsed = 0
        self._stopped: Problem | None = None
        self._read_to_the_end = True

    def close(self) -> None:
        self._keys.close()

    def read(self, header: tuple[str, ...]) -> None:
        if not self._stream.peek(1):
            return  # a header and nothing else (pyarrow refuses an empty input)
        references = sys.getrefcount(self._stream)  # before pyarrow holds one
        read_to_the_end = False
        try:
            with self._bad_rows_not_utf8_are_not_printed():
                self._read(header)
            read_to_the_end = self._stopped is None
        except pa.ArrowInvalid as exc:
            self._stopped = self._unreadable(exc)
        except UnicodeDecodeError:  # see _bad_rows_not_utf8_are_not_printed
            self._stopped = self._bad_row_not_utf8()
        finally:
            if not read_to_the_end:
                # pyarrow's readahead thread reads on after an early stop, and a process that
                # ends while that thread calls back into Python aborts ("terminate called
                # without an active exception", seen with pyarrow 20). A closed stream answers
                # its next read with the end of the file; waiting for that read (briefly: a
                # thread with a full readahead queue reads no more) lets it finish first.
                self._stream.close()
                self._stream.end_served.wait(_READAHEAD_SETTLE_SECONDS)
            self._let_the_readahead_finish(references)

    def _let_the_readahead_finish(self, references: int) -> None:
        """pyarrow's readahead thread lets go of the stream only when its last task ends, a
        moment after the reader is gone, and it needs the GIL for that: if the interpreter is
        shutting down by then, the process aborts as above (seen after a read to the end,
        `carrental validate | head`). Sleeping lets the thread have the GIL; the stream's
        reference count says when it is done."""
        deadline = time.monotonic() + _READAHEAD_SETTLE_SECONDS
        while sys.getrefcount(self._stream) > references and time.monotonic() < deadline:
            time.sleep(0.0005)

    def _read(self, header: tuple[str, ...]) -> None:
        # Opening already reads and parses the first block.
        reader = pacsv.open_csv(
            self._stream,
            read_options=pacsv.ReadOptions(
                column_names=list(header), block_size=BLOCK_SIZE, use_threads=False
            ),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=self._on_bad_row
            ),
            convert_options=pacsv.ConvertOptions(
                # The stream checks UTF-8 as it passes; see _check_batch.
                column_types={name: pa.string() for name in header},
                check_utf8=False,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        try:
            for batch in _regrouped(self._parsed(reader), CHECK_ROWS_BYTES):
                if not self._check_batch(batch):
                    return
        finally:
            reader.close()

    @contextlib.contextmanager
    def _bad_rows_not_utf8_are_not_printed(self) -> Iterator[None]:
        """pyarrow decodes a row with a wrong field count as UTF-8 before it calls _on_bad_row.
        For a row that is not UTF-8 the decoding fails inside pyarrow's callback: Python prints
        that as an "Exception ignored" traceback, then the read fails (UnicodeDecodeError or
        ArrowInvalid, handled by the caller). The traceback is not for the user's terminal."""
        previous = sys.unraisablehook

        def hook(unraisable) -> None:
            ours = getattr(unraisable.object, "__self__", None) is self
            if not (ours and isinstance(unraisable.exc_value, UnicodeDecodeError)):
                previous(unraisable)

        sys.unraisablehook = hook
        try:
            yield
        finally:
            sys.unraisablehook = previous

    def _parsed(self, reader: pacsv.CSVStreamingReader):
        for batch in reader:
            self._rows_parsed += batch.num_rows
            yield batch

    def finish(self) -> list[Problem]:
        problems = [self._field_count_problem()] if self._bad_rows else []
        if self._stopped:
            problems.append(self._stopped)
        found = {p.rule for p in problems}
        # A NUL or non-UTF-8 byte the stream saw in no row that was checked: in a row with a
        # wrong field count, or past where reading stopped.
        if self._stream.first_nul_byte is not None and "not_csv_text" not in found:
            problems.append(
                Problem(
                    "not_csv_text",
                    f"byte {self._stream.first_nul_byte:,} of the file is a NUL byte: "
                    "the file is binary or corrupt, not CSV text",
                )
            )
        if self._stream.first_non_utf8_byte is not None and "not_utf8" not in found:
            problems.append(
                Problem(
                    "not_utf8",
                    f"byte {self._stream.first_non_utf8_byte:,} of the file is not UTF-8 text: "
                    "the file must be UTF-8 encoded",
                )
            )
        if problems or not self._read_to_the_end:
            return problems
        count, unflagged, examples = self._keys.finish()
        self.counts[self.unique.name] = count
        self.examples[self.unique.name] = examples
        self.rejected_rows = self._flagged_rows + unflagged
        if not self.rows:
            return [Problem("no_data_rows", "the file has a header but no data rows")]
        if self.rejected_rows / self.rows <= self.reject_threshold:
            return []
        share = self.rejected_rows / self.rows
        problems = [
            Problem(
                "reject_threshold",
                f"{self.rejected_rows:,} of {self.rows:,} rows ({share:.1%}) break a reject "
                f"rule, more than the {self.reject_threshold:.1%} allowed",
            )
        ]
        for rule in self.rules:
            count = self.counts[rule.name]
            if rule.severity is Severity.REJECT and count:
                problems.append(
                    Problem(
                        rule.name,
                        f"{count:,} rows ({count / self.rows:.1%}) break it: {rule.description}",
                        column=shown_column(rule),
                        examples=tuple(self.examples[rule.name]),
                    )
                )
        return problems

    def _on_bad_row(self, row: pacsv.InvalidRow) -> str:
        # Single-threaded reading always knows the row number (counted after the header).
        self._bad_rows.append(row.number)
        if len(self._bad_examples) < MAX_EXAMPLES:
            text = shorten(f"{row.actual_columns} fields: {row.text}")
            self._bad_examples.append((row.number, text))
        return "skip" if len(self._bad_rows) < MAX_BAD_ROWS else "error"

    def _field_count_problem(self) -> Problem:
        many = len(self._bad_rows) >= MAX_BAD_ROWS
        count = f"at least {len(self._bad_rows):,}" if many else f"{len(self._bad_rows):,}"
        return Problem(
            "field_count",
            f"{count} rows do not have the header's {len(self.contract.columns)} fields "
            "(unbalanced quotes or stray delimiters)" + (": reading stopped" if many else ""),
            examples=tuple(self._bad_examples),
        )

    def _unreadable(self, exc: pa.ArrowInvalid) -> Problem | None:
        """Why pyarrow stopped; None when it stopped on our request (too many bad rows)."""
        self._read_to_the_end = False
        message = str(exc)
        first_unread = self._rows_parsed + len(self._bad_rows) + 1
        if "straddl" in message:
            return Problem(
                "row_too_large",
                f"a row from row {first_unread:,} on is larger than {BLOCK_SIZE // 1024} KiB "
                "(a pathological field, or an unclosed quote running on): reading stopped",
            )
        if len(self._bad_rows) >= MAX_BAD_ROWS:
            return None
        return Problem(
            "unparseable_csv", f"unparseable CSV from row {first_unread:,} on: {message}"
        )

    def _bad_row_not_utf8(self) -> Problem:
        self._read_to_the_end = False
        first_unread = self._rows_parsed + len(self._bad_rows) + 1
        where = self._stream.first_non_utf8_byte
        at = f"byte {where:,} of the file" if where is not None else "a row"
        return Problem(
            "not_utf8",
            f"{at} is not UTF-8 text, in a row from row {first_unread:,} on that does not have "
            f"the header's {len(self.contract.columns)} fields: the file must be UTF-8 encoded "
            "(reading stopped)",
        )

    def _row_numbers(self, n: int) -> np.ndarray:
        """File row numbers of the next n rows: rows skipped for a wrong field count keep theirs."""
        start = self._next_row
        if self._bad_rows and self._bad_rows[-1] >= start:
            candidates = np.arange(start, start + n + len(self._bad_rows))
            numbers = candidates[~np.isin(candidates, self._bad_rows)][:n]
        else:
            numbers = np.arange(start, start + n)
        if n:
            self._next_row = int(numbers[-1]) + 1
        return numbers

    def _check_batch(self, batch: pa.RecordBatch) -> bool:
        self._stream.hash_pending()  # bounds what waits to be hashed to the readahead
        rows = self._row_numbers(batch.num_rows)
        self.rows += batch.num_rows
        text: dict[str, pa.StringArray] = dict(zip(batch.schema.names, batch.columns, strict=True))
        if self._stream.quoted:  # else no value read so far holds a line break
            for name, values in text.items():
                if _contains(values, b"\n", b"\r"):
                    self._stopped = _line_break(values, name, rows)
                    return False
        if self._stream.first_nul_byte is not None:
            # A NUL byte from here on: find its row and column.
            for name, values in text.items():
                if _contains(values, b"\x00"):
                    self._stopped = _nul_byte(values, name, rows)
                    return False
        if self._stream.first_non_utf8_byte is not None:
            # Some byte from here on is not UTF-8: find its row and column.
            for name, values in text.items():
                raw = values.cast(pa.binary())
                try:
                    raw.cast(pa.string())
                except pa.ArrowInvalid:
                    self._stopped = _not_utf8(raw, name, rows)
                    return False
        present = {name: byte_lengths(values) > 0 for name, values in text.items()}
        parsed: dict[str, columns.Parsed] = {}

        def parsed_column(name: str) -> columns.Parsed:
            if name not in parsed:
                parsed[name] = columns.parse(text[name], self.contract.column(name))
            return parsed[name]

        flagged = np.zeros(batch.num_rows, dtype=bool)
        for rule in self.rules:
            if rule is self.unique:
                continue
            broken = breaks(rule, text, present, parsed_column)
            self._count(rule, broken, text, rows)
            if rule.severity is Severity.REJECT:
                flagged |= broken
        self._flagged_rows += int(np.count_nonzero(flagged))
        key = self.unique.columns[0]
        has_key = present[key]
        if has_key.all():  # the usual case: no copies
            self._keys.add(text[key], rows, flagged)
        else:
            self._keys.add(text[key].filter(arrow_bools(has_key)), rows[has_key], flagged[has_key])
        if self._sink is not None:
            self._sink.write(rows, text, present, parsed_column)
        return True

    def _count(
        self,
        rule: Rule,
        broken: np.ndarray,
        text: dict[str, pa.StringArray],
        rows: np.ndarray,
    ) -> None:
        count = int(np.count_nonzero(broken))
        if not count:
            return
        self.counts[rule.name] += count
        examples = self.examples[rule.name]
        for i in np.flatnonzero(broken)[: MAX_EXAMPLES - len(examples)]:
            examples.append((int(rows[i]), shorten(example_value(rule, text, int(i)))))


def _regrouped(batches, min_bytes: int):
    """Concatenate small reader batches into batches of at least `min_bytes`: the checks cost a
    fixed overhead per batch, while small reader blocks keep the reader's readahead small."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.get_total_buffer_size()  # = nbytes for a reader's batches, and cheaper
        if size >= min_bytes:
            yield pa.concat_batches(pending) if len(pending) > 1 else batch
            pending, size = [], 0
    if pending:
        yield pa.concat_batches(pending)


def _contains(values: pa.StringArray, *needles: bytes) -> bool:
    """Whether any value contains one of `needles`: memchr-speed searches of the column's bytes."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    start, end = offsets[values.offset], offsets[values.offset + len(values)]
    data = values.buffers()[2]
    if data is None or end == start:
        return False
    text = data.slice(start, end - start).to_pybytes()
    return any(needle in text for needle in needles)


def _line_break(values: pa.StringArray, column: str, rows: np.ndarray) -> Problem:
    broken = pc.or_(pc.match_substring(values, "\n"), pc.match_substring(values, "\r"))
    where = np.flatnonzero(bools(broken))
    return Problem(
        "line_break_in_value",
        f"row {int(rows[where[0]]):,}, column {column}: a value contains a line break. Values "
        "are single-line: this is almost always an unclosed quote that swallowed the rows "
        "after it (reading stopped)",
        column=column,
        examples=tuple(
            (int(rows[i]), shorten(values[int(i)].as_py())) for i in where[:MAX_EXAMPLES]
        ),
    )


def _nul_byte(values: pa.StringArray, column: str, rows: np.ndarray) -> Problem:
    where = np.flatnonzero(bools(pc.match_substring(values, "\x00")))
    first = values[int(where[0])].as_py()
    return Problem(
        "not_csv_text",
        f"row {int(rows[where[0]]):,}, column {column}: a NUL byte (at position "
        f"{first.index(chr(0))} of the value): the file is binary or corrupt, not CSV text "
        "(reading stopped)",
        column=column,
        examples=tuple(
            (int(rows[i]), shorten(values[int(i)].as_py())) for i in where[:MAX_EXAMPLES]
        ),
    )


def _not_utf8(values: pa.BinaryArray, column: str, rows: np.ndarray) -> Problem:
    for i, raw in enumerate(values.to_pylist()):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Problem(
                "not_utf8",
                f"row {int(rows[i])}, column {column}: not UTF-8 text (byte "
                f"{raw[exc.start]:#04x} at position {exc.start} of the value): the file must be "
                "UTF-8 encoded",
                column=column,
                examples=((int(rows[i]), shorten(raw.decode("utf-8", "backslashreplace"))),),
            )
    raise AssertionError(f"column {column}: Arrow rejected the text but every value decodes")
