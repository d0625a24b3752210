"""EMR Serverless entry point: user_metrics, daily_metrics, business_summary, rental_rejects
and data_quality of one run.

    user_transaction_analysis.py --vehicles URI --locations URI --users URI --rentals URI \
        --output PROCESSED_URI --run-id ID

The logic lives in carrental.spark (shipped with --py-files); this file only hands over.
"""

import sys

from carrental.spark.entrypoint import main

if __name__ == "__main__":
    sys.exit(main("user_transaction_analysis"))
