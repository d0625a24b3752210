"""EMR Serverless entry point: location_performance, vehicle_type_performance and
location_vehicle_type_performance of one run.

    vehicle_location_performance.py --vehicles URI --locations URI --users URI --rentals URI \
        --output PROCESSED_URI --run-id ID

The logic lives in carrental.spark (shipped with --py-files); this file only hands over.
"""

import sys

from carrental.spark.entrypoint import main

if __name__ == "__main__":
    sys.exit(main("vehicle_location_performance"))
