"""The two jobs: extract (read and check the four datasets, gate the rental files) -> pure
transforms -> load.

Both jobs check the whole batch the same way, so they agree on which rental files and rows are
valid; user_transaction_analysis also writes the batch's rejects, data quality and inputs.

The run-time gate: a rentals file whose rows break reject rules (foreign keys and repeats of an
earlier file's rental ids included: what the upload validator cannot see) in a share above the
reject threshold is *held back*: left out of the run entirely, recorded in run_inputs with the
reason, and quarantined by whoever publishes the run. Taking a file out can only lower the
other files' counts (their rows may have repeated its ids), so one re-check settles it.

Checked entries (carrental.checked): a run over a lake's staged files that keeps a checked layer
(StagedInputs.keep_checked: the local runner's runs, not the EMR jobs') reuses what earlier runs
checked in the same context, a snapshot by its content, the longest prefix of the rental history
whose entries are complete, and checks only the rest: a day's new file against the current
snapshots and, for repeated rental ids, against a scan of the history's rental_id column. Its
tables are then computed from the union, so they are those of a run that checked everything
(tests/spark/test_checked.py). Only CHECKED_ENTRIES_WRITER writes the entries a batch checked,
so that two jobs sharing a layer never write the same entry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import reduce

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as st

from carrental import checked as checked_layer
from carrental import lake, tables
from carrental.contracts import DATASETS, RENTAL_TRANSACTIONS, Severity
from carrental.inputs import HELD_BACK, SNAPSHOT_DATASETS, USED
from carrental.spark import transforms
from carrental.spark.io import (
    FILE_INDEX,
    FILE_ORDER,
    MALFORMED,
    ROW_NUMBER,
    SOURCE_FILE,
    CheckedLayer,
    malformed_rows_error,
    write_table,
)
from carrental.spark.rules import (
    REJECTED,
    check_dataset,
    raw,
    referenced_columns,
    valid_rows,
    violation,
)
from carrental.spark.sources import CsvInputs, StagedInputs

# Dimension lookups are shipped whole to every task instead of shuffling the rentals: even at
# --scale 500 the largest (vehicle_id, vehicle_type of 2.4 M vehicles) is about 140 MB.
BROADCAST_DATASETS = frozenset({"vehicles", "locations", "users"})
# The columns of each checked dataset that the output tables use (carrental.spark.transforms),
# beside the keys and columns that other datasets' rules read (carrental.spark.rules).
OUTPUT_COLUMNS = {
    "vehicles": {"vehicle_type"},
    "locations": {"location_name", "city", "state"},
    "users": {"first_name", "last_name", "email"},
    RENTAL_TRANSACTIONS.name: {
        "user_id",
        "vehicle_id",
        "rental_start_time",
        "rental_end_time",
        "pickup_location",
        "total_amount",
        "vehicle_type",
    },
}
# Rows listed per rule in a held-back file's reason (and malformed rows in an error), at most.
EXAMPLE_ROWS = 5
MALFORMED_EXAMPLES = 10
# Rejected rows get their text back by a join with the rows as read: shipped to every task up to
# this many rows (about 100 bytes each), else joined by a shuffle.
BROADCAST_REJECTED_ROWS = 100_000
# New rentals whose vehicles and users are shipped to every task to find the earlier rentals of
# the same vehicles and users (a day's file against a long history), up to this many.
BROADCAST_NEW_RENTALS = 1_000_000
# The job that writes checked entries (the lighter of the two: three tables).
CHECKED_ENTRIES_WRITER = tables.VEHICLE_LOCATION_PERFORMANCE
# Tables (and entries) written at the same time: Spark runs the jobs side by side, so one
# table's planning and small final stages overlap another's work.
PARALLEL_WRITES = 4

Source = StagedInputs | CsvInputs
RENTALS = RENTAL_TRANSACTIONS.name


@dataclass(frozen=True)
class InputStatus:
    """One input file as the run saw it (a row of run_inputs)."""

    dataset: str
    source_file: str
    rows: int
    rejected_rows: int
    status: str  # USED or HELD_BACK
    reason: str
    content_sha256: str | None = None
    accepted_at: str | None = None


@dataclass
class CheckedBatch:
    """Every row the run uses of the four datasets with its rule flags (rental rows with their
    text where they are rejected), the status of every input file, and the checked entries the
    run adds, to be written by CHECKED_ENTRIES_WRITER. Both jobs can share one (see
    `check_batch`); its creator unpersists it."""

    source: Source
    checked: dict[str, DataFrame]
    inputs: list[InputStatus]
    rentals_as_read: DataFrame  # checked[rental_transactions] with the text of rejected rows
    aggregates: DataFrame  # of the used rentals (carrental.spark.transforms.rental_aggregates)
    entry_writes: list[Callable[[], None]] = field(default_factory=list)
    cached: list[DataFrame] = field(default_factory=list)

    def valid(self, dataset: str) -> DataFrame:
        return valid_rows(self.checked[dataset])

    @property
    def held_back(self) -> list[InputStatus]:
        return [s for s in self.inputs if s.status == HELD_BACK]

    def unpersist(self) -> None:
        for frame in self.cached:
            frame.unpersist()


def _check(
    spark: SparkSession,
    source: Source,
    name: str,
    checked: Mapping[str, DataFrame],
    *,
    exclude: frozenset[str] = frozenset(),
    start: int = 0,
    earlier: DataFrame | None = None,
) -> DataFrame:
    ds = DATASETS[name]
    referenced = referenced_columns(DATASETS.values())
    return check_dataset(
        source.parsed(spark, ds, exclude, start),
        ds,
        keep=referenced.get(name, set()) | OUTPUT_COLUMNS[name],
        valid={other: valid_rows(frame) for other, frame in checked.items()},
        broadcast=BROADCAST_DATASETS,
        earlier=earlier,
    )


def _file_counts(frames: Sequence[tuple[str, DataFrame]]) -> list:
    """(dataset, file, rows, rejected rows, malformed rows) of every file: one pass over every
    frame (one shuffle for all), which also fills the caches."""
    rows = [
        frame.select(
            F.lit(name).alias("dataset"),
            F.col(SOURCE_FILE).alias("file"),
            F.col(REJECTED).alias("rejected"),
            F.col(MALFORMED).isNotNull().alias("malformed"),
        )
        for name, frame in frames
    ]
    return (
        reduce(DataFrame.unionByName, rows)
        .groupBy("dataset", "file")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count_if("rejected").alias("rejected"),
            F.count_if("malformed").alias("malformed"),
        )
        .collect()
    )


def _over_threshold(rows: int, rejected: int, threshold: float) -> bool:
    # the upload validator's rule: accepted while rejected / rows <= threshold
    return rows > 0 and rejected / rows > threshold


def _held_back_reason(rentals: DataFrame, file: str, rows: int, rejected: int, threshold: float):
    """Why a file is held back: its share of rejected rows and, per broken reject rule, the
    count and the first rows (a few small jobs, only for a held-back file)."""
    of_file = rentals.filter(F.col(SOURCE_FILE) == file)
    rules = [r for r in RENTAL_TRANSACTIONS.rules if r.severity is Severity.REJECT]
    counts = of_file.agg(*[F.count_if(violation(r)).alias(r.name) for r in rules]).first()
    broken = []
    for rule in rules:
        if counts[rule.name]:
            first = of_file.filter(F.col(violation(rule))).orderBy(ROW_NUMBER).limit(EXAMPLE_ROWS)
            numbers = ", ".join(str(r[ROW_NUMBER]) for r in first.select(ROW_NUMBER).collect())
            more = ", …" if counts[rule.name] > EXAMPLE_ROWS else ""
            broken.append(f"{rule.name} {counts[rule.name]:,} (rows {numbers}{more})")
    return (
        f"held back: {rejected:,} of {rows:,} rows ({rejected / rows:.1%}) break a reject rule "
        f"at run time, more than the {threshold:.1%} allowed: " + "; ".join(broken)
    )


def _as_read(
    checked: DataFrame, parsed: DataFrame, rejected_rows: int, cached: list[DataFrame]
) -> DataFrame:
    """`checked` with the text of every contract column as read (raw(<column>)) on its
    rejected rows, null on the others: rental_rejects shows rows as read. The texts are looked
    up for the rejected rows only (and kept), so they never travel with the valid ones."""
    texts = [raw(c) for c in RENTAL_TRANSACTIONS.header]
    if not rejected_rows:
        return checked.withColumns({t: F.lit(None).cast(st.StringType()) for t in texts})
    order = list(FILE_ORDER)
    small = rejected_rows <= BROADCAST_REJECTED_ROWS
    rejected = checked.filter(F.col(REJECTED)).select(*order)
    found = _cache(
        parsed.select(*order, *texts).join(
            F.broadcast(rejected) if small else rejected, order, "left_semi"
        ),
        cached,
    )
    return checked.join(F.broadcast(found) if small else found, order, "left")


def _cache(frame: DataFrame, cached: list[DataFrame]) -> DataFrame:
    cached.append(frame.cache())
    return frame


@dataclass
class _History:
    """The rental history as the checked layer knows it: its files in order with the names of
    their entries, and the markers of the longest prefix of them that earlier runs completed.
    Without a layer (CSV inputs) nothing is known before the files are read."""

    files: list = field(default_factory=list)  # InputFile, in history order
    entries: list[str] = field(default_factory=list)
    prefix: list[checked_layer.Marker] = field(default_factory=list)

    @classmethod
    def of(cls, source: Source, layer: CheckedLayer | None) -> _History:
        if layer is None:
            return cls()
        listed = checked_layer.history_entries(source.manifest)
        markers = layer.markers(RENTALS)
        prefix = []
        for _, entry in listed:
            if entry not in markers:
                break
            prefix.append(markers[entry])
        return cls([f for f, _ in listed], [e for _, e in listed], prefix)

    @property
    def start(self) -> int:
        """The place of the first file to check."""
        return len(self.prefix)

    def prefix_files(self, status: str) -> set[str]:
        return {f.key for f, m in zip(self.files, self.prefix, strict=False) if m.status == status}

    def checked_now(self) -> set[str]:
        """The keys of the files to check (after the prefix)."""
        return {f.key for f in self.files[self.start :]}


def _dimensions(
    spark: SparkSession,
    source: Source,
    layer: CheckedLayer | None,
    cached: list[DataFrame],
    writes: list[Callable[[], None]],
) -> dict[str, DataFrame]:
    """The checked snapshots: read from their entries, or checked (and their entries written)."""
    dims: dict[str, DataFrame] = {}
    run_id = source.manifest.run_id if layer else ""
    for name in SNAPSHOT_DATASETS:
        entry = checked_layer.snapshot_entry(source.manifest.of(name)[0]) if layer else None
        marker = layer.markers(name).get(entry) if layer else None
        if marker is not None:
            dims[name] = layer.read(name, [marker])
            continue
        dims[name] = _cache(_check(spark, source, name, dims), cached)
        if layer:
            rows = dims[name].withColumn(checked_layer.ENTRY_PARTITION, F.lit(entry))
            writes.append(lambda n=name, r=rows, e=entry: layer.write(n, r, {e: USED}, run_id))
    return dims


def _raise_on_malformed(counts: list, checked: Mapping[str, DataFrame | None]) -> None:
    for name in DATASETS:
        if any(c["malformed"] for c in counts if c["dataset"] == name):
            examples = (
                checked[name]
                .filter(F.col(MALFORMED).isNotNull())
                .select(SOURCE_FILE, ROW_NUMBER, MALFORMED)
                .orderBy(SOURCE_FILE, ROW_NUMBER)
                .limit(MALFORMED_EXAMPLES)
                .collect()
            )
            raise malformed_rows_error(examples, DATASETS[name])


def _history_write(
    layer: CheckedLayer,
    source: StagedInputs,
    history: _History,
    used: DataFrame,
    first: DataFrame,
    held: set[str],
) -> Callable[[], None]:
    """The write of the entries of the files checked now: the rows of a used file as the run
    uses them, those of a held-back file as the gate judged them (no texts: they show nowhere)."""
    checked_now = list(range(history.start, len(history.files)))
    by_index = F.create_map(*[F.lit(v) for i in checked_now for v in (i, history.entries[i])])
    texts = {raw(c): F.lit(None).cast(st.StringType()) for c in RENTAL_TRANSACTIONS.header}
    held_rows = first.filter(F.col(SOURCE_FILE).isin(*held)).withColumns(texts)
    rows = used.unionByName(held_rows) if held else used
    rows = rows.withColumn(checked_layer.ENTRY_PARTITION, F.element_at(by_index, F.col(FILE_INDEX)))
    statuses = {
        history.entries[i]: HELD_BACK if history.files[i].key in held else USED for i in checked_now
    }
    run_id = source.manifest.run_id
    return lambda: layer.write(RENTALS, rows, statuses, run_id)


@dataclass
class _CheckedHistory:
    used: DataFrame  # the checked rows of the used rental files
    as_read: DataFrame  # the same with the text of rejected rows
    aggregates: DataFrame
    counts: list  # per input file, those that decided its status
    reasons: dict[str, str]  # why each held-back file was held back


def _aggregates(
    layer: CheckedLayer | None,
    history: _History,
    used_before: DataFrame | None,
    checked_now: DataFrame | None,
    rows_now: int,
    cached: list[DataFrame],
    writes: list[Callable[[], None]],
    run_id: str,
) -> DataFrame:
    """The KPI aggregates of the used rentals: those the layer kept for the prefix merged with
    those of the rentals checked now (whose distinct pairs are counted only if the prefix does
    not have them), or, without kept aggregates, those of every used rental."""
    before = None
    if layer is not None and history.prefix:
        marker = layer.markers(checked_layer.AGGREGATES).get(history.entries[history.start - 1])
        before = layer.read(checked_layer.AGGREGATES, [marker]) if marker else None
    now = transforms.valid_rentals(checked_now) if checked_now is not None else None
    earlier = transforms.valid_rentals(used_before) if used_before is not None else None
    if before is not None and now is not None:
        small = rows_now <= BROADCAST_NEW_RENTALS
        parts = [before, transforms.rental_aggregates(now, earlier, broadcast_keys=small)]
    elif before is not None:
        parts = [before]
    else:
        rows = reduce(DataFrame.unionByName, [f for f in (earlier, now) if f is not None])
        parts = [transforms.rental_aggregates(rows)]
    aggregates = _cache(transforms.merge_aggregates(*parts), cached)
    last = history.entries[-1] if history.entries else None
    if layer is not None and (now is not None or before is None):
        rows = aggregates.withColumn(checked_layer.ENTRY_PARTITION, F.lit(last))
        writes.append(lambda: layer.write(checked_layer.AGGREGATES, rows, {last: USED}, run_id))
    return aggregates


def _check_history(
    spark: SparkSession,
    source: Source,
    layer: CheckedLayer | None,
    dims: dict[str, DataFrame],
    cached: list[DataFrame],
    writes: list[Callable[[], None]],
) -> _CheckedHistory:
    """The used rental files checked, gated and aggregated. The cached prefix is read; the
    rest is checked (against the prefix's rental ids), gated, and, if a file is held back or
    was before, checked again without the held-back files."""
    threshold = source.reject_threshold
    history = _History.of(source, layer)
    used_markers = [m for m in history.prefix if m.status == USED]
    held_markers = [m for m in history.prefix if m.status == HELD_BACK]
    used_before = layer.read(RENTALS, used_markers) if used_markers else None
    held_before = layer.read(RENTALS, held_markers) if held_markers else None
    before = [f for f in (used_before, held_before) if f is not None]
    all_before = reduce(DataFrame.unionByName, before) if before else None
    first = None
    if layer is None or history.start < len(history.files):
        first = _cache(
            _check(spark, source, RENTALS, dims, start=history.start, earlier=all_before), cached
        )
    frames = [*dims.items(), *((RENTALS, f) for f in (*before, first) if f is not None)]
    counts = _file_counts(frames)
    _raise_on_malformed(counts, {**dims, RENTALS: first})
    to_check = history.checked_now()
    new = [
        c for c in counts if c["dataset"] == RENTALS and (layer is None or c["file"] in to_check)
    ]
    held_now = {c["file"] for c in new if _over_threshold(c["rows"], c["rejected"], threshold)}
    final, final_counts = first, new
    if held_now or held_markers:
        final = _cache(
            _check(
                spark,
                source,
                RENTALS,
                dims,
                exclude=frozenset(held_now),
                start=history.start,
                earlier=used_before,
            ),
            cached,
        )
        final_counts = _file_counts([(RENTALS, final)])
    final_as_read = None
    if final is not None:
        rejected = sum(c["rejected"] for c in final_counts)
        parsed = source.parsed(spark, RENTAL_TRANSACTIONS, frozenset(held_now), history.start)
        final_as_read = _as_read(final, parsed, rejected, cached)
        if layer:
            writes.append(_history_write(layer, source, history, final_as_read, first, held_now))
    held_before_files = history.prefix_files(HELD_BACK)
    reasons = {
        c["file"]: _held_back_reason(
            first if c["file"] in held_now else held_before,
            c["file"],
            c["rows"],
            c["rejected"],
            threshold,
        )
        for c in counts
        if c["dataset"] == RENTALS and c["file"] in held_now | held_before_files
    }
    # per file: the counts that decided (held back: the first check), or those of the rows used
    checked_now = {c["file"] for c in new}
    decided = [
        c for c in counts if c["dataset"] != RENTALS or c["file"] not in checked_now - held_now
    ]
    decided += final_counts
    texts = [raw(c) for c in RENTAL_TRANSACTIONS.header]
    used = [f for f in (used_before, final) if f is not None]
    if used_before is not None:  # its entries keep the text of rejected rows
        used[0] = used_before.drop(*texts)
    as_read = [f for f in (used_before, final_as_read) if f is not None]
    run_id = source.manifest.run_id if layer else ""
    rows_now = sum(c["rows"] for c in final_counts)
    aggregates = _aggregates(layer, history, used_before, final, rows_now, cached, writes, run_id)
    return _CheckedHistory(
        reduce(DataFrame.unionByName, used),
        reduce(DataFrame.unionByName, as_read),
        aggregates,
        decided,
        reasons,
    )


def check_batch(spark: SparkSession, source: Source) -> CheckedBatch:
    """Read and check the four datasets of `source`, then gate the rental files. Datasets that
    others reference are checked first. What a lake's checked layer holds for this context is
    read instead of checked (carrental.checked). Fails with InputError if a file has rows that
    cannot be split into the header's columns (only a CSV read can meet one).

    A process that runs both jobs on one batch (the local runner) can check it once and pass
    it to both: ``batch = check_batch(spark, source)``, ``run_...(..., batch=batch)``, then
    ``batch.unpersist()``."""
    layer = source.checked_layer(spark)
    cached: list[DataFrame] = []
    writes: list[Callable[[], None]] = []
    try:
        dims = _dimensions(spark, source, layer, cached, writes)
        history = _check_history(spark, source, layer, dims, cached, writes)
    except BaseException:
        for frame in cached:
            frame.unpersist()
        raise
    return CheckedBatch(
        source,
        {**dims, RENTALS: history.used},
        _statuses(source, history.counts, history.reasons),
        history.as_read,
        history.aggregates,
        writes,
        cached,
    )


def _statuses(source: Source, counts: list, held: Mapping[str, str]) -> list[InputStatus]:
    described = source.described()
    order = {key: i for i, key in enumerate(described)}
    statuses = []
    for c in sorted(counts, key=lambda c: (order.get(c["file"], len(order)), c["file"])):
        known = described.get(c["file"])
        statuses.append(
            InputStatus(
                dataset=c["dataset"],
                source_file=c["file"],
                rows=c["rows"],
                rejected_rows=c["rejected"],
                status=HELD_BACK if c["file"] in held else USED,
                reason=held.get(c["file"], ""),
                content_sha256=known.sha256 if known else None,
                accepted_at=known.accepted_at if known else None,
            )
        )
    return statuses


def _in_parallel(writes: Sequence[Callable[[], object]]) -> list:
    """Run the writes side by side; every one is waited for, then the first error is raised."""
    with ThreadPoolExecutor(max_workers=PARALLEL_WRITES) as pool:
        futures = [pool.submit(write) for write in writes]
    errors = [f.exception() for f in futures if f.exception() is not None]
    if errors:
        raise errors[0]
    return [f.result() for f in futures]


def _write_job_tables(
    job: str, frames: Mapping[str, DataFrame], output: str, run_id: str, batch: CheckedBatch
) -> dict[str, int]:
    expected = [t for t, writer in lake.TABLES.items() if writer == job]
    if sorted(frames) != sorted(expected):
        raise ValueError(f"{job} must write {expected}, not {sorted(frames)}")
    names = list(frames)
    writes: list[Callable[[], object]] = [
        lambda name=name: write_table(frames[name], output, name, run_id) for name in names
    ]
    if job == CHECKED_ENTRIES_WRITER:
        writes += batch.entry_writes
        batch.entry_writes = []
    return dict(zip(names, _in_parallel(writes), strict=False))


def _run(
    spark: SparkSession,
    source: Source,
    output: str,
    run_id: str,
    job: str,
    build_tables: Callable[[SparkSession, CheckedBatch], dict[str, DataFrame]],
    batch: CheckedBatch | None,
) -> dict[str, int]:
    lake.check_run_id(run_id)  # before any work: it becomes a folder name
    if batch is not None and batch.source != source:
        raise ValueError(f"{job}: the batch was checked from {batch.source}, not {source}")
    owned = batch is None
    checked = check_batch(spark, source) if batch is None else batch
    try:
        return _write_job_tables(job, build_tables(spark, checked), output, run_id, checked)
    finally:
        if owned:
            checked.unpersist()


def _vehicle_location_tables(spark: SparkSession, batch: CheckedBatch) -> dict[str, DataFrame]:
    aggregates = batch.aggregates
    return {
        "location_performance": transforms.location_performance_of(
            aggregates, batch.valid("locations")
        ),
        "vehicle_type_performance": transforms.vehicle_type_performance_of(aggregates),
        "location_vehicle_type_performance": (
            transforms.location_vehicle_type_performance_of(aggregates)
        ),
    }


def _user_transaction_tables(spark: SparkSession, batch: CheckedBatch) -> dict[str, DataFrame]:
    aggregates = batch.aggregates
    return {
        "rental_rejects": transforms.rental_rejects(batch.rentals_as_read),
        "data_quality": transforms.data_quality(batch.checked),
        "user_metrics": transforms.user_metrics_of(aggregates, batch.valid("users")),
        "daily_metrics": transforms.daily_metrics_of(aggregates),
        "business_summary": transforms.business_summary_of(aggregates),
        "run_inputs": transforms.run_inputs(spark, batch.inputs),
    }


# Each job's tables, built from a checked batch; carrental.tables says which tables each writes.
JOBS: dict[str, Callable[[SparkSession, CheckedBatch], dict[str, DataFrame]]] = {
    tables.VEHICLE_LOCATION_PERFORMANCE: _vehicle_location_tables,
    tables.USER_TRANSACTION_ANALYSIS: _user_transaction_tables,
}


def run_job(
    job: str,
    spark: SparkSession,
    source: Source,
    output: str,
    run_id: str,
    *,
    batch: CheckedBatch | None = None,
) -> dict[str, int]:
    """Write the tables of `job` (carrental.tables) of `run_id` under `output` (the processed
    prefix). Returns each table's row count. `batch`: an already checked batch of the same
    `source`. CHECKED_ENTRIES_WRITER also writes the checked entries the batch adds."""
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r} (jobs: {', '.join(JOBS)})")
    return _run(spark, source, output, run_id, job, JOBS[job], batch)
