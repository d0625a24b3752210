"""The checked layer: every input file's rows as a run's rule checks left them, kept so that a
later run in the same context reuses them instead of checking the file again.

A run checks every rule on every row of the whole rental history (docs/architecture.md). Most
of that work repeats from one day to the next: yesterday's files, checked against the same
snapshots, give the same flags today. What a file's checked rows depend on is its *context*:

- a snapshot file (vehicles, locations, users): its content only (their rules read no other
  dataset);
- a rentals file: its key and content, the three snapshots' contents, the reject threshold, and
  the keys and contents of every history file before it, in order (rental ids must not repeat
  an earlier file's; an earlier file held back by the gate changes what counts as a repeat).
  Whether the gate holds the file back is then a function of the context too.

Both also depend on the contracts, the pricing and the code that stages and checks rows:
`fingerprint` covers them (the code by its source text, so a deployment of changed code never
reads what older code wrote). The
entry of a file is named by the SHA-256 of its context, so an entry can only ever be read for
the context it was written in, and a run reuses the longest prefix of its history whose entries
are complete, and checks the rest (carrental.spark.jobs).

    <root>/checked/v1/<dataset>/rows/<write>/entry=<entry>/…       the checked rows (Parquet)
    <root>/checked/v1/aggregates/rows/<write>/entry=<entry>/…      the KPI aggregates of the
                                                                   history up to that file
    <root>/checked/v1/<dataset>/complete/<entry>.<status>.<write>  written after the data

`<write>` is unique per write (the run id and a random part): data is only ever added under a
new name, never overwritten or renamed, so a crash mid-write leaves a folder that no marker
names, which is never read (S3 has no atomic rename; this needs none) and is removed by the
failed run (`discard_local`) or, if it was killed, by the next prune. The marker's name carries
the file's status at run time (used or held back) and where its data is, so one listing per
dataset tells a run everything it needs to plan.

Standard library only: the local lake prunes entries without Spark.
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from carrental import lake
from carrental.contracts import DATASETS, HOURLY_RATES
from carrental.inputs import (
    HELD_BACK,
    HISTORY_DATASET,
    SNAPSHOT_DATASETS,
    USED,
    InputFile,
    Manifest,
)

CHECKED = "checked/v1"
# The KPI aggregates of the history up to a rentals file (carrental.spark.transforms), kept under
# that file's entry name like a dataset's checked rows.
AGGREGATES = "aggregates"
LAYER_DATASETS = (*DATASETS, AGGREGATES)
ROWS, COMPLETE = "rows", "complete"
STATUSES = (USED, HELD_BACK)
# The modules whose code decides what an entry holds (staged values, rule flags, the gate, the
# aggregates and how entries are named, written and read), by path in the package: read as
# package resources, so that they are found in EMR's --py-files archive too, and without
# importing Spark.
CHECK_CODE = (
    "contracts.py",
    "tables.py",  # the aggregates' amount types
    "staging.py",
    "checked.py",
    "spark/io.py",
    "spark/rules.py",
    "spark/sources.py",
    "spark/jobs.py",
    "spark/transforms.py",
)
ENTRY_PARTITION = "entry"


@functools.cache
def fingerprint() -> str:
    """Identifies the rules a check applies: the contracts, the pricing and the check code."""
    digest = hashlib.sha256(repr((sorted(DATASETS.items()), sorted(HOURLY_RATES.items()))).encode())
    package = resources.files("carrental")
    for path in CHECK_CODE:
        digest.update(b"\0" + path.encode() + b"\0" + package.joinpath(path).read_bytes())
    return digest.hexdigest()


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def snapshot_entry(file: InputFile) -> str:
    """A snapshot's context is its content alone: true while its rules read no other dataset."""
    if not all(rule.single_dataset for rule in DATASETS[file.dataset].rules):
        raise ValueError(f"{file.dataset}: a rule reads another dataset; its context must name it")
    return _digest("snapshot", fingerprint(), file.dataset, file.sha256)


def history_entries(manifest: Manifest) -> list[tuple[InputFile, str]]:
    """Each history file of the manifest, in order, with the name of its entry."""
    snapshots = [f"{f.dataset}={f.sha256}" for name in SNAPSHOT_DATASETS for f in manifest.of(name)]
    context = _digest("history", fingerprint(), repr(manifest.reject_threshold), *snapshots)
    entries = []
    for file in manifest.of(HISTORY_DATASET):
        context = _digest(context, file.key, file.sha256)
        entries.append((file, context))
    return entries


def manifest_entries(manifest: Manifest) -> dict[str, set[str]]:
    """Dataset -> the entries a run of this manifest reads or writes."""
    entries = {name: {snapshot_entry(f) for f in manifest.of(name)} for name in SNAPSHOT_DATASETS}
    history = [entry for _, entry in history_entries(manifest)]
    entries[HISTORY_DATASET] = set(history)
    # a run reads the aggregates up to the end of an earlier run's history, and writes its own
    entries[AGGREGATES] = set(history[-1:])
    return entries


def new_write(run_id: str) -> str:
    """A name for one write of entries, never used before."""
    return f"{lake.check_run_id(run_id)}-{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class Marker:
    """A complete entry: its name, the file's status in that context, and where its data is."""

    entry: str
    status: str
    write: str

    @property
    def name(self) -> str:
        return f"{self.entry}.{self.status}.{self.write}"

    @classmethod
    def parse(cls, name: str) -> Marker | None:
        """None for a name that is no marker (say, a file an editor left)."""
        parts = name.split(".", 2)
        if len(parts) != 3 or len(parts[0]) != 64 or parts[1] not in STATUSES:
            return None
        if not lake.RUN_ID_PATTERN.match(parts[2]):
            return None
        return cls(*parts)


def dataset_prefix(root: str, dataset: str) -> str:
    return lake.join(root, CHECKED, dataset)


def marker_path(root: str, dataset: str, marker: Marker) -> str:
    return lake.join(dataset_prefix(root, dataset), COMPLETE, marker.name)


def data_path(root: str, dataset: str, marker: Marker) -> str:
    """Where an entry's rows are."""
    return lake.join(
        dataset_prefix(root, dataset), ROWS, marker.write, f"{ENTRY_PARTITION}={marker.entry}"
    )


def prune_local(root: Path, keep: Iterable[Manifest]) -> None:
    """Delete the entries that no manifest in `keep` names (its marker first, so that an entry
    is never complete without all its data), then every data folder no marker names (partial
    writes included). Called under the run lock: no run writes entries meanwhile."""
    wanted: dict[str, set[str]] = {name: set() for name in LAYER_DATASETS}
    for manifest in keep:
        for name, entries in manifest_entries(manifest).items():
            wanted[name] |= entries
    for name in LAYER_DATASETS:
        folder = Path(dataset_prefix(str(root), name))
        named: set[tuple[str, str]] = set()
        complete = folder / COMPLETE
        for path in sorted(complete.iterdir()) if complete.is_dir() else []:
            marker = Marker.parse(path.name)
            if marker is None or marker.entry not in wanted[name]:
                path.unlink(missing_ok=True)
            else:
                named.add((marker.write, f"{ENTRY_PARTITION}={marker.entry}"))
        rows = folder / ROWS
        for write in sorted(rows.iterdir()) if rows.is_dir() else []:
            for data in sorted(write.iterdir()) if write.is_dir() else [write]:
                if (write.name, data.name) not in named:
                    _remove(data)
            if write.is_dir() and not any(write.iterdir()):
                write.rmdir()


def written_by(write: str, run_id: str) -> bool:
    """Whether `write` (a `new_write` name) is one of run `run_id`'s."""
    owner, _, suffix = write.rpartition("-")
    return owner == run_id and len(suffix) == 12


def discard_local(root: Path, run_id: str) -> None:
    """Delete what a run that failed added to the layer (its markers first, then its data): on
    a full disk its partial writes would otherwise keep the room until the next prune."""
    for name in LAYER_DATASETS:
        folder = Path(dataset_prefix(str(root), name))
        complete = folder / COMPLETE
        for path in sorted(complete.iterdir()) if complete.is_dir() else []:
            marker = Marker.parse(path.name)
            if marker is not None and written_by(marker.write, run_id):
                path.unlink(missing_ok=True)
        rows = folder / ROWS
        for write in sorted(rows.iterdir()) if rows.is_dir() else []:
            if written_by(write.name, run_id):
                _remove(write)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
