"""Vectorised, contract-driven value checks on Arrow string arrays (one per logical type).

Every parser returns, for a batch of raw text values, which values are well formed and their
parsed value (meaningless where not well formed). Empty values are never well formed here: the
`<column>_not_null` rule owns emptiness, and format rules skip empty values.

Formats are strict, so that "valid" means the same thing as a Spark job reading with the same
contract: dates and timestamps must match the contract's pattern exactly (zero-padded, no
surrounding spaces) and name a real instant (no 30 February, no hour 24); integers are ASCII
digits with an optional '-' (no '+', no spaces) that fit in 32 bits; money has at most
MONEY_SCALE decimals and MONEY_PRECISION digits. Timestamps are parsed with numpy on the fixed-width bytes instead of
strptime: Arrow's strptime silently normalises 2024-02-30 to 2024-03-01, and it is slower.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carrental.contracts import INT_RANGE, MONEY_SCALE, TEXT_PATTERNS, Column, LogicalType

# The digits of TEXT_PATTERNS[INT], which _is_integer checks without a regular expression.
_INT_MAX_DIGITS = len(str(INT_RANGE[1]))

# Spark datetime pattern letters the contracts use -> (field, width).
_DATETIME_FIELDS = {
    "yyyy": ("year", 4),
    "MM": ("month", 2),
    "dd": ("day", 2),
    "HH": ("hour", 2),
    "mm": ("minute", 2),
    "ss": ("second", 2),
}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


@dataclass(frozen=True)
class Parsed:
    kind: LogicalType
    valid: np.ndarray  # bool per row: non-empty and well formed
    # int64 / float64 / cents for money / wall-clock seconds since 1970 for dates and times
    values: np.ndarray


@dataclass(frozen=True)
class DatetimeLayout:
    """A fixed-width datetime pattern: where each field's digits and each literal byte sit."""

    pattern: str
    width: int
    fields: tuple[tuple[str, int, int], ...]  # (field, start, width)
    literal_positions: np.ndarray
    literal_bytes: np.ndarray
    digit_positions: np.ndarray  # field by field, in pattern order

    @classmethod
    def of(cls, pattern: str) -> DatetimeLayout:
        fields: list[tuple[str, int, int]] = []
        literals: list[tuple[int, int]] = []
        i = 0
        while i < len(pattern):
            token = next((t for t in _DATETIME_FIELDS if pattern.startswith(t, i)), None)
            if token:
                name, width = _DATETIME_FIELDS[token]
                fields.append((name, i, width))
                i += width
            elif pattern[i].isalpha():
                raise ValueError(
                    f"unsupported letter {pattern[i]!r} in datetime pattern {pattern!r}"
                )
            else:
                literals.append((i, ord(pattern[i])))
                i += 1
        return cls(
            pattern,
            len(pattern),
            tuple(fields),
            np.array([p for p, _ in literals], dtype=np.intp),
            np.array([b for _, b in literals], dtype=np.uint8),
            np.array([p for _, start, width in fields for p in range(start, start + width)]),
        )


@functools.cache
def layout_of(pattern: str) -> DatetimeLayout:
    return DatetimeLayout.of(pattern)


def parse(values: pa.StringArray, column: Column) -> Parsed:
    """Parse a batch of raw text values of `column` with its contract type."""
    kind = column.type
    if kind in (LogicalType.DATE, LogicalType.TIMESTAMP):
        if column.pattern is None:
            raise ValueError(f"{column.name}: a {kind} column needs a pattern")
        return parse_datetime(values, layout_of(column.pattern))
    if kind is LogicalType.FLAG:
        valid = _matches(values, TEXT_PATTERNS[LogicalType.FLAG])
        return Parsed(
            kind, valid, pc.equal(values, "1").to_numpy(zero_copy_only=False).astype(np.int64)
        )
    if kind is LogicalType.INT:
        valid = _is_integer(values)
        numbers = _cast_where(values, valid, "0", pa.int64()).to_numpy()
        valid &= (numbers >= INT_RANGE[0]) & (numbers <= INT_RANGE[1])
        return Parsed(kind, valid, numbers)
    if kind is LogicalType.DOUBLE:
        valid = _matches(values, TEXT_PATTERNS[LogicalType.DOUBLE])
        numbers = _cast_where(values, valid, "0", pa.float64()).to_numpy()
        valid &= np.isfinite(numbers)
        return Parsed(kind, valid, numbers)
    if kind is LogicalType.MONEY:
        valid = _matches(values, TEXT_PATTERNS[LogicalType.MONEY])
        # At most MONEY_PRECISION (< 16) digits: the float64 parse, scaled and rounded, is the
        # exact amount in cents (faster than a decimal cast, and plain numpy afterwards).
        amounts = _cast_where(values, valid, "0", pa.float64()).to_numpy()
        return Parsed(kind, valid, np.rint(amounts * 10**MONEY_SCALE).astype(np.int64))
    raise ValueError(f"{column.name}: no parser for type {kind}")


def below(parsed: Parsed, minimum: Decimal) -> np.ndarray:
    """Rows whose well-formed value is < minimum (exactly: money is compared in cents)."""
    if parsed.kind is LogicalType.MONEY:
        limit = math.ceil(minimum * 10**MONEY_SCALE)
    elif parsed.kind in (LogicalType.INT, LogicalType.FLAG):
        limit = math.ceil(minimum)
    elif parsed.kind is LogicalType.DOUBLE:
        limit = float(minimum)
    else:
        raise ValueError(f"no minimum for {parsed.kind} values")
    return parsed.valid & (parsed.values < limit)


def parse_datetime(values: pa.StringArray, layout: DatetimeLayout) -> Parsed:
    """Strictly parse fixed-width datetimes. The parsed value is the instant as seconds since
    1970-01-01 00:00:00 of the wall clock (no time zone): it orders instants (the `after` rule)
    and is what the staged layer stores (carrental.staging)."""
    n = len(values)
    valid = np.zeros(n, dtype=bool)
    seconds = np.zeros(n, dtype=np.int64)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    offsets = offsets[values.offset : values.offset + n + 1]
    candidates = np.flatnonzero(np.diff(offsets) == layout.width)
    if not len(candidates):
        return Parsed(LogicalType.TIMESTAMP, valid, seconds)
    # One row per byte position (transposed), so each position is a contiguous vector.
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    text = data[offsets[candidates] + np.arange(layout.width)[:, None]]
    ok = (text[layout.literal_positions] == layout.literal_bytes[:, None]).all(axis=0)
    digits = text[layout.digit_positions] - np.uint8(ord("0"))  # non-digits wrap to > 9
    ok &= (digits <= 9).all(axis=0)
    found = {"year": 1970, "month": 1, "day": 1, "hour": 0, "minute": 0, "second": 0}
    row = 0
    for name, _, width in layout.fields:
        value = digits[row].astype(np.int64)
        for digit in digits[row + 1 : row + width]:
            value = value * 10 + digit
        found[name] = value
        row += width
    year, month, day = found["year"], found["month"], found["day"]
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_days = _DAYS_IN_MONTH[np.clip(month, 1, 12) - 1] + ((month == 2) & leap)
    ok &= (year >= 1) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= month_days)
    ok &= (found["hour"] < 24) & (found["minute"] < 60) & (found["second"] < 60)
    valid[candidates] = ok
    days = _days_since_epoch(np.asarray(year), np.asarray(month), np.asarray(day))
    seconds[candidates] = (
        days * 86_400 + found["hour"] * 3_600 + found["minute"] * 60 + found["second"]
    )
    return Parsed(LogicalType.TIMESTAMP, valid, seconds)


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil),
    vectorised; meaningless where the date is not real (those rows are not valid anyway)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def byte_lengths(values: pa.StringArray | pa.BinaryArray) -> np.ndarray:
    """Each value's length in bytes, straight from the offsets buffer."""
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)
    return np.diff(offsets[values.offset : values.offset + len(values) + 1])


def fixed_width_bytes(values: pa.StringArray | pa.BinaryArray, width: int) -> np.ndarray:
    """The bytes of values that all have `width` bytes, as an (n, width) uint8 view."""
    n = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int32)[values.offset : values.offset + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)
    return data[offsets[0] : offsets[0] + n * width].reshape(n, width)


def _is_integer(values: pa.StringArray) -> np.ndarray:
    """Optionally negative ASCII digits, at most _INT_MAX_DIGITS of them (no '+', no spaces).
    Cheaper than a regular expression: a character-class kernel, and a second look only at the
    few values that are not plain digits."""
    valid = pc.ascii_is_decimal(values).to_numpy(zero_copy_only=False)
    lengths = byte_lengths(values)
    negative = np.flatnonzero(~valid & (lengths > 1))
    if len(negative):
        candidates = values.take(pa.array(negative))
        signed = pc.and_(
            pc.starts_with(candidates, "-"),
            pc.ascii_is_decimal(pc.utf8_slice_codeunits(candidates, 1)),
        )
        valid[negative] = signed.to_numpy(zero_copy_only=False)
        lengths[negative] -= 1
    return valid & (lengths <= _INT_MAX_DIGITS)


def _matches(values: pa.StringArray, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(values, pattern).to_numpy(zero_copy_only=False)


def _cast_where(values: pa.StringArray, valid: np.ndarray, filler: str, to: pa.DataType):
    """Cast the well-formed values; the others are replaced by `filler` so the cast cannot fail."""
    if valid.all():  # the usual case: no copy
        return values.cast(to)
    return pc.if_else(pa.array(valid), values, filler).cast(to)
