"""The exposure-day rows (effect by days since first exposure, novelty inputs) on SQLite, PostgreSQL, DuckDB
and Spark against a pandas oracle on the raw rows (exposure day = floor((ts - first exposure) / 24 h),
observed days = floor((as_of - first exposure) / 24 h) capped at 28, early = day 0, late = mean of days
7 .. k - 1)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import insert
from sqlalchemy.engine import Engine as SAEngine

from abcore.analysis.engines import duckdb_engine, spark_engine, store_engine
from abcore.analysis.sql.build import build_exposure_day_query
from abcore.metrics import MetricSpec
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 3, 1, tzinfo=UTC)
END = T0 + timedelta(days=12, hours=7)
METRICS = (
    MetricSpec(name="visit", kind="binomial"),
    MetricSpec(name="visit_n", kind="count", delay_hours=2),
    MetricSpec(name="spend", kind="mean", window_hours=24 * 9),
    MetricSpec(name="spend_p90", kind="quantile", quantile=0.9),  # no exposure-day rows
)
SOURCE = {"visit_n": "visit", "spend_p90": "spend"}


def data() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(assignments, events): 70 users entering over 8 days, activity over 14 days after entry (seed 4)."""
    rng = np.random.default_rng(4)
    assignments, events = [], []
    for i in range(70):
        uid, variant = f"x{i:03d}", 1 + i % 2
        assignments.append({"user_id": uid, "variant": variant})
        first = T0 + timedelta(hours=float(rng.uniform(0, 8 * 24)))
        events.append({"user_id": uid, "ts": first, "event_type": "exposure", "metric_name": None, "value": None})
        for _ in range(int(rng.integers(0, 14))):
            ts = first + timedelta(hours=float(rng.uniform(-10, 14 * 24)))
            name = "visit" if rng.random() < 0.6 else "spend"
            value = None if name == "visit" or rng.random() < 0.1 else round(float(rng.gamma(2, 4)), 2)
            events.append({"user_id": uid, "ts": ts, "event_type": "conversion", "metric_name": name, "value": value})
        if i % 6 == 0:  # exactly at the start of exposure day 1 and 7 (belongs to that day)
            for day in (1, 7):
                events.append({"user_id": uid, "ts": first + timedelta(days=day), "event_type": "conversion",
                               "metric_name": "visit", "value": None})
    return assignments, events


def load(engine: SAEngine) -> None:
    assignments, events = data()
    with engine.begin() as conn:
        conn.execute(insert(Experiment.__table__).values(id=1, name="xd", salt="s", status="running", targeting=[],
                                                         secondary_metrics=[], guardrail_metrics=[],
                                                         success_criteria={}))
        for v in (1, 2):
            conn.execute(insert(Variant.__table__).values(id=v, experiment_id=1, name=f"v{v}", allocation_pct=50.0,
                                                          config={}, is_control=v == 1, position=v))
        conn.execute(insert(UserAssignment.__table__), [
            {"user_id": a["user_id"], "experiment_id": 1, "variant_id": a["variant"], "attributes": {},
             "assigned_at": T0} for a in assignments])
        payload = []
        for e in events:
            for name in [e["metric_name"]] + [a for a, s in SOURCE.items() if s == e["metric_name"]]:
                payload.append({"experiment_id": 1, "user_id": e["user_id"], "event_type": e["event_type"],
                                "metric_name": name, "value": e["value"], "ts": e["ts"], "properties": {}})
        conn.execute(insert(ExperimentEvent.__table__), payload)


def oracle() -> dict[tuple[str, Any, int, int], dict[str, float]]:
    """pandas on the raw rows: the expected rows keyed by (part, metric, variant, day)."""
    assignments, events = data()
    ev = pd.DataFrame(events)
    pop = pd.DataFrame(assignments).merge(
        ev[(ev.event_type == "exposure") & (ev.ts < END)].groupby("user_id").ts.min().rename("first"),
        left_on="user_id", right_index=True)
    day = pd.Timedelta(days=1)
    pop["k"] = ((END - pop["first"]) // day).clip(upper=28).astype(int)
    out: dict[tuple[str, Any, int, int], dict[str, float]] = {}
    for (v, k), g in pop.groupby(["variant", "k"]):
        out[("cohort", None, int(v), int(k))] = {"n": len(g)}
    conv = ev[(ev.event_type == "conversion") & (ev.ts < END)].merge(pop, on="user_id")
    for m in METRICS[:3]:
        e = conv[conv.metric_name == SOURCE.get(m.name, m.name)].copy()
        lo = e["first"] + pd.to_timedelta(m.delay_hours, unit="h")
        keep = e.ts >= lo
        if m.window_hours is not None:
            keep &= e.ts < lo + pd.to_timedelta(m.window_hours, unit="h")
        e = e[keep]
        e["dd"] = ((e.ts - e["first"]) // day).astype(int)
        e = e[e.dd < e.k]
        e["v1"] = e.value.fillna(1.0)
        grouped = e.groupby(["user_id", "variant", "k", "dd"])
        per = (grouped.size().clip(upper=1) if m.kind == "binomial" else grouped.size() if m.kind == "count"
               else grouped.v1.sum()).astype(float).rename("y").reset_index()
        for (v, dd), g in per.groupby(["variant", "dd"]):
            out[("day", m.name, int(v), int(dd))] = {"n": 0, "sum_y": math.fsum(g.y), "sum_y2": math.fsum(g.y**2)}
        late_users = per[per.k > 7]
        for v, g in late_users.groupby("variant"):
            by_user = g.groupby(["user_id", "k"])
            early = by_user.apply(lambda u: u.y[u.dd < 1].sum()).to_numpy()
            late = by_user.apply(lambda u: u.y[u.dd >= 7].sum() / (u.name[1] - 7)).to_numpy()
            out[("novelty", m.name, int(v), 7)] = {
                "n": len(early), "sum_y": math.fsum(early), "sum_y2": math.fsum(early**2), "sum_x": math.fsum(late),
                "sum_x2": math.fsum(late**2), "sum_xy": math.fsum(early * late)}
    return out


def check(rows: list[dict[str, Any]]) -> None:
    expected = oracle()
    got = {(r["part"], r["metric"], int(r["variant"]), int(r["day"])): r for r in rows}
    assert set(got) == set(expected)
    assert any(k[0] == "novelty" and v["sum_x"] > 0 for k, v in expected.items())  # late days have events
    for key, exp in expected.items():
        for column, value in exp.items():
            assert math.isclose(float(got[key][column]), value, rel_tol=1e-9, abs_tol=1e-12), (key, column)


def _query(engine: Any, source: Any = None) -> str:
    return build_exposure_day_query(METRICS, experiment=1, dialect=engine.dialect, as_of=END, end=END, source=source)


def _store_source(engine: Any) -> Any:
    from abcore.analysis.sql import QuerySource

    return QuerySource(events=engine.relation("ab_experiment_results"), assignments=engine.relation("ab_user_assignments"))


def test_store_and_duckdb_match_pandas(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load(sa)
        check(store_engine(sa).run(_query(store_engine(sa))))
    finally:
        sa.dispose()
    duck = duckdb_engine(store_url=db_url)
    check(duck.run(_query(duck, _store_source(duck))))


def test_spark_matches_pandas(spark: Any, sqlite_url: str) -> None:
    sa = make_engine(sqlite_url)
    try:
        load(sa)
    finally:
        sa.dispose()
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    check(engine.run(_query(engine, _store_source(engine))))
