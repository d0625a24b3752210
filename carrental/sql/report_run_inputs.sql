-- The input files of one run, in manifest order: snapshots, then the rental history.
-- status: used, or held_back (left out of the run; reason says why). ? = the run id.
SELECT
    input_order,
    dataset,
    source_file,
    content_sha256,
    rows,
    rejected_rows,
    status,
    reason
FROM runs_run_inputs
WHERE run_id = ?
ORDER BY input_order
