-- Every data-quality rule of one run with its violation count. ? = the run id.
SELECT
    dataset,
    rule,
    severity,
    violations
FROM runs_data_quality
WHERE run_id = ?
ORDER BY dataset, severity, rule
