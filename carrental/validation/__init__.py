"""Upload validation: may this CSV enter the pipeline?

The same code runs in the ValidateUpload Lambda (on an S3 object stream), in `carrental run`
and in `carrental validate`. It checks a file against its dataset contract
(`carrental.contracts`) in one streaming pass with bounded memory:

- file-level rejections: unknown dataset; not UTF-8 text (a UTF-8 BOM and CRLF line endings are
  fine); compressed or binary content; a NUL byte anywhere (its row and column named); a
  header that is missing, lacks, adds or repeats a column
  (order is free: columns are mapped by name); no data rows; unparseable CSV (unbalanced quotes,
  rows with the wrong number of fields, a row larger than the reader's block);
- row rules: the contract's single-dataset rules, counted per rule with examples. If more than
  `reject_threshold` (default 5 %) of the rows break a reject rule (duplicate keys included),
  the file is rejected; under it, the file is accepted and Spark routes those rows to
  rental_rejects.

Imported on AWS Lambda and EMR: pyarrow and numpy only (no duckdb, sqlglot or rich).
"""

from carrental.validation.core import DEFAULT_REJECT_THRESHOLD, validate_path, validate_stream
from carrental.validation.rows import BLOCK_SIZE
from carrental.validation.verdict import MAX_EXAMPLES, Example, FileVerdict, Problem

__all__ = [
    "BLOCK_SIZE",
    "DEFAULT_REJECT_THRESHOLD",
    "MAX_EXAMPLES",
    "Example",
    "FileVerdict",
    "Problem",
    "validate_path",
    "validate_stream",
]
