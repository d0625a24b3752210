"""The two PySpark jobs, as importable code: the EMR Serverless entry points and the local
runner (`carrental run`) call the very same functions.

Why here and not in emr_jobs/: `carrental` never imports from emr_jobs/ (the local runner must
run the jobs without it), and `carrental` is shipped to EMR Serverless as a `--py-files`
archive anyway. So emr_jobs/*.py are thin entry points: parse the flags, build the session,
call `carrental.spark`, exit non-zero with one clear log line on any failure
(`carrental.spark.entrypoint`).

Modules, in the order data flows (extract -> pure transforms -> load):
    session     build_session: UTC session time zone, adaptive execution, local settings
    io          read_dataset (raw text in contract column order, file row order), write_table
                (Parquet, <output>/<table>/run_id=<id>/, overwriting that run only)
    rules       contract-driven parsing and rule flags (reject / warn) of every row
    transforms  DataFrame -> DataFrame: the eight output tables
    jobs        JOBS (each job's tables), run_job; check_batch
                (both jobs check the whole batch; a process running both can check it once)
    entrypoint  the shared command line of emr_jobs/

Output tables and their columns: docs/tables.md. Each run writes its own run_id= folder per
table, so a failed run leaves earlier runs intact and a rerun replaces only its own folder;
readers pick the latest published run (lake.py).
"""
