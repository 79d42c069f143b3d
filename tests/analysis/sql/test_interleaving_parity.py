"""The interleaving query on SQLite, PostgreSQL, DuckDB and Spark against a pandas oracle on the raw rows.

The data: three rankers, users with one to three impressions (some asked twice, as page 1 and page 2 of the
same impression), clicks inside the metric's window, before the impression, after the window, on items not
shown, on items credited to no one, repeated clicks beyond the cap, another metric and another experiment.
Expected numbers: pandas on the raw rows (the credit rule written out below), integers exact, floats 1e-9.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert
from sqlalchemy.engine import Engine as SAEngine

from abcore.analysis.engines import duckdb_engine, query_source, spark_engine, store_engine
from abcore.analysis.interleaving import pair_counts
from abcore.analysis.sql.interleaving import build_interleaving_query
from abcore.assign.interleaving import merge
from abcore.metrics import MetricSpec
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 3, 1, tzinfo=UTC)
END = T0 + timedelta(days=5)
RANKERS = ("r0", "r1", "r2")
METRIC = MetricSpec(name="click", kind="count", window_hours=1.0, cap="absolute", cap_upper=2.0)


def raw_rows(seed: int = 11) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(impression rows, click rows)``: one impression row per position (``item``, ``owner``, ``position``)."""
    rng = np.random.default_rng(seed)
    pool = [f"item{k}" for k in range(14)] + [7, 8]  # some integer item ids
    impressions: list[dict[str, Any]] = []
    clicks: list[dict[str, Any]] = []
    for u in range(70):
        user = f"u{u}"
        for k in range(int(rng.integers(1, 4))):
            imp = f"imp-{u}-{k}"
            ts = T0 + timedelta(minutes=int(rng.integers(0, 5000)))
            lists = [[pool[i] for i in rng.permutation(len(pool))[:6]] for _ in RANKERS]
            items, owners = merge("team_draft", lists, 6, int(rng.integers(0, 2**63)))
            owners = [None if rng.random() < 0.1 else o for o in owners]  # some positions credited to no one
            pages = [(ts, 4), (ts + timedelta(minutes=2), 6)] if rng.random() < 0.3 else [(ts, 6)]
            for page_ts, length in pages:  # page 2 repeats page 1's positions (same impression id)
                for pos in range(length):
                    owner = None if owners[pos] is None else RANKERS[owners[pos]]
                    impressions.append({"user_id": user, "impression": imp, "item": items[pos], "owner": owner,
                                        "position": pos + 1, "ts": page_ts})
            for _ in range(int(rng.poisson(1.6))):
                item = items[int(rng.integers(0, 6))] if rng.random() < 0.85 else "not-shown"
                offset = float(rng.choice([-10.0, 1.0, 20.0, 59.0, 61.0, 200.0]))  # minutes after the impression
                metric = "click" if rng.random() < 0.9 else "purchase"
                for _repeat in range(1 if rng.random() < 0.8 else 3):
                    clicks.append({"user_id": user, "impression": imp, "item": item, "metric": metric,
                                   "ts": ts + timedelta(minutes=offset)})
    return impressions, clicks


def oracle(impressions: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """pandas on the raw rows: credit = clicks of metric ``click`` on an owned item of the click's impression,
    at or after the impression's first row and less than 1 hour after it; per user and ranker clipped to 2."""
    imp = pd.DataFrame(impressions)
    imp["item"] = imp["item"].astype(str)
    first = imp.groupby(["user_id", "impression"], as_index=False)["ts"].min().rename(columns={"ts": "imp_ts"})
    owned = imp[imp.owner.notna()][["user_id", "impression", "item", "owner"]].drop_duplicates()
    c = pd.DataFrame(clicks)
    c["item"] = c["item"].astype(str)
    c = c[c.metric == "click"].merge(first, on=["user_id", "impression"]).merge(owned, on=["user_id", "impression", "item"])
    c = c[(c.ts >= c.imp_ts) & (c.ts < c.imp_ts + pd.Timedelta(hours=1))]
    credit = c.groupby(["user_id", "owner"]).size().clip(upper=2).unstack(fill_value=0)
    users = first.groupby("user_id").size().rename("n_imp").to_frame()
    for r in RANKERS:
        users[r] = credit[r].reindex(users.index, fill_value=0) if r in credit else 0
    out = {}
    for i, a in enumerate(RANKERS):
        for b in RANKERS[i + 1:]:
            diff = (users[a] - users[b]).astype(float)
            n = users["n_imp"].astype(float)
            out[(a, b)] = {
                "users": len(users), "wins": int((users[a] > users[b]).sum()), "losses": int((users[a] < users[b]).sum()),
                "ties": int(((users[a] == users[b]) & (users[a] > 0)).sum()),
                "sum_d": diff.sum(), "sum_d2": (diff**2).sum(), "sum_n": n.sum(), "sum_n2": (n**2).sum(),
                "sum_dn": (diff * n).sum(),
            }
    return out


def load(engine: SAEngine) -> None:
    impressions, clicks = raw_rows()
    with engine.begin() as conn:
        for exp_id in (1, 2):
            conn.execute(insert(Experiment.__table__).values(
                id=exp_id, name=f"rank{exp_id}", salt="s", status="running", kind="interleaving",
                interleaving_method="team_draft", targeting=[], secondary_metrics=[], guardrail_metrics=[],
                success_criteria={}, primary_metric="click"))
        for k, name in enumerate(RANKERS, start=1):
            conn.execute(insert(Variant.__table__).values(id=k, experiment_id=1, name=name, allocation_pct=100 / 3,
                                                          config={}, is_control=k == 1, position=k))
        users = sorted({r["user_id"] for r in impressions})
        conn.execute(insert(UserAssignment.__table__), [
            {"user_id": u, "experiment_id": 1, "variant_id": 1, "attributes": {}, "assigned_at": T0} for u in users])
        payload = [{"experiment_id": 1, "variant_id": 1, "user_id": r["user_id"], "event_type": "impression",
                    "metric_name": None, "value": float(r["position"]), "ts": r["ts"],
                    "properties": {"impression": r["impression"], "item": r["item"], "owner": r["owner"]}}
                   for r in impressions]
        payload += [{"experiment_id": 1, "variant_id": 1, "user_id": r["user_id"], "event_type": "conversion",
                     "metric_name": r["metric"], "value": 1.0, "ts": r["ts"],
                     "properties": {"item": r["item"], "impression": r["impression"]}} for r in clicks]
        payload += [{**p, "experiment_id": 2} for p in payload[:200]]  # another experiment must not leak in
        conn.execute(insert(ExperimentEvent.__table__), payload)


def check(engine: Any) -> None:
    sql = build_interleaving_query(experiment=1, rankers=RANKERS, metric=METRIC, dialect=engine.dialect,
                                   source=query_source(engine), end=END)
    got = {(r["ranker_a"], r["ranker_b"]): pair_counts(r) for r in engine.run(sql)}
    expected = oracle(*raw_rows())
    assert set(got) == set(expected)
    for key, exp in expected.items():
        counts = got[key]
        for field in ("users", "wins", "losses", "ties"):
            assert getattr(counts, field) == exp[field], (key, field)
        for field in ("sum_d", "sum_d2", "sum_n", "sum_n2", "sum_dn"):
            assert math.isclose(getattr(counts, field), exp[field], rel_tol=1e-9, abs_tol=1e-12), (key, field)
    assert sum(c.wins + c.losses for c in got.values()) > 30  # the data exercises the rule


def test_oracle_sanity() -> None:
    # The data holds every case the rule distinguishes.
    impressions, clicks = raw_rows()
    assert any(r["owner"] is None for r in impressions)
    assert any(c["item"] == "not-shown" for c in clicks) and any(c["metric"] == "purchase" for c in clicks)
    counts = pd.DataFrame(impressions).groupby(["user_id", "impression", "position"]).size()
    assert (counts > 1).any()  # pages repeated


def test_store_engine_matches_pandas(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load(sa)
        check(store_engine(sa))
    finally:
        sa.dispose()


def test_duckdb_over_the_store_matches_pandas(db_url: str) -> None:
    sa = make_engine(db_url)
    try:
        load(sa)
    finally:
        sa.dispose()
    check(duckdb_engine(store_url=db_url))


@pytest.mark.filterwarnings("ignore")
def test_spark_matches_pandas(spark: Any, sqlite_url: str) -> None:
    sa = make_engine(sqlite_url)
    try:
        load(sa)
    finally:
        sa.dispose()
    engine = spark_engine(spark)
    engine.load_store(sqlite_url)
    check(engine)
