-- Headline KPIs of one pipeline run, as (metric, value) rows.
-- Athena (Trino) SQL: the workflow runs this file in Athena; `carrental run` runs the very same
-- file in DuckDB through sqlglot. Every ? is the run id (Athena execution parameters).
-- Numbers are cast to DECIMAL(18, 2) before VARCHAR so both engines print them the same way.
WITH summary AS (
    SELECT *
    FROM runs_business_summary
    WHERE run_id = ?
),
top_location AS (
    SELECT location_name, city, total_revenue
    FROM runs_location_performance
    WHERE run_id = ?
    ORDER BY total_revenue DESC, location_id
    LIMIT 1
),
top_vehicle_type AS (
    SELECT vehicle_type, rental_count
    FROM runs_vehicle_type_performance
    WHERE run_id = ?
    ORDER BY rental_count DESC, vehicle_type
    LIMIT 1
),
top_spender AS (
    SELECT user_id, first_name, last_name, total_spent
    FROM runs_user_metrics
    WHERE run_id = ?
    ORDER BY spend_rank
    LIMIT 1
),
rejected AS (
    SELECT COUNT(*) AS rejected_rentals
    FROM runs_rental_rejects
    WHERE run_id = ?
),
metrics AS (
    SELECT 1 AS sort_key, 'total_revenue' AS metric,
        CAST(CAST(total_revenue AS DECIMAL(18, 2)) AS VARCHAR) AS value
    FROM summary
    UNION ALL
    SELECT 2, 'rental_count', CAST(rental_count AS VARCHAR) FROM summary
    UNION ALL
    SELECT 3, 'unique_customers', CAST(unique_customers AS VARCHAR) FROM summary
    UNION ALL
    SELECT 4, 'unique_vehicles_rented', CAST(unique_vehicles_rented AS VARCHAR) FROM summary
    UNION ALL
    SELECT 5, 'avg_rental_amount',
        CAST(CAST(avg_rental_amount AS DECIMAL(18, 2)) AS VARCHAR)
    FROM summary
    UNION ALL
    SELECT 6, 'avg_rental_hours', CAST(CAST(avg_rental_hours AS DECIMAL(18, 2)) AS VARCHAR)
    FROM summary
    UNION ALL
    SELECT 7, 'first_rental_date', CAST(first_rental_date AS VARCHAR) FROM summary
    UNION ALL
    SELECT 8, 'last_rental_date', CAST(last_rental_date AS VARCHAR) FROM summary
    UNION ALL
    SELECT 9, 'highest_revenue_location',
        location_name || ' (' || city || '): '
        || CAST(CAST(total_revenue AS DECIMAL(18, 2)) AS VARCHAR)
    FROM top_location
    UNION ALL
    SELECT 10, 'most_rented_vehicle_type',
        vehicle_type || ': ' || CAST(rental_count AS VARCHAR) || ' rentals'
    FROM top_vehicle_type
    UNION ALL
    SELECT 11, 'top_spender',
        first_name || ' ' || last_name || ' (' || user_id || '): '
        || CAST(CAST(total_spent AS DECIMAL(18, 2)) AS VARCHAR)
    FROM top_spender
    UNION ALL
    SELECT 12, 'rejected_rentals', CAST(rejected_rentals AS VARCHAR) FROM rejected
)
SELECT metric, value
FROM metrics
ORDER BY sort_key
