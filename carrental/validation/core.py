"""Stream a CSV once, check it against its dataset contract, and return a `FileVerdict`.

Reading (carrental.validation.stream): the first bytes are sniffed (compressed or binary content,
UTF-16); the bytes are checked to be UTF-8 and free of NUL as they stream past (one incremental
decode, one memchr) and hashed. The header line (carrental.validation.header) is parsed with the
csv module (a UTF-8 BOM and CRLF are fine; columns are mapped by name, in any order). Then the
rows (carrental.validation.rows) are parsed by pyarrow's streaming CSV reader in 256 KiB blocks,
every column as text; if the stream saw a non-UTF-8 or NUL byte, the batches from there on are
checked column by column to name its row and column (a NUL in the first line, or binary content
at the start, makes the file "binary" instead). A row longer than a block (a pathological 50 MB
field, an unclosed quote running on) stops the read with a clear problem instead of growing
memory; a value containing a line break (an unclosed quote that swallowed rows) is rejected.
Memory is bounded: pyarrow's readahead of blocks, one batch being checked, and the duplicate-key
index (`keys`), which spills to disk past its budget.

Row rules (carrental.validation.rules): the contract's single-dataset rules (not_null, format,
allowed, min_value, after, unique) are counted per rule with up to 10 examples. Rules that need
another dataset (foreign keys, pricing, ...) are the Spark jobs' business. Reject-rule breaks
under the threshold are accepted (Spark routes those rows to rental_rejects); over it, the file
is rejected.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD, Dataset
from carrental.lake import infer_dataset
from carrental.validation.header import read_header
from carrental.validation.keys import DEFAULT_MEMORY_BUDGET
from carrental.validation.rows import RowChecker, RowSink
from carrental.validation.stream import SNIFF_BYTES, CheckedStream, sniff
from carrental.validation.verdict import FileVerdict, Problem


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
    counted = CheckedStream(stream)
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
    stream: CheckedStream,
    contract: Dataset,
    verdict: FileVerdict,
    key_memory_budget: int,
    sink: RowSink | None,
) -> None:
    problem = sniff(stream.peek(SNIFF_BYTES))
    if problem:
        verdict.problems.append(problem)
        return
    header, problems = read_header(stream, contract)
    if problems:
        verdict.problems += problems
        return
    checker = RowChecker(contract, stream, verdict.reject_threshold, key_memory_budget, sink)
    try:
        checker.read(header)
        verdict.problems += checker.finish()
    finally:
        checker.close()
        verdict.rows = checker.rows
        verdict.rule_counts = checker.counts
        verdict.rule_examples = checker.examples
        verdict.rejected_rows = checker.rejected_rows
