"""Segments by an assignment attribute: every attribute name works and every engine gives the same labels.

The oracle is the attribute's text computed in Python from the stored dicts: strings as themselves, booleans
``true``/``false`` (never merged with the numbers ``1``/``0``), a missing or null attribute ``(none)``.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from abcore.analysis.engines import compute_stats, duckdb_engine, spark_engine, store_engine
from abcore.metrics import MetricSpec
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 4, 1, tzinfo=UTC)
END = T0 + timedelta(days=2)
#: Non-ASCII, a quote, a double quote, a backslash, a newline, a dot, a slash, a tilde: every one a plain key.
KEYS = ("país", 'país "q" a\\b it\'s\nx.y/z~0')
METRIC = MetricSpec(name="click", kind="binomial")


def _attributes(i: int) -> dict[str, Any]:
    """User ``i``'s attributes: each hostile key with a text value (or missing / null), and ``returning`` as a
    boolean for 30 users and as the number 1/0 for 10."""
    attrs: dict[str, Any] = {"returning": bool(i % 2) if i < 30 else i % 2}
    for k, key in enumerate(KEYS):
        if (i + k) % 5 == 4:
            continue  # missing
        attrs[key] = None if (i + k) % 7 == 3 else ["ES", "MX", "a\\b", "it's"][(i + k) % 4]
    return attrs


def _label(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _oracle(key: str) -> Counter[tuple[int, str]]:
    """Users per (arm, label) of attribute ``key``."""
    return Counter((1 + i % 2, _label(_attributes(i).get(key))) for i in range(40))


def _load(url: str) -> None:
    sa = make_engine(url)
    try:
        with sa.begin() as conn:
            conn.execute(insert(Experiment.__table__).values(
                id=1, name="segments", salt="s", status="running", targeting=[], secondary_metrics=[],
                guardrail_metrics=[], success_criteria={}))
            for v in (1, 2):
                conn.execute(insert(Variant.__table__).values(
                    id=v, experiment_id=1, name=f"v{v}", allocation_pct=50.0, config={}, is_control=v == 1,
                    position=v))
            conn.execute(insert(UserAssignment.__table__), [
                {"user_id": f"u{i}", "experiment_id": 1, "variant_id": 1 + i % 2, "attributes": _attributes(i),
                 "assigned_at": T0} for i in range(40)])
            conn.execute(insert(ExperimentEvent.__table__), [
                {"experiment_id": 1, "user_id": f"u{i}", "event_type": "exposure", "metric_name": None,
                 "value": None, "ts": T0 + timedelta(minutes=i), "properties": {}} for i in range(40)])
    finally:
        sa.dispose()


def _segments(engine: Any, key: str) -> Counter[tuple[int, str]]:
    rows = compute_stats(1, [METRIC], engine=engine, end=END, segment=key)
    return Counter({(int(r.variant), r.segment): r.n for r in rows})


@pytest.mark.parametrize("key", KEYS)
def test_any_attribute_name_segments_alike_on_the_store_and_duckdb(db_url: str, key: str) -> None:
    _load(db_url)
    sa = make_engine(db_url)
    try:
        assert _segments(store_engine(sa), key) == _oracle(key)
    finally:
        sa.dispose()
    assert _segments(duckdb_engine(store_url=db_url), key) == _oracle(key)


def test_any_attribute_name_segments_alike_on_spark(spark: Any, sqlite_url: str) -> None:
    _load(sqlite_url)
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    assert _segments(engine, KEYS[1]) == _oracle(KEYS[1])


def test_boolean_labels_stay_apart_from_numbers_on_the_store_and_duckdb(db_url: str) -> None:
    """30 users with ``returning`` True/False and 10 with 1/0: four labels, ``true``/``false`` and ``1``/``0``."""
    _load(db_url)
    assert {label for _, label in _oracle("returning")} == {"true", "false", "1", "0"}
    sa = make_engine(db_url)
    try:
        assert _segments(store_engine(sa), "returning") == _oracle("returning")
    finally:
        sa.dispose()
    assert _segments(duckdb_engine(store_url=db_url), "returning") == _oracle("returning")


def test_boolean_labels_stay_apart_from_numbers_on_spark(spark: Any, sqlite_url: str) -> None:
    _load(sqlite_url)
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    assert _segments(engine, "returning") == _oracle("returning")
