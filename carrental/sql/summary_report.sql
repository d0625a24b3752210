-- Headline KPIs of one pipeline run: one row per metric, one value per row, and how to read it.
-- Athena (Trino) SQL: the workflow runs this file in Athena; `carrental run` runs the very same
-- file in DuckDB through sqlglot. Every ? is the run id (Athena execution parameters).
-- Every run gets the same rows in the same order: each value is a scalar subquery, NULL (an
-- empty field in summary.csv) when there is nothing to report, e.g. no valid rental.
-- value_type: decimal (two decimals), integer, date (YYYY-MM-DD) or text.
-- Numbers are cast to DECIMAL(18, 2) before VARCHAR so both engines print them the same way.
WITH summary AS (
    SELECT *
    FROM runs_business_summary
    WHERE run_id = ?
),
top_location AS (
    SELECT location_id, location_name, city, total_revenue
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
    SELECT 1 AS sort_key, 'total_revenue' AS metric, 'decimal' AS value_type,
        (SELECT CAST(CAST(total_revenue AS DECIMAL(18, 2)) AS VARCHAR) FROM summary) AS value
    UNION ALL
    SELECT 2, 'rental_count', 'integer', (SELECT CAST(rental_count AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 3, 'unique_customers', 'integer',
        (SELECT CAST(unique_customers AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 4, 'unique_vehicles_rented', 'integer',
        (SELECT CAST(unique_vehicles_rented AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 5, 'avg_rental_amount', 'decimal',
        (SELECT CAST(CAST(avg_rental_amount AS DECIMAL(18, 2)) AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 6, 'avg_rental_hours', 'decimal',
        (SELECT CAST(CAST(avg_rental_hours AS DECIMAL(18, 2)) AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 7, 'first_rental_date', 'date',
        (SELECT CAST(first_rental_date AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 8, 'last_rental_date', 'date', (SELECT CAST(last_rental_date AS VARCHAR) FROM summary)
    UNION ALL
    SELECT 9, 'top_location_id', 'integer',
        (SELECT CAST(location_id AS VARCHAR) FROM top_location)
    UNION ALL
    SELECT 10, 'top_location_name', 'text', (SELECT location_name FROM top_location)
    UNION ALL
    SELECT 11, 'top_location_city', 'text', (SELECT city FROM top_location)
    UNION ALL
    SELECT 12, 'top_location_revenue', 'decimal',
        (SELECT CAST(CAST(total_revenue AS DECIMAL(18, 2)) AS VARCHAR) FROM top_location)
    UNION ALL
    SELECT 13, 'most_rented_vehicle_type', 'text', (SELECT vehicle_type FROM top_vehicle_type)
    UNION ALL
    SELECT 14, 'most_rented_vehicle_type_rentals', 'integer',
        (SELECT CAST(rental_count AS VARCHAR) FROM top_vehicle_type)
    UNION ALL
    SELECT 15, 'top_spender_user_id', 'text', (SELECT user_id FROM top_spender)
    UNION ALL
    SELECT 16, 'top_spender_name', 'text',
        (SELECT first_name || ' ' || last_name FROM top_spender)
    UNION ALL
    SELECT 17, 'top_spender_total_spent', 'decimal',
        (SELECT CAST(CAST(total_spent AS DECIMAL(18, 2)) AS VARCHAR) FROM top_spender)
    UNION ALL
    SELECT 18, 'rejected_rentals', 'integer',
        (SELECT CAST(rejected_rentals AS VARCHAR) FROM rejected)
)
SELECT metric, value, value_type
FROM metrics
ORDER BY sort_key
