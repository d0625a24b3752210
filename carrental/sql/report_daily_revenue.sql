-- Revenue per rental start date in one run. ? = the run id.
SELECT
    rental_date,
    rental_count,
    total_revenue,
    avg_rental_amount,
    unique_users,
    unique_vehicles
FROM runs_daily_metrics
WHERE run_id = ?
ORDER BY rental_date
