-- Every vehicle type of one run, most rented first. ? = the run id.
SELECT
    vehicle_type,
    rental_count,
    total_revenue,
    avg_rental_amount,
    min_rental_amount,
    max_rental_amount,
    unique_vehicles,
    total_rental_hours,
    avg_rental_hours
FROM runs_vehicle_type_performance
WHERE run_id = ?
ORDER BY rental_count DESC, vehicle_type
