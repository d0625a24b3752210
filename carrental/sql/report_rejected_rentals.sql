-- Rejected rental rows of one run, each with every reject rule it breaks (reject_reason), where
-- it came from and its fields as read; in file and row order, the first 1000 (the rental_rejects
-- table holds them all, and summary.csv's rejected_rentals counts them). ? = the run id.
SELECT
    source_file,
    row_number,
    reject_reason,
    rental_id,
    user_id,
    vehicle_id,
    rental_start_time,
    rental_end_time,
    pickup_location,
    dropoff_location,
    total_amount
FROM runs_rental_rejects
WHERE run_id = ?
ORDER BY source_file, row_number
LIMIT 1000
