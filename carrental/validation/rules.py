"""The contract's single-dataset row rules, evaluated on one batch of a file's rows.

Rules that need another dataset (foreign keys, pricing, ...) are the Spark jobs' business; the
`unique` rule needs every earlier row, so carrental.validation.keys checks it.
"""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from carrental.contracts import Rule, RuleKind
from carrental.validation import columns
from carrental.validation.arrays import arrow_strings, bools


def breaks(rule: Rule, text, present, parsed_column) -> np.ndarray:
    """Which rows of a batch break `rule`: `text` holds each column's values, `present` whether
    each is non-empty, `parsed_column(name)` a column's values parsed as its logical type."""
    name = rule.columns[0]
    if rule.kind is RuleKind.NOT_NULL:
        return ~present[name]
    if rule.kind is RuleKind.FORMAT:
        return present[name] & ~parsed_column(name).valid
    if rule.kind is RuleKind.ALLOWED:
        allowed = pc.is_in(text[name], value_set=_value_set(rule.values))
        return present[name] & ~bools(allowed)
    if rule.kind is RuleKind.MIN_VALUE:
        if rule.minimum is None:
            raise ValueError(f"rule {rule.name} has no minimum")
        return columns.below(parsed_column(name), rule.minimum)
    if rule.kind is RuleKind.AFTER:
        first, second = (parsed_column(c) for c in rule.columns)
        return first.valid & second.valid & (second.values <= first.values)
    raise ValueError(f"rule {rule.name}: kind {rule.kind!r} is not a single-dataset rule")


@functools.cache
def _value_set(values: tuple[str, ...]) -> pa.StringArray:
    return arrow_strings(values)


def shown_column(rule: Rule) -> str:
    """The column a rule break is reported under (the later one for `after`, as defects.json)."""
    return rule.columns[-1]


def example_value(rule: Rule, text: dict[str, pa.StringArray], i: int) -> str:
    if rule.kind is RuleKind.AFTER:
        start, end = (text[c][i].as_py() for c in rule.columns)
        return f"{end} (not after {rule.columns[0]} {start})"
    return text[rule.columns[0]][i].as_py()
