"""One local SparkSession for every Spark test (starting a JVM costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from carrental.spark.session import build_session


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    # Test batches are tiny: a JVM that lives a couple of minutes spends more CPU compiling
    # with the optimising JIT (C2) than it saves. Only applies if this starts the JVM.
    with pytest.MonkeyPatch.context() as env:
        env.setenv(
            "PYSPARK_SUBMIT_ARGS", "--driver-java-options -XX:TieredStopAtLevel=1 pyspark-shell"
        )
        session = build_session("carrental-tests", master="local[2]", shuffle_partitions=2)
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
