"""What a run's Spark jobs leave in the lake that the functions read, for the tests where EMR does
not run: the run_inputs table, written with pyarrow in the schema the job writes
(carrental.spark.transforms.RUN_INPUTS_SCHEMA; test_emr_emulation.py reads the real job's table
with PublishRun's reader), beside the _SUCCESS marker Spark leaves.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq

from carrental import lake
from carrental.inputs import InputFile

RUN_INPUTS = pa.schema(
    [
        ("input_order", pa.int32()),
        ("dataset", pa.string()),
        ("source_file", pa.string()),
        ("content_sha256", pa.string()),
        ("accepted_at", pa.timestamp("us")),
        ("rows", pa.int64()),
        ("rejected_rows", pa.int64()),
        ("status", pa.string()),
        ("reason", pa.string()),
    ]
)


def put_run_inputs(
    s3,
    bucket: str,
    run_id: str,
    files: Iterable[InputFile],
    held_back: Mapping[str, str] = {},
) -> None:
    """The run_inputs table of a run that read `files` and held back the keys of `held_back`
    (key -> reason), every row of them rejected."""
    rows = [
        {
            "input_order": order,
            "dataset": f.dataset,
            "source_file": f.key,
            "content_sha256": f.sha256,
            "accepted_at": datetime.fromisoformat(f.accepted_at).replace(tzinfo=None),
            "rows": f.rows,
            "rejected_rows": f.rows if f.key in held_back else 0,
            "status": "held_back" if f.key in held_back else "used",
            "reason": held_back.get(f.key, ""),
        }
        for order, f in enumerate(files, 1)
    ]
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, RUN_INPUTS), buffer)
    folder = lake.table_run_path(lake.PROCESSED, "run_inputs", run_id)
    s3.put_object(Bucket=bucket, Key=f"{folder}/part-00000.snappy.parquet", Body=buffer.getvalue())
    s3.put_object(Bucket=bucket, Key=f"{folder}/_SUCCESS", Body=b"")
