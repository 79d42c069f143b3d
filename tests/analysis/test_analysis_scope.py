"""abcore.analysis.queries.AnalysisScope (the shared population of one analysis) on SQLite and PostgreSQL.

Every expected number comes from a plain-Python reference over the same rows (the rules of the
abcore.analysis.queries module docstring applied by hand) or from numpy (``method="inverted_cdf"`` is the
nearest-rank percentile). The cases aim at the scope's shortcuts: the per-user pass that computes
only what the metric's kind needs, the binned percentiles, integer day keys and temp tables.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, inspect
from sqlmodel import Session

from abcore.analysis import queries
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 2, 1, tzinfo=UTC)


def _load(session: Session, rng: np.random.Generator) -> tuple[Experiment, dict[str, Variant], list[dict[str, Any]],
                                                                dict[str, int]]:
    exp = Experiment(name="scope", salt="s", started_at=T0)
    session.add(exp)
    session.commit()
    arms = {
        name: Variant(experiment_id=exp.id, name=name, allocation_pct=50, is_control=i == 0, position=i)
        for i, name in enumerate(["A", "B"])
    }
    session.add_all(arms.values())
    session.commit()
    variant_of: dict[str, int] = {}
    assignments = []
    for i in range(60):
        user = f"u{i:03d}"
        variant_of[user] = arms["A" if i % 2 else "B"].id  # type: ignore[assignment]
        attributes = {} if i % 7 == 0 else {"country": ["DE", "US", "FR"][i % 3]}  # some without: "(none)"
        assignments.append({"user_id": user, "experiment_id": exp.id, "variant_id": variant_of[user],
                            "attributes": attributes, "assigned_at": T0})
    events: list[dict[str, Any]] = []

    def event(user: str, kind: str, metric: str | None, value: float | None, ts: datetime) -> None:
        events.append({"experiment_id": exp.id, "variant_id": None, "user_id": user, "event_type": kind,
                       "metric_name": metric, "value": value, "properties": {}, "ts": ts, "request_id": None,
                       "event_key": None})

    for i in range(55):  # u055..u059 never exposed; x-users exposed but never assigned
        user = f"u{i:03d}"
        for _ in range(1 + i % 3):
            # exposures from one day before the start (outside a window starting at T0) to day 6
            event(user, "exposure", None, None, T0 + timedelta(hours=float(rng.uniform(-24, 24 * 6))))
    for user in ["x1", "x2", "u056"]:
        event(user, "conversion", "mixed", 5.0, T0 + timedelta(hours=3))
        event(user, "conversion", "flag", 1.0, T0 + timedelta(hours=3))
        if user.startswith("x"):
            event(user, "exposure", None, None, T0 + timedelta(hours=1))
    for _ in range(400):
        user = f"u{int(rng.integers(0, 60)):03d}"
        ts = T0 + timedelta(hours=float(rng.uniform(-24, 24 * 7)))
        # "mixed": a mean metric with 0/1 values, negatives, NULLs (= 1) and repeated values
        choice = rng.random()
        mixed = None if choice < 0.1 else float(rng.choice([0.0, 1.0, -2.5, 7.25, round(float(rng.normal(3, 4)), 2)]))
        event(user, "conversion", "mixed", mixed, ts)
        # "flag": a 0/1 conversion metric with zeros and NULLs
        flag = None if rng.random() < 0.2 else float(rng.integers(0, 2))
        event(user, "conversion", "flag", flag, ts + timedelta(minutes=5))
    for i in range(0, 55, 5):  # "constant": every value equal (a single percentile bin)
        event(f"u{i:03d}", "conversion", "constant", 4.0, T0 + timedelta(hours=5))
    session.connection().execute(insert(UserAssignment.__table__), assignments)  # type: ignore[attr-defined]
    session.connection().execute(insert(ExperimentEvent.__table__), events)  # type: ignore[attr-defined]
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        session.connection().exec_driver_sql("ANALYZE ab_experiment_results, ab_user_assignments")
        session.commit()
    return exp, arms, events, variant_of


def _reference(events: list[dict[str, Any]], variant_of: dict[str, int], start: datetime | None,
               end: datetime | None) -> dict[str, Any]:
    """The module docstring's rules, by hand: population, per-user values, daily series, raw values."""
    def inside(e: dict[str, Any]) -> bool:
        return (start is None or e["ts"] >= start) and (end is None or e["ts"] < end)

    first: dict[str, datetime] = {}
    for e in events:
        if e["event_type"] == "exposure" and inside(e) and e["user_id"] in variant_of:
            first[e["user_id"]] = min(first.get(e["user_id"], e["ts"]), e["ts"])
    population = {u: variant_of[u] for u in first}
    per_user: dict[tuple[str, str], list[float]] = defaultdict(list)
    raw: dict[tuple[str, int], list[float]] = defaultdict(list)
    day_sum: dict[tuple[date, int, str], float] = defaultdict(float)
    first_conv: dict[tuple[str, str], datetime] = {}
    for e in events:
        if e["event_type"] != "conversion" or not inside(e) or e["user_id"] not in population:
            continue
        value = 1.0 if e["value"] is None else e["value"]
        key = (e["metric_name"], e["user_id"])
        per_user[key].append(value)
        if e["value"] is not None:
            raw[(e["metric_name"], population[e["user_id"]])].append(e["value"])
        day_sum[(e["ts"].date(), population[e["user_id"]], e["metric_name"])] += value
        if value >= 1:
            first_conv[key] = min(first_conv.get(key, e["ts"]), e["ts"])
    daily_users: dict[tuple[date, int], int] = defaultdict(int)
    for u, ts in first.items():
        daily_users[(ts.date(), population[u])] += 1
    first_days: dict[tuple[date, int, str], int] = defaultdict(int)
    for (metric, user), ts in first_conv.items():
        first_days[(ts.date(), population[user], metric)] += 1
    return {"population": population, "per_user": per_user, "raw": raw, "day_sum": day_sum,
            "daily_users": daily_users, "first_days": first_days}


def _country(user: str) -> str:
    i = int(user[1:])
    return "(none)" if i % 7 == 0 else ["DE", "US", "FR"][i % 3]


def _check_metric_stats(
    scope: queries.AnalysisScope, ref: dict[str, Any], users: dict[int, int], metrics: list[str], arms: dict[str, Any]
) -> None:
    """The scope's per-user sufficient statistics per (metric, variant) equal the reference (users without events count 0)."""
    stats = {(s.metric, s.variant_id): s for s in scope.metric_stats(metrics)}
    for metric in metrics:
        for v, n in users.items():
            vals = [sum(ref["per_user"][(metric, u)]) for u, vv in ref["population"].items()
                    if vv == v and (metric, u) in ref["per_user"]]
            flat = [x for u, vv in ref["population"].items() if vv == v
                    for x in ref["per_user"].get((metric, u), [])]
            s = stats[(metric, v)]
            assert s.users == n
            assert s.users_with_events == len(vals)
            assert s.sum == pytest.approx(sum(vals))
            assert s.sum_squares == pytest.approx(sum(x * x for x in vals))
            converted = sum(1 for u, vv in ref["population"].items()
                            if vv == v and any(x >= 1 for x in ref["per_user"].get((metric, u), [])))
            assert s.converted == converted
            assert s.non_binary_values == sum(1 for x in flat if x not in (0.0, 1.0))
    assert stats[("flag", arms["A"].id)].non_binary_values == 0  # a 0/1 metric (NULL = 1)


def _check_segment_stats(scope: queries.AnalysisScope, ref: dict[str, Any], metrics: list[str]) -> None:
    """The same statistics per (variant, segment) of the assignment attribute "country"."""
    by_segment = {(s.metric, s.variant_id, s.segment): s for s in scope.segment_metric_stats(metrics, "country")}
    seg_users: dict[tuple[int, str | None], int] = defaultdict(int)
    for u, v in ref["population"].items():
        seg_users[(v, _country(u))] += 1
    assert scope.segment_users("country") == dict(seg_users)
    assert len(by_segment) == len(seg_users) * len(metrics)
    for metric in metrics:
        for (v, seg), n in seg_users.items():
            vals = [sum(ref["per_user"][(metric, u)]) for u, vv in ref["population"].items()
                    if vv == v and _country(u) == seg and (metric, u) in ref["per_user"]]
            s = by_segment[(metric, v, seg)]
            assert (s.users, s.users_with_events) == (n, len(vals))
            assert s.sum == pytest.approx(sum(vals))
            assert s.sum_squares == pytest.approx(sum(x * x for x in vals))
            assert s.converted == sum(
                1 for u, vv in ref["population"].items()
                if vv == v and _country(u) == seg and any(x >= 1 for x in ref["per_user"].get((metric, u), []))
            )


@pytest.mark.parametrize("guess", [None, True, False], ids=["guessed", "all-mean", "all-binary"])
@pytest.mark.parametrize("window", [(None, None), (T0, T0 + timedelta(days=5))], ids=["open", "window"])
def test_scope_matches_a_python_reference(
    session: Session, window: tuple[Any, Any], guess: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if guess is not None:  # a wrong guess of a metric's kind only changes which query computes what
        monkeypatch.setattr(queries.AnalysisScope, "_looks_non_binary", lambda self, metric, sample=0: guess)
    exp, arms, events, variant_of = _load(session, np.random.default_rng(11))
    start, end = window
    ref = _reference(events, variant_of, start, end)
    metrics = ["mixed", "flag", "constant"]
    with queries.AnalysisScope(session, exp.id, start, end) as scope:  # type: ignore[arg-type]
        # population and new users per day (first exposure in the window)
        assert {(r.day, r.variant_id): r.new_users for r in scope.daily_users()} == dict(ref["daily_users"])
        users = defaultdict(int)
        for v in ref["population"].values():
            users[v] += 1
        assert scope.exposed_users() == {(v, None): n for v, n in users.items()}

        _check_metric_stats(scope, ref, users, metrics, arms)
        _check_segment_stats(scope, ref, metrics)

        # daily series of both kinds, also for the "other" kind (computed on demand)
        for sum_metrics, binary_metrics in ((["mixed"], ["flag"]), (["flag"], ["mixed"])):
            got = {(r.day, r.variant_id, r.metric): r.value for r in scope.daily_metric(sum_metrics, binary_metrics)}
            want = {k: x for k, x in ref["day_sum"].items() if k[2] in sum_metrics}
            want.update({k: float(n) for k, n in ref["first_days"].items() if k[2] in binary_metrics})
            assert got.keys() == want.keys()
            for k, x in want.items():
                assert got[k] == pytest.approx(x), k

        # exact nearest-rank percentiles: numpy inverted_cdf on the raw non-NULL values
        pct = {(p.metric, p.variant_id): p for p in scope.percentile_stats(metrics, (1, 25, 50, 90, 95, 99, 100))}
        for (metric, v), vals in ref["raw"].items():
            p = pct[(metric, v)]
            assert p.count == len(vals)
            assert (p.min, p.max) == (min(vals), max(vals))
            assert p.mean == pytest.approx(float(np.mean(vals)))
            for q, x in p.percentiles.items():
                assert x == np.percentile(vals, q, method="inverted_cdf"), (metric, v, q)
        assert set(pct) == set(ref["raw"])
    # the temporary tables are gone (same connection, same transaction)
    if session.get_bind().dialect.name == "sqlite":
        left = session.connection().exec_driver_sql("SELECT name FROM sqlite_temp_master WHERE name LIKE 'abq_%'")
        assert left.fetchall() == []
    else:
        assert not [t for t in inspect(session.connection()).get_temp_table_names() if t.startswith("abq_")]


def test_standalone_functions_agree_with_one_scope(session: Session) -> None:
    """The public functions open their own scope; the analysis shares one: same answers."""
    exp, _arms, _events, _variant_of = _load(session, np.random.default_rng(3))
    kwargs: dict[str, Any] = {"session": session, "experiment_id": exp.id, "start": T0, "end": None}
    with queries.AnalysisScope(session, exp.id, T0, None) as scope:  # type: ignore[arg-type]
        assert queries.daily_users(**kwargs) == scope.daily_users()
        assert queries.metric_stats(metrics=["mixed", "flag"], **kwargs) == scope.metric_stats(["mixed", "flag"])
        assert queries.percentile_stats(metrics=["mixed"], **kwargs) == scope.percentile_stats(["mixed"])
        assert queries.daily_metric(sum_metrics=["mixed"], binary_metrics=["flag"], **kwargs) == \
            scope.daily_metric(["mixed"], ["flag"])
    assert not math.isnan(queries.percentile_stats(metrics=["constant"], **kwargs)[0].percentiles[50])
