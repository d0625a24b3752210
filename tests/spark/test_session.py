"""The settings every job relies on hold even on a session someone else started."""

from __future__ import annotations

import pytest

from carrental.spark.session import CORRECTNESS_SETTINGS, build_session

pytestmark = pytest.mark.spark


def test_a_running_session_gets_the_correctness_settings_back(spark):
    spark.conf.set("spark.sql.session.timeZone", "America/New_York")
    spark.conf.set("spark.sql.csv.parser.columnPruning.enabled", "true")
    try:
        assert build_session("another-job") is spark
        for key, value in CORRECTNESS_SETTINGS.items():
            assert spark.conf.get(key) == value, key
        # a daylight-saving gap in New York is an ordinary wall-clock time in UTC
        [row] = spark.sql(
            "SELECT CAST(try_to_timestamp('2024-03-10 02:30:00', 'yyyy-MM-dd HH:mm:ss') "
            "AS TIMESTAMP_NTZ) AS t"
        ).collect()
        assert str(row.t) == "2024-03-10 02:30:00"
    finally:
        for key, value in CORRECTNESS_SETTINGS.items():
            spark.conf.set(key, value)
