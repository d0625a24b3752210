"""Contract-driven row checks: parse raw text with the contract's types and patterns, then flag
every contract rule each row breaks.

Nothing here names a dataset's columns or rules: they come from `carrental.contracts`, and the
checks dispatch on `Rule.kind`. A checked dataset has the typed columns it keeps under their
contract names, one boolean column per rule (`violation(rule)`), REJECTED, and, if asked for,
the raw text of each column (`raw(column)`) on rejected rows.

Semantics (docs/tables.md), the same as the upload validator's (carrental.validation):
- an empty field is null; `<col>_not_null` flags it, and no other rule judges an empty value;
- `format` rules flag a non-empty value that does not parse: dates and times must match the
  contract's pattern exactly and name a real instant; INT is optionally negative digits that fit
  32 bits; MONEY has at most MONEY_PRECISION - MONEY_SCALE integer digits and MONEY_SCALE
  decimals (never rounded); DOUBLE is a finite decimal or scientific number; FLAG is 0 or 1;
- `unique`: the first row with a key, in file order, is kept; later rows with it break the rule;
- `exists`: the key must be a row of the referenced dataset that breaks none of its reject rules;
- warn rules are evaluated only on rows that break no reject rule.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from operator import or_

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental import contracts
from carrental.contracts import (
    CROSS_DATASET_KINDS,
    HOURLY_RATES,
    SINGLE_DATASET_KINDS,
    TEXT_PATTERNS,
    THROUGH_FOREIGN_KEY_KINDS,
    Dataset,
    LogicalType,
    Rule,
    RuleKind,
    Severity,
    spark_schema,
)
from carrental.spark.io import (
    BLOCK_ROW,
    BLOCK_START,
    FILE_ORDER,
    MALFORMED,
    SOURCE_FILE,
    file_order,
)
from carrental.staging import raw

REJECTED = "_rejected"  # breaks at least one reject rule

SECONDS_PER_HOUR = 3600


def violation(rule: Rule) -> str:
    """The boolean column that says whether a row breaks `rule`."""
    return f"_breaks_{rule.name}"


def rental_seconds(start: Column, end: Column) -> Column:
    """Exact duration in whole seconds (the CSV timestamps have whole seconds)."""
    return F.timestamp_diff("SECOND", start, end)


def typed_value(text: Column, column: contracts.Column, target: st.DataType) -> Column:
    """The text parsed as the column's logical type, or null when it does not parse."""
    if column.type is LogicalType.STRING:
        return text
    if column.type in (LogicalType.DATE, LogicalType.TIMESTAMP):
        # The contract's patterns are fixed width: the length check rules out the lenient
        # corners of Spark's parser. try_to_timestamp gives a session-time-zone timestamp; the
        # session is pinned to UTC, so the cast to a date / wall-clock timestamp keeps the
        # written value exactly (no daylight-saving gaps).
        parsed = F.try_to_timestamp(text, F.lit(column.pattern)).cast(target)
        return F.when(F.length(text) == len(column.pattern), parsed)
    value = F.when(text.rlike(TEXT_PATTERNS[column.type]), text.try_cast(target))
    if column.type is LogicalType.DOUBLE:  # 1e999 parses, as infinity
        return F.when(F.abs(value) < float("inf"), value)
    return value


def parse(frame: DataFrame, ds: Dataset) -> DataFrame:
    """A CSV read (`carrental.spark.io.read_dataset`) parsed: typed contract columns (same
    names), the text of each (`raw(column)`), and the reader's bookkeeping columns. The staged
    layer holds the same typed values, parsed by the upload validator (carrental.staging)."""
    typed = spark_schema(ds)
    return frame.select(
        *[typed_value(F.col(c.name), c, typed[c.name].dataType).alias(c.name) for c in ds.columns],
        *[F.col(c).alias(raw(c)) for c in ds.header],
        MALFORMED,
        SOURCE_FILE,
        BLOCK_START,
        BLOCK_ROW,
    )


def _row_check(rule: Rule) -> Column:
    """Checks that look at one row only."""
    first = rule.columns[0]
    if rule.kind is RuleKind.NOT_NULL:
        return F.col(raw(first)).isNull()
    if rule.kind is RuleKind.FORMAT:
        return F.col(raw(first)).isNotNull() & F.col(first).isNull()
    if rule.kind is RuleKind.ALLOWED:
        return F.col(raw(first)).isNotNull() & ~F.col(raw(first)).isin(*rule.values)
    if rule.kind is RuleKind.MIN_VALUE:
        return F.col(first) < F.lit(rule.minimum)
    if rule.kind is RuleKind.AFTER:
        return F.col(rule.columns[1]) <= F.col(first)
    raise ValueError(f"rule {rule.name}: kind {rule.kind!r} is not a row check")


_SEEN_BEFORE = "_seen_before"


def _unique_check(rule: Rule, seen_before: bool) -> Column:
    key = rule.columns[0]
    earlier_first = Window.partitionBy(key).orderBy(*file_order())
    repeat = F.row_number().over(earlier_first) > 1
    if seen_before:
        repeat = repeat | F.col(_SEEN_BEFORE).isNotNull()
    return F.col(key).isNotNull() & repeat


def _mark_seen_before(rows: DataFrame, key: str, earlier: DataFrame) -> DataFrame:
    """_SEEN_BEFORE on the rows whose key is one of `earlier`'s. Only the keys both have leave
    `earlier` (a scan of its key column): a day's file is not joined to the whole history."""
    keys = rows.select(key).where(F.col(key).isNotNull()).distinct()
    seen = (
        earlier.select(key)
        .join(keys, key, "left_semi")
        .distinct()
        .withColumn(_SEEN_BEFORE, F.lit(True))
    )
    return rows.join(seen, key, "left")


@dataclass
class Lookup:
    """A foreign key of an `exists` rule and what the other rules need from its target row."""

    dataset: str
    key: str
    attributes: list[str] = field(default_factory=list)


def lookups(ds: Dataset) -> dict[str, Lookup]:
    """Foreign key column -> the dataset, key and referenced columns its rules need."""
    found = {r.columns[0]: Lookup(*r.references) for r in ds.rules if r.kind is RuleKind.EXISTS}
    for rule in ds.rules:
        if rule.kind not in THROUGH_FOREIGN_KEY_KINDS:
            continue
        foreign_key, (target, attribute) = rule.via, rule.references
        lookup = found.get(foreign_key)
        if lookup is None or lookup.dataset != target:
            raise ValueError(
                f"rule {rule.name}: {foreign_key} needs an exists rule referencing {target}"
            )
        if attribute not in lookup.attributes:
            lookup.attributes.append(attribute)
    return found


def referenced_columns(datasets: Iterable[Dataset]) -> dict[str, set[str]]:
    """Dataset name -> the columns that rules of `datasets` read from it."""
    columns: dict[str, set[str]] = {}
    for ds in datasets:
        for lookup in lookups(ds).values():
            columns.setdefault(lookup.dataset, set()).update([lookup.key, *lookup.attributes])
    return columns


def _found(foreign_key: str) -> str:
    return f"_found_{foreign_key}"


def _cross_dataset_check(rule: Rule) -> Column:
    if rule.kind is RuleKind.EXISTS:
        key = rule.columns[0]
        return F.col(key).isNotNull() & F.col(_found(key)).isNull()
    if rule.kind is RuleKind.NOT_BEFORE:
        return F.col(rule.columns[0]).cast(st.DateType()) < F.col(rule.references[1])
    if rule.kind is RuleKind.REFERENCED_FLAG:
        return ~F.col(rule.references[1]).eqNullSafe(1)
    if rule.kind is RuleKind.PRICING:
        amount, start, end = rule.columns[:3]
        seconds = rental_seconds(F.col(start), F.col(end))
        rates = F.create_map(*[F.lit(v) for pair in HOURLY_RATES.items() for v in pair])
        rate = F.try_element_at(rates, F.col(rule.references[1]))
        whole_hours = F.floor(seconds / SECONDS_PER_HOUR)  # exact: seconds fit a double
        return (seconds % SECONDS_PER_HOUR != 0) | (F.col(amount) != whole_hours * rate)
    raise ValueError(f"rule {rule.name}: kind {rule.kind!r} is not a cross-dataset check")


def _join_lookups(
    rows: DataFrame, ds: Dataset, valid: Mapping[str, DataFrame], broadcast: Collection[str]
) -> DataFrame:
    """Left-join each foreign key to the valid rows of its dataset, adding the referenced
    columns the rules need under their own names and `_found(<foreign key>)`."""
    for foreign_key, lookup in lookups(ds).items():
        clash = [a for a in lookup.attributes if a in rows.columns]
        if clash:
            raise ValueError(f"{ds.name}: referenced columns {clash} clash with its own columns")
        target_key = f"_key_{foreign_key}"
        target = valid[lookup.dataset].select(
            F.col(lookup.key).alias(target_key),
            *lookup.attributes,
            F.lit(True).alias(_found(foreign_key)),
        )
        if lookup.dataset in broadcast:
            target = F.broadcast(target)
        rows = rows.join(target, F.col(foreign_key) == F.col(target_key), "left").drop(target_key)
    return rows


def _conclude(flagged: DataFrame, ds: Dataset, keep: Collection[str], keep_raw: bool) -> DataFrame:
    """REJECTED; warn flags only on kept rows; raw text only on rejected rows; of the typed
    (and referenced) columns only the primary key and those in `keep`."""
    rejected = reduce(
        or_, [F.col(violation(r)) for r in ds.rules if r.severity is Severity.REJECT], F.lit(False)
    )
    flags = [
        (
            F.col(violation(r))
            if r.severity is Severity.REJECT
            else F.col(violation(r)) & ~rejected
        ).alias(violation(r))
        for r in ds.rules
    ]
    texts = [F.when(rejected, F.col(raw(c))).alias(raw(c)) for c in ds.header] if keep_raw else []
    return flagged.select(
        *[c for c in flagged.columns if c in keep or c == ds.primary_key],
        *texts,
        MALFORMED,
        *FILE_ORDER,
        *flags,
        rejected.alias(REJECTED),
    )


def check_dataset(
    parsed: DataFrame,
    ds: Dataset,
    *,
    keep: Collection[str],
    keep_raw: bool = False,
    valid: Mapping[str, DataFrame] | None = None,
    broadcast: Collection[str] = (),
    earlier: DataFrame | None = None,
) -> DataFrame:
    """Flag every rule of `ds` on `parsed` (typed columns, raw(<column>) texts, MALFORMED and
    FILE_ORDER: a staged read, or a numbered `parse` of a CSV read; carrental.spark.sources).

    The result has the primary key, the typed columns (and columns referenced from other
    datasets) named in `keep`, with `keep_raw` the raw text of rejected rows, the reader's
    bookkeeping columns, one flag per rule and REJECTED. Rules referencing other datasets need
    those datasets' valid rows in `valid` (`valid_rows`); the ones named in `broadcast` are
    shipped to every task. `earlier`: the rows of files before these ones (their primary key
    column), whose keys a row must not repeat either.
    """
    unknown = {r.kind for r in ds.rules} - SINGLE_DATASET_KINDS - CROSS_DATASET_KINDS
    if unknown:
        raise ValueError(f"{ds.name}: no Spark check for rule kinds {sorted(unknown)}")
    row_rules = [r for r in ds.rules if r.single_dataset and r.kind is not RuleKind.UNIQUE]
    later_rules = [r for r in ds.rules if not r.single_dataset or r.kind is RuleKind.UNIQUE]
    needed = set(keep) | {c for r in later_rules for c in r.columns}
    flagged = (
        parsed.withColumns(
            {violation(r): F.coalesce(_row_check(r), F.lit(False)) for r in row_rules}
        )
        # narrow the rows before the shuffle of the unique check
        .select(
            *[c.name for c in ds.columns if c.name in needed],
            *([raw(c) for c in ds.header] if keep_raw else []),
            MALFORMED,
            *FILE_ORDER,
            *[violation(r) for r in row_rules],
        )
    )
    if earlier is not None:
        flagged = _mark_seen_before(flagged, ds.primary_key, earlier)
    flagged = flagged.withColumns(
        {
            violation(r): F.coalesce(_unique_check(r, earlier is not None), F.lit(False))
            for r in ds.rules
            if r.kind is RuleKind.UNIQUE
        }
    )
    if any(not r.single_dataset for r in ds.rules):
        flagged = _join_lookups(flagged, ds, valid or {}, broadcast).withColumns(
            {
                violation(r): F.coalesce(_cross_dataset_check(r), F.lit(False))
                for r in ds.rules
                if not r.single_dataset
            }
        )
    return _conclude(flagged, ds, keep, keep_raw)


def valid_rows(checked: DataFrame) -> DataFrame:
    """The rows that break no reject rule: the ones the metrics and the lookups use."""
    return checked.filter(~F.col(REJECTED))
