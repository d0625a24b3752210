"""The single-machine speed reference: the six KPI tables of the Spark jobs in plain DuckDB SQL.

    .venv/bin/python benchmarks/duckdb_kpis.py --input DIR --out DIR   # prints seconds, rows, MB

Reads the same four CSVs and writes location_performance, vehicle_type_performance,
location_vehicle_type_performance, user_metrics, daily_metrics and business_summary as Parquet,
with the columns of docs/tables.md. It applies no contract rule: on a clean generated batch
(`--dirty-rate 0`) no row breaks one, so keeping the rentals whose vehicle, user and pickup
location exist (inner joins) selects the same rows as the Spark jobs, and joins + aggregates
suffice. It therefore does less work than the jobs (no rule checks, no rental_rejects, no
data_quality): a lower bound for "the same answer on one machine", which is what a speed
reference should be. On clean batches its six tables equal, row for row, those of the
independent *correctness* reference reference/kpis.py (every rule, exact values;
compared on data/sample and a --scale 1 batch when this script was written); benchmarks/run.py
checks on every run that its total revenue and rental count equal the pipeline's, so that the
speed ratio compares like with like.
"""

from __future__ import annotations

import sys
from pathlib import Path

from process_stats import peak_rss_mb
from reference_command import run_reference

from carrental.contracts import DATASETS

# One parse of each CSV into typed temp tables; the KPI queries then read memory, as the jobs
# read their cached checked batch. Every CSV is read as text (ids are strings that only look
# like numbers) and cast where a number or a time is meant.
LOAD = """
CREATE TEMP TABLE locations AS
SELECT CAST(location_id AS INTEGER) AS location_id, location_name, city, state
FROM read_csv({locations}, header = true, all_varchar = true);

CREATE TEMP TABLE users AS
SELECT user_id, first_name, last_name, email
FROM read_csv({users}, header = true, all_varchar = true);

CREATE TEMP TABLE rentals AS
SELECT r.user_id,
       r.vehicle_id,
       r.rental_start_time,
       r.pickup_location,
       r.total_amount,
       v.vehicle_type,
       date_diff('second', r.rental_start_time, r.rental_end_time) AS rental_seconds
FROM (
    SELECT user_id,
           vehicle_id,
           CAST(rental_start_time AS TIMESTAMP) AS rental_start_time,
           CAST(rental_end_time AS TIMESTAMP) AS rental_end_time,
           CAST(pickup_location AS INTEGER) AS pickup_location,
           CAST(total_amount AS DECIMAL(12, 2)) AS total_amount
    FROM read_csv({rental_transactions}, header = true, all_varchar = true)
) AS r
JOIN (
    SELECT vehicle_id, vehicle_type FROM read_csv({vehicles}, header = true, all_varchar = true)
) AS v USING (vehicle_id)
WHERE r.user_id IN (SELECT user_id FROM users)
  AND r.pickup_location IN (SELECT location_id FROM locations);
"""

# Hours as the jobs define them: whole seconds summed exactly, divided by 3600 once.
TOTAL_HOURS = "CAST(CAST(sum(rental_seconds) AS DECIMAL(38, 0)) / 3600 AS DECIMAL(22, 6))"
AVG_HOURS = (
    "CAST(CAST(sum(rental_seconds) AS DECIMAL(38, 0)) / (count(*) * 3600) AS DECIMAL(22, 6))"
)
AMOUNT_STATS = """count(*) AS rental_count,
       sum(total_amount) AS {total},
       CAST(avg(total_amount) AS DECIMAL(16, 6)) AS avg_rental_amount,
       min(total_amount) AS min_rental_amount,
       max(total_amount) AS max_rental_amount"""

KPI_QUERIES = {
    "location_performance": f"""
SELECT p.location_id, l.location_name, l.city, l.state, p.* EXCLUDE (location_id)
FROM (
    SELECT pickup_location AS location_id,
           {AMOUNT_STATS.format(total="total_revenue")},
           count(DISTINCT vehicle_id) AS unique_vehicles,
           count(DISTINCT user_id) AS unique_users,
           {TOTAL_HOURS} AS total_rental_hours,
           {AVG_HOURS} AS avg_rental_hours
    FROM rentals GROUP BY pickup_location
) AS p JOIN locations AS l USING (location_id)""",
    "vehicle_type_performance": f"""
SELECT vehicle_type,
       {AMOUNT_STATS.format(total="total_revenue")},
       count(DISTINCT vehicle_id) AS unique_vehicles,
       {TOTAL_HOURS} AS total_rental_hours,
       {AVG_HOURS} AS avg_rental_hours
FROM rentals GROUP BY vehicle_type""",
    "location_vehicle_type_performance": f"""
SELECT pickup_location AS location_id, vehicle_type,
       count(*) AS rental_count,
       sum(total_amount) AS total_revenue,
       {AVG_HOURS} AS avg_rental_hours
FROM rentals GROUP BY pickup_location, vehicle_type""",
    "user_metrics": f"""
SELECT u.user_id, u.first_name, u.last_name, u.email, p.* EXCLUDE (user_id),
       row_number() OVER (ORDER BY p.total_spent DESC, u.user_id) AS spend_rank
FROM (
    SELECT user_id,
           {AMOUNT_STATS.format(total="total_spent")},
           {TOTAL_HOURS} AS total_rental_hours,
           {AVG_HOURS} AS avg_rental_hours,
           min(rental_start_time) AS first_rental_start,
           max(rental_start_time) AS last_rental_start
    FROM rentals GROUP BY user_id
) AS p JOIN users AS u USING (user_id)""",
    "daily_metrics": f"""
SELECT CAST(rental_start_time AS DATE) AS rental_date,
       {AMOUNT_STATS.format(total="total_revenue")},
       count(DISTINCT user_id) AS unique_users,
       count(DISTINCT vehicle_id) AS unique_vehicles
FROM rentals GROUP BY rental_date""",
    "business_summary": f"""
SELECT coalesce(sum(total_amount), 0) AS total_revenue,
       count(*) AS rental_count,
       count(DISTINCT user_id) AS unique_customers,
       count(DISTINCT vehicle_id) AS unique_vehicles_rented,
       CAST(avg(total_amount) AS DECIMAL(16, 6)) AS avg_rental_amount,
       {AVG_HOURS} AS avg_rental_hours,
       min(CAST(rental_start_time AS DATE)) AS first_rental_date,
       max(CAST(rental_start_time AS DATE)) AS last_rental_date
FROM rentals""",
}


def _literal(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def compute_kpis(input_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write each KPI table to out_dir/<table>.parquet; return each table's row count."""
    import duckdb

    out_dir.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    try:
        files = {name: _literal(input_dir / f"{name}.csv") for name in DATASETS}
        con.execute(LOAD.format(**files))
        rows = {}
        for table, query in KPI_QUERIES.items():
            target = _literal(out_dir / f"{table}.parquet")
            (rows[table],) = con.execute(f"COPY ({query}) TO {target} (FORMAT parquet)").fetchone()
        return rows
    finally:
        con.close()


def measured_kpis(input_dir: Path, out_dir: Path) -> dict:
    return {"rows": compute_kpis(input_dir, out_dir), "peak_rss_mb": peak_rss_mb()}


if __name__ == "__main__":
    sys.exit(run_reference(__doc__.split("\n", 1)[0], measured_kpis))
