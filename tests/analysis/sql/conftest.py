"""Shared fixtures of the engine parity suite: one Spark session for the whole run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] SparkSession shared by every Spark test (start-up costs seconds)."""
    pytest.importorskip("pyspark", reason="Spark tests need the abcore[spark] extra (pyspark)")
    from abcore.analysis.engines import spark_engine

    engine = spark_engine()
    yield engine.spark
    engine.spark.stop()
