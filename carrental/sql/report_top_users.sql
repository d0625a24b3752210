-- The ten users who spent the most in one run (spend_rank 1 = top spender). ? = the run id.
SELECT
    spend_rank,
    user_id,
    first_name,
    last_name,
    email,
    rental_count,
    total_spent,
    avg_rental_amount,
    total_rental_hours
FROM runs_user_metrics
WHERE run_id = ?
ORDER BY spend_rank
LIMIT 10
