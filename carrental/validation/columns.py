"""Vectorised, contract-driven value checks on Arrow string arrays (one per logical type).

Every parser returns, for a batch of raw text values, which values are well formed and their
parsed value (meaningless where not well formed). Empty values are never well formed here: the
`<column>_not_null` rule owns emptiness, and format rules skip empty values.

Formats are strict, so that "valid" means the same thing as a Spark job reading with the same
contract: dates and timestamps must match the contract's pattern exactly (zero-padded, no
surrounding spaces) and name a real instant (no 30 February, no hour 24); integers are ASCII
digits with an optional '-' (no '+', no spaces) that fit in 32 bits; money has at most
MONEY_SCALE decimals and MONEY_PRECISION digits.

Dates and timestamps: values of the pattern's width whose literal bytes ('-', ':', ' ', ...) sit
where the pattern has them are rewritten as ISO 8601 text when the pattern is not already, and
cast by Arrow, whose ISO 8601 cast is strict (digits only, a real day and time of day: no
30 February, no hour 24, no second 60; tests/test_validation.py checks it against Python's
datetime). Arrow's strptime is not used: it silently normalises 2024-02-30 to 2024-03-01. The
cast fails as a whole on one value it refuses: the batch is then cast again without the values
that have a field out of its range (a month 13, an hour 24), and only if that fails too (a
30 February) does NumPy read the batch's digits, which names every such value (slower).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carrental.contracts import INT_RANGE, MONEY_SCALE, TEXT_PATTERNS, Column, LogicalType
from carrental.validation.arrays import (
    arrow_numbers,
    bools,
    byte_lengths,
    fixed_width_bytes,
    fixed_width_strings,
    null_where_not,
    numbers,
)

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
# The ISO 8601 text Arrow's cast to a timestamp reads strictly: values of another pattern are
# rewritten into it (its fields that the pattern lacks keep the template's digits).
_ISO_PATTERN = "yyyy-MM-dd HH:mm:ss"
_ISO_TEMPLATE = np.frombuffer(b"1970-01-01 00:00:00", dtype=np.uint8)
# Patterns that are ISO 8601 text already -> where the cast reads them more loosely: it requires
# every '-' and ':' itself but takes 'T' as well as ' ' between date and time (the tests try
# every separator at every position).
_CAST_AS_IS = {_ISO_PATTERN: (10,), "yyyy-MM-dd": ()}
# Two-digit fields' ranges (whatever the month: a day 31 can be real)
_FIELD_RANGES = {
    "month": (1, 12),
    "day": (1, 31),
    "hour": (0, 23),
    "minute": (0, 59),
    "second": (0, 59),
}
_YEAR_ONE = int((datetime(1, 1, 1) - datetime(1970, 1, 1)).total_seconds())


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
    # The same digits' positions in _ISO_TEMPLATE; None when a field repeats.
    iso_positions: np.ndarray | None
    # The literals to check before Arrow's cast (it checks the others itself)
    cast_literal_positions: np.ndarray
    cast_literal_bytes: np.ndarray

    @classmethod
    def of(cls, pattern: str) -> DatetimeLayout:
        fields, literals = _fields_and_literals(pattern)
        names = [name for name, _, _ in fields]
        iso_start = {name: start for name, start, _ in _fields_and_literals(_ISO_PATTERN)[0]}
        unique = len(set(names)) == len(names)
        loose = _CAST_AS_IS.get(pattern)
        cast_literals = literals if loose is None else [(p, b) for p, b in literals if p in loose]
        return cls(
            pattern,
            len(pattern),
            tuple(fields),
            np.array([p for p, _ in literals], dtype=np.intp),
            np.array([b for _, b in literals], dtype=np.uint8),
            np.array([p for _, start, width in fields for p in range(start, start + width)]),
            np.array([iso_start[n] + i for n, _, width in fields for i in range(width)])
            if unique
            else None,
            np.array([p for p, _ in cast_literals], dtype=np.intp),
            np.array([b for _, b in cast_literals], dtype=np.uint8),
        )


def _fields_and_literals(pattern: str) -> tuple[list[tuple[str, int, int]], list[tuple[int, int]]]:
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
            raise ValueError(f"unsupported letter {pattern[i]!r} in datetime pattern {pattern!r}")
        else:
            literals.append((i, ord(pattern[i])))
            i += 1
    return fields, literals


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
        # A well-formed flag is "0" or "1": it is 1 when it holds a "1".
        ones = bools(pc.match_substring(values, "1")).astype(np.int64)
        return Parsed(kind, valid, ones)
    if kind is LogicalType.INT:
        valid = _is_integer(values)
        integers = _cast_where(values, valid, pa.int64(), np.int64)
        valid &= (integers >= INT_RANGE[0]) & (integers <= INT_RANGE[1])
        return Parsed(kind, valid, integers)
    if kind is LogicalType.DOUBLE:
        valid = _matches(values, TEXT_PATTERNS[LogicalType.DOUBLE])
        doubles = _cast_where(values, valid, pa.float64(), np.float64)
        valid &= np.isfinite(doubles)
        return Parsed(kind, valid, doubles)
    if kind is LogicalType.MONEY:
        valid = _matches(values, TEXT_PATTERNS[LogicalType.MONEY])
        # At most MONEY_PRECISION (< 16) digits: the float64 parse, scaled and rounded, is the
        # exact amount in cents (faster than a decimal cast, and plain numpy afterwards).
        amounts = _cast_where(values, valid, pa.float64(), np.float64)
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
    candidates = np.flatnonzero(byte_lengths(values) == layout.width)
    if n and len(candidates) == n:  # the usual case: no copies
        return Parsed(LogicalType.TIMESTAMP, *_parse_same_width(values, layout))
    valid = np.zeros(n, dtype=bool)
    seconds = np.zeros(n, dtype=np.int64)
    if len(candidates):
        same_width = values.take(arrow_numbers(candidates, pa.int64()))
        valid[candidates], seconds[candidates] = _parse_same_width(same_width, layout)
    return Parsed(LogicalType.TIMESTAMP, valid, seconds)


def _parse_same_width(
    values: pa.StringArray, layout: DatetimeLayout
) -> tuple[np.ndarray, np.ndarray]:
    """(valid, seconds) of values that all have the pattern's width."""
    text = fixed_width_bytes(values, layout.width)  # one row per value
    return _cast_iso(values, text, layout) or _parse_digits(text, layout)


def _cast_iso(
    values: pa.StringArray, text: np.ndarray, layout: DatetimeLayout
) -> tuple[np.ndarray, np.ndarray] | None:
    """(valid, seconds) of same-width values by Arrow's ISO 8601 cast of those with their
    literals in place; None when one of them is not a real instant (the cast then fails as a
    whole)."""
    if layout.iso_positions is None:
        return None
    shaped = _literals_match(text, layout.cast_literal_positions, layout.cast_literal_bytes)
    if layout.pattern not in _CAST_AS_IS:
        iso = np.empty((len(text), len(_ISO_TEMPLATE)), dtype=np.uint8)
        iso[:] = _ISO_TEMPLATE
        iso[:, layout.iso_positions] = text[:, layout.digit_positions]
        values = fixed_width_strings(iso)
    instants = _cast_timestamps(values, shaped)
    if instants is None:  # most often a field out of its range (a month 13): leave those out
        shaped = shaped & _fields_in_range(text, layout)
        instants = _cast_timestamps(values, shaped)
    if instants is None:
        return None
    seconds = numbers(instants, np.int64)
    valid = shaped & (seconds >= _YEAR_ONE)  # Arrow reads year 0; the contract starts at 1
    return valid, seconds if shaped.all() else np.where(shaped, seconds, 0)


def _literals_match(text: np.ndarray, positions: np.ndarray, literals: np.ndarray) -> np.ndarray:
    ok = np.ones(len(text), dtype=bool)
    for position, byte in zip(positions, literals, strict=True):
        ok &= text[:, position] == byte
    return ok


def _cast_timestamps(iso: pa.StringArray, keep: np.ndarray) -> pa.TimestampArray | None:
    try:
        return (iso if keep.all() else null_where_not(iso, keep)).cast(pa.timestamp("s"))
    except pa.ArrowInvalid:
        return None


def _fields_in_range(text: np.ndarray, layout: DatetimeLayout) -> np.ndarray:
    """False where a two-digit field is out of its range, which no day can hold (a month 13, a
    minute 60); bytes that are no digits may land anywhere (the cast rejects those)."""
    ok = np.ones(len(text), dtype=bool)
    for name, start, width in layout.fields:
        if name in _FIELD_RANGES:
            tens, units = (text[:, start + i].astype(np.int16) - ord("0") for i in range(width))
            value = tens * 10 + units
            ok &= (value >= _FIELD_RANGES[name][0]) & (value <= _FIELD_RANGES[name][1])
    return ok


def _parse_digits(text: np.ndarray, layout: DatetimeLayout) -> tuple[np.ndarray, np.ndarray]:
    """(valid, seconds) of same-width values computed from their digits."""
    ok = _literals_match(text, layout.literal_positions, layout.literal_bytes)
    by_position = text.T  # one row per byte position
    digits = by_position[layout.digit_positions] - np.uint8(ord("0"))  # non-digits wrap to > 9
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
    days = _days_since_epoch(np.asarray(year), np.asarray(month), np.asarray(day))
    seconds = days * 86_400 + found["hour"] * 3_600 + found["minute"] * 60 + found["second"]
    return ok, np.broadcast_to(seconds, ok.shape)


def _days_since_epoch(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days from 1970-01-01 to a proleptic Gregorian date (H. Hinnant's days_from_civil),
    vectorised; meaningless where the date is not real (those rows are not valid anyway)."""
    year = year - (month <= 2)
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def _is_integer(values: pa.StringArray) -> np.ndarray:
    """Optionally negative ASCII digits, at most _INT_MAX_DIGITS of them (no '+', no spaces).
    Cheaper than a regular expression: a character-class kernel, and a second look only at the
    few values that are not plain digits."""
    valid = bools(pc.ascii_is_decimal(values))
    lengths = byte_lengths(values)
    negative = np.flatnonzero(~valid & (lengths > 1))
    if len(negative):
        candidates = values.take(arrow_numbers(negative, pa.int64()))
        signed = pc.and_(
            pc.starts_with(candidates, "-"),
            pc.ascii_is_decimal(pc.utf8_slice_codeunits(candidates, 1)),
        )
        valid[negative] = bools(signed)
        lengths[negative] -= 1
    return valid & (lengths <= _INT_MAX_DIGITS)


def _matches(values: pa.StringArray, pattern: str) -> np.ndarray:
    return bools(pc.match_substring_regex(values, pattern))


def _cast_where(
    values: pa.StringArray, valid: np.ndarray, to: pa.DataType, dtype: type[np.generic]
) -> np.ndarray:
    """The well-formed values cast to `to` (0 elsewhere: the others are null for the cast, so
    it does not parse them and cannot fail)."""
    if valid.all():  # the usual case: no copy
        return numbers(values.cast(to), dtype)
    return np.where(valid, numbers(null_where_not(values, valid).cast(to), dtype), 0)
