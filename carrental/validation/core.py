"""Stream a CSV once, check it against its dataset contract, and return a `FileVerdict`.

Reading: the first bytes are sniffed (compressed or binary content, UTF-16); the header line is
parsed with the csv module (a UTF-8 BOM and CRLF are fine; columns are mapped by name, in any
order); then pyarrow's streaming CSV reader parses the rest in 256 KiB blocks, every column as
text. The bytes are checked to be UTF-8 and free of NUL as they stream past (one incremental
decode, one memchr); if one is not, the batches from there on are checked column by column to
name its row and column (a NUL in the first line, or binary content at the start, makes the
file "binary" instead). A row
longer than a block (a pathological 50 MB field, an unclosed quote running on) stops the read
with a clear problem instead of growing memory; a value containing a line break (an unclosed
quote that swallowed rows) is rejected. Memory is bounded: pyarrow's readahead of blocks, one
batch being checked, and the duplicate-key index (`keys`), which spills to disk past its budget.

Row rules: the contract's single-dataset rules (not_null, format, allowed, min_value, after,
unique) are counted per rule with up to 10 examples. Rules that need another dataset (foreign
keys, pricing, ...) are the Spark jobs' business. Reject-rule breaks under the threshold are
accepted (Spark routes those rows to rental_rejects); over it, the file is rejected.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import csv
import hashlib
import io
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD, Dataset, Rule, Severity
from carrental.validation import columns
from carrental.validation.keys import DEFAULT_MEMORY_BUDGET, DuplicateKeys
from carrental.validation.verdict import MAX_EXAMPLES, Example, FileVerdict, Problem, shorten

# pyarrow's streaming reader reads up to 32 blocks ahead in a background thread, so the block
# size bounds memory (32 x 256 KiB = 8 MiB); it is also the largest row the reader accepts.
BLOCK_SIZE = 256 * 1024
# Reader batches are regrouped to about this size: each check costs a fixed overhead per batch.
CHECK_ROWS_BYTES = 2 * 1024 * 1024
SNIFF_BYTES = 64 * 1024
MAX_HEADER_BYTES = 64 * 1024
# How long an early stop waits for pyarrow's readahead thread to see the end of the stream.
_READAHEAD_SETTLE_SECONDS = 0.5
# Rows with a wrong number of fields are remembered (by number) up to this many, then reading stops.
MAX_BAD_ROWS = 1000

_MAGIC = (
    (b"\x1f\x8b", "gzip-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"(\xb5/\xfd", "zstd-compressed"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"PAR1", "a Parquet file"),
    (b"\xff\xfe", "UTF-16 text (little-endian BOM), not UTF-8"),
    (b"\xfe\xff", "UTF-16 text (big-endian BOM), not UTF-8"),
)
_UTF8_BOM = b"\xef\xbb\xbf"
# C0 control bytes that text never holds (tab, line feed and carriage return aside)
_BINARY_CONTROLS = bytes([*range(0, 9), 11, 12, *range(14, 32)])


def infer_dataset(path: str, explicit: str | None = None) -> str:
    """The dataset of a file: `explicit` if given, else the folder after ``raw/``
    (``raw/<dataset>/…``), else the parent folder's name, else the file name's stem."""
    known = ", ".join(DATASETS)
    if explicit is not None:
        if explicit not in DATASETS:
            raise ValueError(f"unknown dataset {explicit!r} (known: {known})")
        return explicit
    pure = PurePosixPath(path.replace("\\", "/"))
    folders = pure.parts[:-1]
    candidates = [folders[i + 1] for i, part in enumerate(folders[:-1]) if part == "raw"]
    candidates += [*folders[-1:], pure.name.split(".")[0]]
    for name in candidates:
        if name in DATASETS:
            return name
    raise ValueError(
        f"cannot tell the dataset of {path!r}: pass --dataset, put the file under "
        f"raw/<dataset>/ or name it <dataset>.csv (known datasets: {known})"
    )


def validate_path(
    path: str | Path,
    *,
    dataset: str | None = None,
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
) -> FileVerdict:
    source = str(path)
    try:
        name = infer_dataset(source, dataset)
    except ValueError as exc:
        return FileVerdict(
            source=source,
            dataset=dataset or "unknown",
            accepted=False,
            rows=0,
            bytes=0,
            problems=[Problem("unknown_dataset", str(exc))],
            reject_threshold=reject_threshold,
        )
    with open(path, "rb") as stream:
        return validate_stream(
            stream, dataset=name, source=source, reject_threshold=reject_threshold
        )


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


def validate_stream(
    stream: BinaryIO,
    *,
    dataset: str,
    source: str,
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD,
    key_memory_budget: int = DEFAULT_MEMORY_BUDGET,
    sink: RowSink | None = None,
) -> FileVerdict:
    """Validate one CSV read once from `stream` (anything with ``read(n)``: a file, an S3 body).

    `sink` receives the rows as they are checked (whatever the verdict: the caller keeps its
    output only for an accepted file). An accepted file's verdict carries the SHA-256 of every
    byte of the file: the identity of its content."""
    if not 0 <= reject_threshold <= 1:
        raise ValueError(f"reject_threshold must be between 0 and 1, got {reject_threshold}")
    verdict = FileVerdict(
        source=source,
        dataset=dataset,
        accepted=False,
        rows=0,
        bytes=0,
        reject_threshold=reject_threshold,
    )
    contract = DATASETS.get(dataset)
    if contract is None:
        verdict.problems.append(
            Problem(
                "unknown_dataset",
                f"unknown dataset {dataset!r} (known: {', '.join(DATASETS)})",
            )
        )
        return verdict
    counted = _CountingStream(stream)
    try:
        _check_file(counted, contract, verdict, key_memory_budget, sink)
        verdict.accepted = not verdict.problems
        if verdict.accepted:
            while counted.read(1 << 20):  # the reader stops at the last row: hash every byte
                pass
            verdict.sha256 = counted.sha256
    finally:
        verdict.bytes = counted.bytes_read
    return verdict


def _check_file(
    stream: _CountingStream,
    contract: Dataset,
    verdict: FileVerdict,
    key_memory_budget: int,
    sink: RowSink | None,
) -> None:
    problem = _sniff(stream.peek(SNIFF_BYTES))
    if problem:
        verdict.problems.append(problem)
        return
    header, problems = _read_header(stream, contract)
    if problems:
        verdict.problems += problems
        return
    checker = _RowChecker(contract, stream, verdict.reject_threshold, key_memory_budget, sink)
    try:
        checker.read(header)
        verdict.problems += checker.finish()
    finally:
        checker.close()
        verdict.rows = checker.rows
        verdict.rule_counts = checker.counts
        verdict.rule_examples = checker.examples
        verdict.rejected_rows = checker.rejected_rows


class _CountingStream:
    """A read-only stream over `raw` that can peek at its start, counts the bytes read and
    checks that they are UTF-8 and free of NUL bytes as they pass (one incremental decode and
    one memchr per read: cheaper than checking every column of every batch). `read(n)` fills
    up to n bytes (S3 bodies return short reads).
    """

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._pending = b""
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._digest = hashlib.sha256()
        # Bytes read but not hashed yet: pyarrow's readahead thread reads, the caller's thread
        # hashes (hashlib lets go of the GIL, which must not happen in a thread that may still
        # run while the interpreter shuts down after an early stop).
        self._unhashed: collections.deque[bytes] = collections.deque()
        self.bytes_read = 0
        self.first_non_utf8_byte: int | None = None  # offset in the file
        self.first_nul_byte: int | None = None  # offset in the file
        self.closed = False
        self.end_served = threading.Event()  # a read after close() was answered

    def _pull(self, n: int) -> bytes:
        data = self._raw.read(n)
        if self.first_nul_byte is None and (nul := data.find(b"\x00")) >= 0:
            self.first_nul_byte = self.bytes_read + nul
        if self.first_non_utf8_byte is None:
            try:
                self._utf8.decode(data, final=not data or n < 0)
            except UnicodeDecodeError as exc:
                self.first_non_utf8_byte = self.bytes_read + exc.start
        self.bytes_read += len(data)
        self._unhashed.append(data)
        return data

    def hash_pending(self) -> None:
        """Hash what was read so far (in the caller's thread)."""
        while self._unhashed:
            self._digest.update(self._unhashed.popleft())

    @property
    def sha256(self) -> str:
        self.hash_pending()
        return self._digest.hexdigest()

    def peek(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self._pull(n - len(self._pending))
            if not data:
                break
            self._pending += data
        return self._pending[:n]

    def read(self, n: int = -1) -> bytes:
        if self.closed:  # see _RowChecker.read
            self.end_served.set()
            return b""
        if n is None or n < 0:
            data, self._pending = self._pending + self._pull(-1), b""
            return data
        chunks = [self._pending[:n]]
        self._pending = self._pending[n:]
        missing = n - len(chunks[0])
        while missing > 0:
            data = self._pull(missing)
            if not data:
                break
            chunks.append(data)
            missing -= len(data)
        return b"".join(chunks)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


def _sniff(start: bytes) -> Problem | None:
    for magic, what in _MAGIC:
        if start.startswith(magic):
            return Problem(
                "not_csv_text" if "UTF-16" not in what else "not_utf8",
                f"the file is {what}: upload plain UTF-8 CSV text",
            )
    nul = start.find(b"\x00")
    header_end = start.find(b"\n")
    controls = sum(start.count(bytes([c])) for c in _BINARY_CONTROLS)
    # A stray NUL in a text file is reported with its row and column (_RowChecker); a file
    # that starts with binary content is reported as such.
    if nul >= 0 and (header_end < 0 or nul < header_end or controls > len(start) / 100):
        if start[1:64:2].count(0) > 24 or start[0:64:2].count(0) > 24:
            return Problem(
                "not_utf8",
                "the file looks like UTF-16 text without a byte order mark (every other byte "
                "is NUL): save it as UTF-8",
            )
        return Problem(
            "not_csv_text", f"the file is binary, not CSV text (a NUL byte at offset {nul:,})"
        )
    return None


def _read_header(
    stream: _CountingStream, contract: Dataset
) -> tuple[tuple[str, ...], list[Problem]]:
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
    text = line.removeprefix(_UTF8_BOM)
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
    return names, _header_problems(names, contract)


def _header_problems(names: tuple[str, ...], contract: Dataset) -> list[Problem]:
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


class _RowChecker:
    def __init__(
        self,
        contract: Dataset,
        stream: _CountingStream,
        reject_threshold: float,
        key_memory_budget: int,
        sink: RowSink | None = None,
    ) -> None:
        self.contract = contract
        self._stream = stream
        self._sink = sink
        self.reject_threshold = reject_threshold
        self.rules = [r for r in contract.rules if r.single_dataset]
        self.unique = next(r for r in self.rules if r.kind == "unique")
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
                        column=_shown_column(rule),
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
        present = {name: columns.byte_lengths(values) > 0 for name, values in text.items()}
        parsed: dict[str, columns.Parsed] = {}

        def parsed_column(name: str) -> columns.Parsed:
            if name not in parsed:
                parsed[name] = columns.parse(text[name], self.contract.column(name))
            return parsed[name]

        flagged = np.zeros(batch.num_rows, dtype=bool)
        for rule in self.rules:
            if rule is self.unique:
                continue
            broken = _broken(rule, text, present, parsed_column)
            self._count(rule, broken, text, rows)
            if rule.severity is Severity.REJECT:
                flagged |= broken
        self._flagged_rows += int(flagged.sum())
        key = self.unique.columns[0]
        has_key = present[key]
        self._keys.add(text[key].filter(pa.array(has_key)), rows[has_key], flagged[has_key])
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
        count = int(broken.sum())
        if not count:
            return
        self.counts[rule.name] += count
        examples = self.examples[rule.name]
        for i in np.flatnonzero(broken)[: MAX_EXAMPLES - len(examples)]:
            examples.append((int(rows[i]), shorten(_example_value(rule, text, int(i)))))


def _broken(rule: Rule, text, present, parsed_column) -> np.ndarray:
    name = rule.columns[0]
    if rule.kind == "not_null":
        return ~present[name]
    if rule.kind == "format":
        return present[name] & ~parsed_column(name).valid
    if rule.kind == "allowed":
        allowed = pc.is_in(text[name], value_set=pa.array(rule.values))
        return present[name] & ~allowed.to_numpy(zero_copy_only=False)
    if rule.kind == "min_value":
        if rule.minimum is None:
            raise ValueError(f"rule {rule.name} has no minimum")
        return columns.below(parsed_column(name), rule.minimum)
    if rule.kind == "after":
        first, second = (parsed_column(c) for c in rule.columns)
        return first.valid & second.valid & (second.values <= first.values)
    raise ValueError(f"rule {rule.name}: kind {rule.kind!r} is not a single-dataset rule")


def _regrouped(batches, min_bytes: int):
    """Concatenate small reader batches into batches of at least `min_bytes`: the checks cost a
    fixed overhead per batch, while small reader blocks keep the reader's readahead small."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        pending.append(batch)
        size += batch.nbytes
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
    where = np.flatnonzero(broken.to_numpy(zero_copy_only=False))
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
    where = np.flatnonzero(pc.match_substring(values, "\x00").to_numpy(zero_copy_only=False))
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


def _shown_column(rule: Rule) -> str:
    """The column a rule break is reported under (the later one for `after`, as defects.json)."""
    return rule.columns[-1]


def _example_value(rule: Rule, text: dict[str, pa.StringArray], i: int) -> str:
    if rule.kind == "after":
        start, end = (text[c][i].as_py() for c in rule.columns)
        return f"{end} (not after {rule.columns[0]} {start})"
    return text[rule.columns[0]][i].as_py()


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
