"""The staged layer: every accepted file parsed once, when it is accepted, into typed Parquet.

The upload validator already reads and parses every value of a file; staging keeps what it
parsed. A staged file has, per contract column, the typed value under the column's name (null
when the text is empty or does not parse), the text as read under ``_raw_<column>`` for every
column that is not a string (null when empty: a format rule needs it, and rental_rejects shows
rows as read), and ``row_number`` (1 = the first data row after the header). Every row is kept,
rule breakers included: the Spark jobs decide at run time what each row counts for.

Why the validator (pyarrow) writes it and not a Spark step: it reads every byte anyway, so
staging costs one Parquet write in the function that is already running, where a Spark step
would bill an EMR job run per accepted file; and the typed values are the validator's parse, the
same values the Spark jobs' own CSV parser gives (tests/spark/test_staging.py checks it row by
row). Files are written under a temporary name and renamed once complete; the name is the
SHA-256 of the file's bytes, so a staged file never changes (carrental.lake.staged_key).

The column names (`raw`, ROW_NUMBER) are imported by the Spark jobs, where pyarrow may be
missing: numpy and pyarrow are imported only by the code that writes.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from carrental.contracts import MONEY_PRECISION, MONEY_SCALE, Column, Dataset, LogicalType

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from carrental.validation.columns import Parsed

ROW_NUMBER = "row_number"
SECONDS_PER_DAY = 86_400


def _arrow_type(kind: LogicalType) -> pa.DataType:
    import pyarrow as pa

    return {
        LogicalType.STRING: pa.string(),
        LogicalType.INT: pa.int32(),
        LogicalType.FLAG: pa.int32(),
        LogicalType.DOUBLE: pa.float64(),
        LogicalType.MONEY: pa.decimal128(MONEY_PRECISION, MONEY_SCALE),
        LogicalType.DATE: pa.date32(),
        # Wall-clock time, no time zone: Spark reads it as TIMESTAMP_NTZ.
        LogicalType.TIMESTAMP: pa.timestamp("s"),
    }[kind]


def raw(column: str) -> str:
    """The column holding `column`'s text as read (only for columns that are not strings)."""
    return f"_raw_{column}"


def has_raw_text(column: Column) -> bool:
    return column.type is not LogicalType.STRING


def staged_schema(ds: Dataset) -> pa.Schema:
    import pyarrow as pa

    fields = [pa.field(c.name, _arrow_type(c.type)) for c in ds.columns]
    fields += [pa.field(raw(c.name), pa.string()) for c in ds.columns if has_raw_text(c)]
    return pa.schema([*fields, pa.field(ROW_NUMBER, pa.int64(), nullable=False)])


def _typed(column: Column, text: pa.StringArray, present: np.ndarray, parsed: Parsed | None):
    import numpy as np
    import pyarrow as pa

    from carrental.validation.arrays import arrow_numbers, null_where_not

    if column.type is LogicalType.STRING:
        return null_where_not(text, present)
    valid = parsed.valid
    if column.type is LogicalType.TIMESTAMP:
        return arrow_numbers(parsed.values, pa.timestamp("s"), valid)
    if column.type is LogicalType.DATE:
        days = (parsed.values // SECONDS_PER_DAY).astype(np.int32)
        return arrow_numbers(days, pa.date32(), valid)
    if column.type is LogicalType.MONEY:
        # The validated text is exact (at most MONEY_SCALE decimals): Arrow's decimal cast of it
        # is the amount itself; invalid texts are null, so the cast does not parse them.
        return null_where_not(text, valid).cast(_arrow_type(column.type))
    if column.type in (LogicalType.INT, LogicalType.FLAG):
        return arrow_numbers(parsed.values.astype(np.int32), pa.int32(), valid)
    return arrow_numbers(parsed.values, pa.float64(), valid)


PARTIAL_SUFFIX = ".partial"


def partial_name(pid: int) -> str:
    """A file being written by process `pid` (a leftover once that process is gone)."""
    return f".{pid}-{uuid.uuid4().hex}{PARTIAL_SUFFIX}"


def partial_owner(name: str) -> int | None:
    """The process writing a file named by `partial_name`, or None for any other name."""
    match = re.fullmatch(rf"\.(\d+)-[0-9a-f]{{32}}{re.escape(PARTIAL_SUFFIX)}", name)
    return int(match[1]) if match else None


class StagedWriter:
    """A `carrental.validation.RowSink` that writes one file's staged Parquet into `folder`
    under a temporary name. `commit(target)` once the file is accepted (the name is its
    content's hash, known only at the end); `discard()` otherwise."""

    def __init__(self, ds: Dataset, folder: Path) -> None:
        import pyarrow.parquet as pq

        self.ds = ds
        self.schema = staged_schema(ds)
        folder.mkdir(parents=True, exist_ok=True)
        self._partial = folder / partial_name(os.getpid())
        try:
            # zstd: the staged layer is read by every run, so smaller beats faster to write.
            # No dictionaries: a row group per checked batch (a few MB) is too small for them
            # to pay; zstd alone made --scale 50's rentals 51 MB instead of 60, 30 % faster.
            self._writer = pq.ParquetWriter(
                self._partial, self.schema, compression="zstd", use_dictionary=False
            )
        except BaseException:  # e.g. a full disk refuses even the file's first bytes
            self._partial.unlink(missing_ok=True)
            raise

    def write(
        self,
        rows: np.ndarray,
        text: Mapping[str, pa.StringArray],
        present: Mapping[str, np.ndarray],
        parsed: Callable[[str], Parsed],
    ) -> None:
        import pyarrow as pa

        from carrental.validation.arrays import arrow_numbers, null_where_not

        typed = {}
        for column in self.ds.columns:
            values = parsed(column.name) if has_raw_text(column) else None
            typed[column.name] = _typed(column, text[column.name], present[column.name], values)
        texts = {
            raw(c.name): null_where_not(text[c.name], present[c.name])
            for c in self.ds.columns
            if has_raw_text(c)
        }
        arrays = {**typed, **texts, ROW_NUMBER: arrow_numbers(rows, pa.int64())}
        self._writer.write_batch(
            pa.RecordBatch.from_arrays([arrays[f.name] for f in self.schema], schema=self.schema)
        )

    def commit(self, target: Path) -> Path:
        self._writer.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self._partial, target)
        return target

    def discard(self) -> None:
        """Drop the partial file (closing it may fail on a full disk: it goes all the same)."""
        with contextlib.suppress(OSError):
            self._writer.close()
        self._partial.unlink(missing_ok=True)
