"""Where a job's input rows come from: a run manifest over the staged layer (what the pipeline
runs, locally and on EMR), or CSV files given on the command line (an ad-hoc run of a job).

Both give every dataset as the same parsed frame (carrental.spark.io.read_staged's columns), so
the rule checks and the transforms never know which it was.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from carrental.contracts import DATASETS, DEFAULT_REJECT_THRESHOLD, Dataset
from carrental.inputs import InputFile, Manifest
from carrental.spark.io import (
    SOURCE_FILE,
    CheckedLayer,
    read_dataset,
    read_staged,
    with_row_numbers,
)
from carrental.spark.rules import parse


@dataclass(frozen=True)
class StagedInputs:
    """The files of a run manifest, under the lake `root` (a local folder or s3://bucket).

    `keep_checked`: reuse and add to the lake's checked layer (carrental.checked). The local
    runner does, and prunes the layer with its runs. The EMR jobs do not (docs/architecture.md,
    "Check once"): on S3 nothing prunes the layer yet, so its entries would pile up, and the
    Spark job role (template.yaml) may neither read nor write objects under its prefix."""

    root: str
    manifest: Manifest
    keep_checked: bool = False

    @property
    def reject_threshold(self) -> float:
        return self.manifest.reject_threshold

    def described(self) -> dict[str, InputFile]:
        """The manifest's files by key."""
        return {f.key: f for f in self.manifest.inputs}

    def parsed(
        self, spark: SparkSession, ds: Dataset, exclude: Collection[str] = (), start: int = 0
    ) -> DataFrame:
        """The dataset's rows; `exclude`: keys (SOURCE_FILE) of files held back from the run;
        `start`: the place in the history of the first file to read (the rest is checked)."""
        files = self.manifest.of(ds.name)[start:]
        frame = read_staged(spark, self.root, files, ds, start)
        return frame.filter(~F.col(SOURCE_FILE).isin(*exclude)) if exclude else frame

    def checked_layer(self, spark: SparkSession) -> CheckedLayer | None:
        """Where checked rows of earlier runs are kept (carrental.checked), if they are."""
        return CheckedLayer(spark, self.root) if self.keep_checked else None


@dataclass(frozen=True)
class CsvInputs:
    """One CSV file or folder of CSV files per dataset (local paths or s3:// URIs)."""

    paths: Mapping[str, str]
    reject_threshold: float = DEFAULT_REJECT_THRESHOLD

    def __post_init__(self) -> None:
        missing = [name for name in DATASETS if name not in self.paths]
        unknown = [name for name in self.paths if name not in DATASETS]
        if missing or unknown:
            raise ValueError(f"inputs: missing datasets {missing}, unknown datasets {unknown}")

    def described(self) -> dict[str, InputFile]:
        """Nothing is known of CSV files before they are read."""
        return {}

    def parsed(
        self, spark: SparkSession, ds: Dataset, exclude: Collection[str] = (), start: int = 0
    ) -> DataFrame:
        """The dataset's rows, numbered; `exclude`: paths (SOURCE_FILE) held back from the run.
        A CSV file or folder is one input (FILE_INDEX 0): `start` can only be 0."""
        if start:
            raise ValueError(f"{ds.name}: CSV inputs are read whole, not from file {start}")
        frame = with_row_numbers(parse(read_dataset(spark, self.paths[ds.name], ds), ds))
        return frame.filter(~F.col(SOURCE_FILE).isin(*exclude)) if exclude else frame

    def checked_layer(self, spark: SparkSession) -> None:
        """CSV files given on the command line have no lake to keep checked rows in."""
        return None
