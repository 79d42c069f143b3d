"""Hostile text in the analysis SQL: experiment keys, metric names and segment values with quotes, backslashes,
``%`` and ``${...}`` are data on every engine, never SQL.

Each engine's per-arm counts and sums are checked against an oracle computed in Python from the raw rows:
another experiment's users never leak in (an escaped quote that ends a literal early would let ``OR TRUE``
through), and every name and label comes back exactly as written.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import insert

from abcore.analysis.engines import (
    compute_stats,
    duckdb_engine,
    load_source_config,
    spark_engine,
    store_engine,
)
from abcore.metrics import MetricSpec
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 3, 1, tzinfo=UTC)
END = T0 + timedelta(days=3)
#: Backslash escapes on Spark, a quote that would end the literal early, psycopg's ``%``, Spark's variables.
HOSTILE = ("x\\' OR TRUE --", "checkout\\eu", "load\\time", "it\\'s", "50%d_off", "${spark.app.name}")
#: ``x`` is what ``x\' OR TRUE --`` reads as when the quote is not escaped for the engine.
EXPERIMENTS = (*HOSTILE, "x")
METRICS = tuple(MetricSpec(name=n, kind="mean") for n in HOSTILE)


def _rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(units, events): each experiment its own users (a different number each), two arms, hostile segments."""
    units: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for e, experiment in enumerate(EXPERIMENTS):
        for i in range(4 + 2 * e):
            uid = f"e{e}u{i}"
            unit = {"experiment": experiment, "experiment_id": e + 1, "user_id": uid, "variant": 1 + i % 2,
                    "segment": HOSTILE[(i // 2) % 3], "ts": T0 + timedelta(hours=i)}
            units.append(unit)
            events.append({**unit, "event_type": "exposure", "metric_name": None, "value": None})
            for m, name in enumerate(HOSTILE):
                if (i + m) % 3:
                    events.append({**unit, "event_type": "conversion", "metric_name": name,
                                   "value": float(1 + i + 10 * m + 100 * e), "ts": unit["ts"] + timedelta(hours=1)})
    return units, events


def _oracle(experiment: str) -> dict[tuple[str, int, str], tuple[int, float]]:
    """(metric, variant, segment) -> (users, sum of the users' values) of ``experiment``, from the raw rows."""
    units, events = _rows()
    mine = [u for u in units if u["experiment"] == experiment]
    out: dict[tuple[str, int, str], tuple[int, float]] = {}
    for name in HOSTILE:
        for u in mine:
            key = (name, u["variant"], u["segment"])
            total = sum(ev["value"] for ev in events if ev["user_id"] == u["user_id"] and ev["metric_name"] == name)
            n, s = out.get(key, (0, 0.0))
            out[key] = (n + 1, s + total)
    return out


def _check(rows: list[Any], experiment: str) -> None:
    got = {(r.metric, int(r.variant), r.segment): (r.n, r.sum_y) for r in rows}
    assert got == _oracle(experiment), experiment


def _load_store(url: str) -> None:
    """The rows in a migrated store: hostile experiment names, metric names and ``country`` attributes."""
    units, events = _rows()
    sa = make_engine(url)
    try:
        with sa.begin() as conn:
            for e, name in enumerate(EXPERIMENTS):
                conn.execute(insert(Experiment.__table__).values(
                    id=e + 1, name=name, salt=f"s{e}", status="running", targeting=[], secondary_metrics=[],
                    guardrail_metrics=[], success_criteria={}))
                for v in (1, 2):
                    conn.execute(insert(Variant.__table__).values(
                        id=10 * (e + 1) + v, experiment_id=e + 1, name=f"v{v}", allocation_pct=50.0, config={},
                        is_control=v == 1, position=v))
            conn.execute(insert(UserAssignment.__table__), [
                {"user_id": u["user_id"], "experiment_id": u["experiment_id"],
                 "variant_id": 10 * u["experiment_id"] + u["variant"], "attributes": {"country": u["segment"]},
                 "assigned_at": u["ts"]} for u in units])
            conn.execute(insert(ExperimentEvent.__table__), [
                {"experiment_id": ev["experiment_id"], "user_id": ev["user_id"], "event_type": ev["event_type"],
                 "metric_name": ev["metric_name"], "value": ev["value"], "ts": ev["ts"], "properties": {}}
                for ev in events])
    finally:
        sa.dispose()


def _store_rows(engine: Any, e: int) -> list[Any]:
    rows = compute_stats(e + 1, METRICS, engine=engine, end=END, segment="country")
    # The store's variant ids (10 * experiment + arm) as arms.
    return [replace(r, variant=int(r.variant) % 10) for r in rows]


def _write_source(tmp_path: Path) -> Path:
    """The rows as Parquet events and a Parquet exposure table keyed by the experiment's name."""
    units, events = _rows()
    ev = pd.DataFrame([{k: e[k] for k in ("experiment", "user_id", "event_type", "metric_name", "value", "ts")}
                       for e in events])
    ev["ts"] = ev["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    ev.to_parquet(tmp_path / "events.parquet")
    ex = pd.DataFrame([{k: u[k] for k in ("experiment", "user_id", "variant", "segment", "ts")} for u in units])
    ex["ts"] = ex["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    ex.to_parquet(tmp_path / "exposures.parquet")
    config = {
        "events": {"path": str(tmp_path / "events.parquet"), "format": "parquet",
                   "columns": {"user_id": "user_id", "timestamp": "ts", "event_type": "event_type",
                               "metric_name": "metric_name", "value": "value", "experiment": "experiment"}},
        "exposures": {"path": str(tmp_path / "exposures.parquet"), "format": "parquet",
                      "columns": {"user_id": "user_id", "timestamp": "ts", "variant": "variant",
                                  "experiment": "experiment"}, "segments": ["segment"]},
    }
    path = tmp_path / "source.json"
    path.write_text(json.dumps(config))
    return path


def test_hostile_metric_names_and_segment_values_on_the_store(db_url: str) -> None:
    """SQLite and PostgreSQL (a ``%`` in a literal must not reach psycopg as a placeholder), and DuckDB over
    the same store."""
    _load_store(db_url)
    sa = make_engine(db_url)
    try:
        for e, name in enumerate(EXPERIMENTS):
            _check(_store_rows(store_engine(sa), e), name)
    finally:
        sa.dispose()
    duck = duckdb_engine(store_url=db_url)
    for e, name in enumerate(EXPERIMENTS):
        _check(_store_rows(duck, e), name)


def test_hostile_experiment_keys_on_duckdb_files(tmp_path: Path) -> None:
    source = load_source_config(_write_source(tmp_path))
    engine = duckdb_engine()
    for name in EXPERIMENTS:
        _check(compute_stats(name, METRICS, engine=engine, source=source, end=END, segment="segment"), name)


@pytest.mark.parametrize("experiment", ["x\\' OR TRUE --", "checkout\\eu"])
def test_hostile_experiment_keys_on_spark(spark: Any, tmp_path: Path, experiment: str) -> None:
    """Spark reads backslash escapes and ``${...}`` inside literals: each key still selects only its own users,
    and the metric names and segment labels come back as written."""
    source = load_source_config(_write_source(tmp_path))
    rows = compute_stats(experiment, METRICS, engine=spark_engine(spark), source=source, end=END, segment="segment")
    _check(rows, experiment)
