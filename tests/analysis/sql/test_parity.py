"""Engine parity: the one analysis query on SQLite, PostgreSQL, DuckDB and Spark local[2], against a pandas oracle.

The expected numbers come from ``parity_data.oracle`` (pandas/numpy on the raw rows, the
independent source). Integer statistics and exact quantiles must be identical, floats within
1e-9 relative.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import insert
from sqlalchemy.engine import Engine as SAEngine

from abcore.analysis.engines import (
    compute_stats,
    duckdb_engine,
    load_source_config,
    spark_engine,
    store_engine,
)
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant
from tests.analysis.sql.parity_data import END, METRICS, SOURCE_NAME, oracle, rows

EXPERIMENT_ID = 1
VARIANTS = (1, 2)


def load(engine: SAEngine) -> None:
    """Write the parity data set into a migrated store (alias metrics get their own copy of the events)."""
    assignments, events = rows()
    with engine.begin() as conn:
        conn.execute(insert(Experiment.__table__).values(id=EXPERIMENT_ID, name="parity", salt="s", status="running",
                                                         targeting=[], secondary_metrics=[], guardrail_metrics=[],
                                                         success_criteria={}))
        conn.execute(insert(Experiment.__table__).values(id=2, name="other", salt="t", status="running", targeting=[],
                                                         secondary_metrics=[], guardrail_metrics=[], success_criteria={}))
        for v in VARIANTS:
            conn.execute(insert(Variant.__table__).values(id=v, experiment_id=EXPERIMENT_ID, name=f"v{v}",
                                                          allocation_pct=50.0, config={}, is_control=v == 1, position=v))
        conn.execute(insert(UserAssignment.__table__), [
            {"user_id": a["user_id"], "experiment_id": EXPERIMENT_ID, "variant_id": a["variant"],
             "attributes": a["attributes"], "assigned_at": END} for a in assignments
        ])
        payload = []
        for e in events:
            names = [e["metric_name"]] + [alias for alias, src in SOURCE_NAME.items() if src == e["metric_name"]]
            for name in names:
                payload.append({"experiment_id": EXPERIMENT_ID, "user_id": e["user_id"], "event_type": e["event_type"],
                                "metric_name": name, "value": e["value"], "ts": e["ts"], "properties": {}})
        # The same exposures in another experiment must not leak in.
        payload += [{**p, "experiment_id": 2} for p in payload[:20]]
        conn.execute(insert(ExperimentEvent.__table__), payload)


def check(result: list[Any], expected: dict[tuple[str, int, str], dict[str, float]]) -> None:
    got = {(r.metric, int(r.variant), r.segment): r for r in result}
    assert set(got) == set(expected)
    for key, exp in expected.items():
        r = got[key]
        assert r.n == exp["n"], key
        if "q_value" in exp:
            assert r.q_n == exp["q_n"], key
            assert r.q_value == exp["q_value"], key  # exact: the same stored value
            continue
        for f in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"):
            assert math.isclose(getattr(r, f), exp[f], rel_tol=1e-9, abs_tol=1e-12), (key, f, getattr(r, f), exp[f])


CASES = [dict(end=END), dict(end=END, segment="country"), dict(end=END, cuped=True)]


def _run_all(engine: Any, source: Any = None, cases: list[dict[str, Any]] = CASES) -> None:
    for opts in cases:
        check(
            compute_stats(EXPERIMENT_ID if source is None else "parity", METRICS, engine=engine, source=source, **opts),
            oracle(segment=opts.get("segment"), cuped=bool(opts.get("cuped"))),
        )


def test_store_engine_matches_oracle(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load(sa)
        _run_all(store_engine(sa))
    finally:
        sa.dispose()


def test_daily_new_users_match_pandas(db_url: str) -> None:
    """Daily series: population users per UTC day of first exposure (pandas on the raw rows as the oracle)."""
    from abcore.analysis.sql import build_daily_query
    from tests.analysis.sql.parity_data import oracle_daily

    sa = make_engine(db_url)
    try:
        load(sa)
        for engine in (store_engine(sa), duckdb_engine(store_url=db_url)):
            sql = build_daily_query(experiment=EXPERIMENT_ID, dialect=engine.dialect, end=END,
                                    source=None if engine.name == "store" else _store_source(engine))
            got = {(int(r["day"]), int(r["variant"])): int(r["users"]) for r in engine.run(sql)}
            assert got == oracle_daily()
    finally:
        sa.dispose()


def _store_source(engine: Any) -> Any:
    from abcore.analysis.sql import QuerySource

    return QuerySource(events=engine.relation("ab_experiment_results"), assignments=engine.relation("ab_user_assignments"))


def test_binomial_rows_give_binary_summaries(sqlite_url: str) -> None:
    sa = make_engine(sqlite_url)
    try:
        load(sa)
        rows_ = compute_stats(EXPERIMENT_ID, METRICS[:1], engine=store_engine(sa), end=END)
    finally:
        sa.dispose()
    exp = oracle()
    for r in rows_:
        # oracle: number of population users with a click after first exposure
        assert r.binary.n == exp[("click", r.variant, "(all)")]["n"]
        assert r.binary.conversions == exp[("click", r.variant, "(all)")]["sum_y"]


def test_duckdb_over_the_store_matches_oracle(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load(sa)
    finally:
        sa.dispose()
    engine = duckdb_engine(store_url=db_url)
    # Both scanners ship in the duckdb-ext-* wheels: no copy through Python.
    assert engine.store_mode in ("sqlite_scanner", "postgres_scanner")
    _run_all(engine)


def _write_files(tmp_path: Path) -> Path:
    """The parity data as Parquet events + a Parquet exposure table with their own column names."""
    assignments, events = rows()
    expanded = []
    for e in events:
        for name in [e["metric_name"]] + [a for a, s in SOURCE_NAME.items() if s == e["metric_name"]]:
            expanded.append({**e, "metric_name": name})
    ev = pd.DataFrame(expanded).rename(columns={"user_id": "uid", "ts": "event_time", "event_type": "kind",
                                                "metric_name": "name", "value": "amount"})
    ev["exp"] = "parity"
    ev["event_time"] = ev["event_time"].dt.tz_convert("UTC").dt.tz_localize(None)
    ev.to_parquet(tmp_path / "events.parquet")
    variant = {a["user_id"]: a["variant"] for a in assignments}
    country = {a["user_id"]: a["attributes"].get("country") for a in assignments}
    ex = ev[ev.kind == "exposure"][["uid", "event_time", "exp"]].copy()
    ex["arm"] = ex.uid.map(variant)
    ex["country"] = ex.uid.map(country)
    ex.to_parquet(tmp_path / "exposures.parquet")
    config = {
        "events": {"path": str(tmp_path / "events.parquet"), "format": "parquet",
                   "columns": {"user_id": "uid", "timestamp": "event_time", "event_type": "kind",
                               "metric_name": "name", "value": "amount", "experiment": "exp"}},
        "exposures": {"path": str(tmp_path / "exposures.parquet"), "format": "parquet",
                      "columns": {"user_id": "uid", "timestamp": "event_time", "variant": "arm", "experiment": "exp"},
                      "segments": ["country"]},
    }
    path = tmp_path / "source.json"
    path.write_text(json.dumps(config))
    return path


def test_duckdb_over_parquet_with_a_column_mapping_matches_oracle(tmp_path: Path) -> None:
    source = load_source_config(_write_files(tmp_path))
    _run_all(duckdb_engine(), source)


def test_spark_matches_oracle(spark: Any, sqlite_url: str, tmp_path: Path) -> None:
    """Spark local[2]: the store copied into views, and the Parquet source read by Spark itself."""
    sa = make_engine(sqlite_url)
    try:
        load(sa)
    finally:
        sa.dispose()
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    # Two of the three cases (Spark plans each query for seconds on this 2-core machine): CUPED on
    # the store copy, segments on the Parquet source; the plain case is their y part.
    _run_all(engine, cases=[CASES[2]])
    _run_all(engine, load_source_config(_write_files(tmp_path)), cases=[CASES[1]])


def test_analysis_statements_on_one_connection_match_oracle(db_url: str) -> None:
    """build_analysis_statements (SQLite: a TEMP population keyed by user_id, then the query) gives the
    oracle's sums (pandas on the raw rows, parity_data.oracle) and leaves no TEMP table behind."""
    from types import SimpleNamespace

    from sqlmodel import Session

    from abcore.analysis.sql.build import build_analysis_statements

    sa = make_engine(db_url)
    load(sa)
    for cuped in (False, True):
        plan = build_analysis_statements(METRICS, experiment=EXPERIMENT_ID, dialect=sa.dialect.name, end=END,
                                         cuped=cuped)
        assert bool(plan.prelude) == (sa.dialect.name == "sqlite")
        for target in (sa, Session(sa)):  # an Engine (own connection) and a Session (its connection)
            got = store_engine(target).run_all(plan.prelude, plan.query, plan.cleanup)
            stats = [SimpleNamespace(**{k: (v if v is not None else 0.0) if k.startswith("sum") else v
                                        for k, v in r.items()}) for r in got if r["part"] == "stats"]
            check(stats, oracle(cuped=cuped))
            if sa.dialect.name == "sqlite":
                conn = target.connection() if isinstance(target, Session) else sa.connect()
                left = conn.exec_driver_sql("SELECT name FROM sqlite_temp_master WHERE type = 'table'").all()
                assert left == []
                conn.close()
            if isinstance(target, Session):
                target.close()  # ends its transaction (PostgreSQL: the schema drop waits for it otherwise)
    sa.dispose()
