"""Epochs in the one analysis query: per-epoch sufficient statistics (a CASE on the assignment time, rendered per
dialect) on SQLite, PostgreSQL, DuckDB and Spark, against the pandas oracle on the raw rows.

The parity data set's users are given assignment times such that each country is one epoch (de before the first
change, fr between the changes, us after, users without a country after a third change): the per-epoch rows must be
exactly the oracle's per-country rows (``parity_data.oracle(segment="country")``, pandas/numpy on the raw rows).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, update
from sqlalchemy.engine import Engine as SAEngine

from abcore.analysis.engines import (
    compute_stats,
    duckdb_engine,
    load_source_config,
    spark_engine,
    store_engine,
)
from abcore.analysis.sql.build import build_analysis_query
from abcore.store.db import make_engine
from abcore.store.tables import UserAssignment
from tests.analysis.sql.parity_data import END, METRICS, T0, oracle, rows
from tests.analysis.sql.test_parity import EXPERIMENT_ID, _write_files, check, load

CHANGES = [T0 + timedelta(days=1), T0 + timedelta(days=2), T0 + timedelta(days=3)]
EPOCH_OF_COUNTRY = {"de": "0", "fr": "1", "us": "2", "(none)": "3"}


def load_with_epochs(engine: SAEngine) -> None:
    """The parity data, each user assigned inside the epoch of their country (one at a change time exactly:
    a change time starts the new epoch)."""
    load(engine)
    assignments, _ = rows()
    times = {"de": T0, "fr": CHANGES[0], "us": CHANGES[1] + timedelta(hours=5), None: CHANGES[2] + timedelta(hours=1)}
    table = UserAssignment.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        conn.execute(
            update(table).where(table.c.user_id == bindparam("uid"), table.c.experiment_id == EXPERIMENT_ID)
            .values(assigned_at=bindparam("at")),
            [{"uid": a["user_id"], "at": times[a["attributes"].get("country")]} for a in assignments],
        )


def expected() -> dict[tuple[str, int, str], dict[str, float]]:
    return {(m, v, EPOCH_OF_COUNTRY[s]): row for (m, v, s), row in oracle(segment="country").items()}


def _check(engine: Any) -> None:
    check(compute_stats(EXPERIMENT_ID, METRICS, engine=engine, end=END, epochs=CHANGES), expected())


def test_store_engine_groups_by_epoch(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load_with_epochs(sa)
        _check(store_engine(sa))
    finally:
        sa.dispose()


def test_duckdb_over_the_store_groups_by_epoch(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load_with_epochs(sa)
    finally:
        sa.dispose()
    _check(duckdb_engine(store_url=db_url))


def test_spark_groups_by_epoch(spark: Any, sqlite_url: str) -> None:
    sa = make_engine(sqlite_url)
    try:
        load_with_epochs(sa)
    finally:
        sa.dispose()
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    _check(engine)


def test_no_epochs_is_today_s_query() -> None:
    for dialect in ("sqlite", "postgresql", "duckdb", "spark"):
        assert build_analysis_query(METRICS, experiment=1, dialect=dialect, end=END, epochs=()) == build_analysis_query(
            METRICS, experiment=1, dialect=dialect, end=END)
    with pytest.raises(ValueError, match="ascending"):
        build_analysis_query(METRICS, experiment=1, dialect="sqlite", epochs=CHANGES[::-1])


def test_an_exposure_table_source_takes_the_epoch_of_the_first_exposure(tmp_path: Path) -> None:
    """With an exposure table (no assignment times) a user's epoch is that of their first exposure: every first
    exposure of the data set is after T0, so with a change at T0 every user is in epoch '1' and the rows are the
    oracle's unsegmented ones (pandas on the raw rows)."""
    source = load_source_config(_write_files(tmp_path))
    got = compute_stats("parity", METRICS, engine=duckdb_engine(), source=source, end=END, epochs=[T0])
    check(got, {(m, v, "1"): row for (m, v, _), row in oracle().items()})
