"""What a run reads: the lake's accepted inputs, and the manifest that freezes them for one run.

Inputs (docs/architecture.md, "Inputs"):
- **Rental history**: every accepted rentals file is part of it. A file accepted under the key
  of an earlier one replaces it (a correction); identical content changes nothing. History
  order, which decides which row of a rental id repeated across files is kept (the first one,
  as within a file), is the order in which the keys were first accepted, then the key.
- **Snapshots**: for vehicles, locations and users the latest accepted file is the current one.

A `Manifest` lists exactly the files one run reads, by content (SHA-256) and staged Parquet
path, snapshots first, then the history in order. It is written to ``runs/<run_id>/manifest.json``
before the Spark jobs start, and the jobs read only what it lists: a rerun of the same manifest
gives the same tables. Its `fingerprint` identifies the content of the inputs, so that an
identical re-upload (same content, any key for a snapshot) starts no new run.

The same objects serve both paths: the local lake keeps them in ``<lake>/inputs.json``
(carrental.local.store) and the AWS stack in its DynamoDB table (lambdas/).

Standard library only: imported on Lambda and EMR Serverless.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace

from carrental import lake
from carrental.contracts import DATASETS, RENTAL_TRANSACTIONS

HISTORY_DATASET = RENTAL_TRANSACTIONS.name
SNAPSHOT_DATASETS = tuple(name for name in DATASETS if name != HISTORY_DATASET)
MANIFEST_VERSION = 1


# run_inputs.status: a file the run used, or one its gate left out (carrental.spark.jobs).
USED, HELD_BACK = "used", "held_back"


def held_back_report(run_id: str, row: Mapping, version_id: str | None = None) -> dict:
    """The error report quarantined beside a file a run's gate held back, on both paths;
    `row` is the file's row of run_inputs."""
    return {
        "source": row["source_file"],
        "dataset": row["dataset"],
        "verdict": HELD_BACK,
        "accepted": False,
        "run_id": run_id,
        "rows": int(row["rows"]),
        "rejected_rows": int(row["rejected_rows"]),
        "sha256": row["content_sha256"],
        "version_id": version_id,
        "reason": row["reason"],
    }


class MissingInputs(ValueError):
    """A dataset has no accepted file yet: there is nothing to run on."""


@dataclass(frozen=True)
class InputFile:
    dataset: str
    key: str  # raw/<dataset>/<name>: the S3 key, or the path in the local lake
    sha256: str  # of the file's bytes, as validated
    rows: int
    accepted_at: str  # ISO 8601, UTC
    # When this key was first accepted: the history order (a correction keeps its place).
    first_accepted_at: str
    version_id: str | None = None  # the S3 object version validated (AWS only)

    @property
    def staged(self) -> str:
        """The staged Parquet file, relative to the lake root."""
        return lake.staged_key(self.dataset, self.sha256)

    @classmethod
    def from_dict(cls, data: dict) -> InputFile:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        return {**asdict(self), "staged": self.staged}


@dataclass
class Inputs:
    """The accepted inputs of a lake: one current snapshot per dimension, the rental history."""

    snapshots: dict[str, InputFile] = field(default_factory=dict)
    rentals: dict[str, InputFile] = field(default_factory=dict)  # by key

    def accept(self, accepted: InputFile) -> str:
        """Record an accepted file; returns "added", "replaced" or "unchanged"."""
        if accepted.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {accepted.dataset!r}")
        if accepted.dataset == HISTORY_DATASET:
            earlier = self.rentals.get(accepted.key)
            if earlier is not None and earlier.sha256 == accepted.sha256:
                return "unchanged"
            if earlier is not None:
                accepted = replace(accepted, first_accepted_at=earlier.first_accepted_at)
            self.rentals[accepted.key] = accepted
            return "added" if earlier is None else "replaced"
        earlier = self.snapshots.get(accepted.dataset)
        if earlier is not None and earlier.sha256 == accepted.sha256:
            return "unchanged"
        self.snapshots[accepted.dataset] = accepted
        return "added" if earlier is None else "replaced"

    def withdraw(self, key: str) -> InputFile | None:
        """Take a rentals file out of the history (it was held back by a run's gate)."""
        return self.rentals.pop(key, None)

    def history(self) -> list[InputFile]:
        return sorted(self.rentals.values(), key=lambda f: (f.first_accepted_at, f.key))

    def manifest(self, run_id: str, created_at: str, reject_threshold: float) -> Manifest:
        missing = [name for name in SNAPSHOT_DATASETS if name not in self.snapshots]
        if not self.rentals:
            missing.append(HISTORY_DATASET)
        if missing:
            raise MissingInputs(f"no accepted file yet for {', '.join(missing)}")
        files = [self.snapshots[name] for name in SNAPSHOT_DATASETS] + self.history()
        return Manifest(lake.check_run_id(run_id), created_at, reject_threshold, files)

    def to_dict(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "snapshots": {name: f.to_dict() for name, f in self.snapshots.items()},
            "rentals": [f.to_dict() for f in self.history()],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Inputs:
        return cls(
            {name: InputFile.from_dict(f) for name, f in data.get("snapshots", {}).items()},
            {f["key"]: InputFile.from_dict(f) for f in data.get("rentals", [])},
        )


@dataclass(frozen=True)
class Manifest:
    run_id: str
    created_at: str
    reject_threshold: float
    inputs: list[InputFile]

    def of(self, dataset: str) -> list[InputFile]:
        """The files of one dataset, in history order (one file for a snapshot)."""
        return [f for f in self.inputs if f.dataset == dataset]

    @property
    def fingerprint(self) -> str:
        """Identifies what the run computes from: snapshot contents, the history's keys and
        contents in order, and the reject threshold (not the run id, not the times)."""
        parts = [f"threshold\0{self.reject_threshold!r}"]
        for f in self.inputs:
            key = f.key if f.dataset == HISTORY_DATASET else ""
            parts.append(f"{f.dataset}\0{key}\0{f.sha256}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def to_json(self) -> str:
        return (
            json.dumps(
                {
                    "version": MANIFEST_VERSION,
                    "run_id": self.run_id,
                    "created_at": self.created_at,
                    "reject_threshold": self.reject_threshold,
                    "fingerprint": self.fingerprint,
                    "inputs": [f.to_dict() for f in self.inputs],
                },
                indent=1,
                ensure_ascii=False,
            )
            + "\n"
        )

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError(f"unsupported manifest version {data.get('version')!r}")
        missing = [
            name for name in DATASETS if not any(f["dataset"] == name for f in data["inputs"])
        ]
        if missing:
            raise ValueError(f"the manifest lists no file of {', '.join(missing)}")
        return cls(
            lake.check_run_id(data["run_id"]),
            data["created_at"],
            float(data["reject_threshold"]),
            [InputFile.from_dict(f) for f in data["inputs"]],
        )
