-- The 15 pickup locations with the highest revenue in one run. ? = the run id.
SELECT
    location_id,
    location_name,
    city,
    state,
    rental_count,
    total_revenue,
    avg_rental_amount,
    unique_vehicles,
    unique_users,
    avg_rental_hours
FROM runs_location_performance
WHERE run_id = ?
ORDER BY total_revenue DESC, location_id
LIMIT 15
