"""``analyze`` applies metric definitions (abcore.analysis.sql.build via abcore.analysis.engines), on SQLite and PostgreSQL.

Every expected number is computed here from the raw rows with numpy/pandas (the oracle), with the
formula's source named where a test statistic is derived by hand: Welch (scipy.stats.ttest_ind),
z-test of proportions (statsmodels), delta method (Deng, Knoblich & Lu 2018, eq. 4), quantile
interval (Deng, Knoblich & Lu 2018 section 4: order statistics at ranks n q -/+ z sqrt(n q (1 - q))).
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from sqlmodel import Session

from abcore.analysis.pipeline import analyze
from abcore.metrics import MetricCreate, define_metric
from tests.factories import T0, add_data, completed_experiment

HOUR = timedelta(hours=1)
Z = sps.norm.ppf(0.975)


def _load(session: Session, *, primary: str = "conv", secondary: list[str] | None = None, seed: int = 7) -> dict[str, Any]:
    """~80 users per arm, exposures spread over 3 days; every metric's events before and after exposure.

    Returns the raw frames (exposures, events) the oracle works on.
    """
    exp, arms = completed_experiment(session, primary_metric=primary, secondary_metrics=secondary or [],
                                started_at=T0, stopped_at=T0 + timedelta(days=10))
    rng = np.random.default_rng(seed)
    users, events, exposures = [], [], []
    for arm, name in ((arms["A"], "A"), (arms["B"], "B")):
        for k in range(80):
            u = f"{name}{k}"
            users.append((u, arm, {"country": "DE" if k % 2 else "US"}))
            first = T0 + timedelta(hours=float(rng.uniform(0, 72)))
            exposures.append({"user_id": u, "variant": name, "first": first})
            # a second, later exposure changes nothing
            events.append({"user_id": u, "event_type": "exposure", "ts": first})
            events.append({"user_id": u, "event_type": "exposure", "ts": first + 5 * HOUR})
            lift = 1.3 if name == "B" else 1.0
            for metric, rate in (("conv", 0.8), ("revenue", 2.0 * lift), ("sessions", 3.0), ("latency", 4.0)):
                for _ in range(int(rng.poisson(rate))):
                    # offsets from -30 h (before exposure: never counted post) to +60 h
                    ts = first + timedelta(hours=float(rng.uniform(-30, 60)))
                    if ts < T0:
                        ts = T0 + timedelta(minutes=1)
                    value: float | None
                    if metric == "conv":
                        value = None  # a bare conversion event
                    elif metric == "sessions":
                        value = 1.0
                    elif metric == "latency":
                        value = float(np.round(rng.lognormal(5, 0.5) * lift, 3))
                    else:
                        value = float(np.round(rng.exponential(20.0) * lift, 2))
                    events.append({"user_id": u, "event_type": "conversion", "metric_name": metric,
                                   "value": value, "ts": ts})
    # A pre-exposure conversion of an otherwise inactive user: must not count.
    events.append({"user_id": "A0", "event_type": "conversion", "metric_name": "conv", "value": None,
                   "ts": exposures[0]["first"] - 2 * HOUR})
    add_data(session, exp, users, events)
    ev = pd.DataFrame([e for e in events if e["event_type"] == "conversion"])
    return {"exp": exp, "exposures": pd.DataFrame(exposures), "events": ev}


def _per_user(data: dict[str, Any], metric: str, *, how: str, delay_h: float = 0.0,
              window_h: float | None = None) -> pd.DataFrame:
    """The oracle: per exposed user, the metric over events at/after first exposure + delay (inside the window)."""
    pop = data["exposures"].copy()
    ev = data["events"][data["events"].metric_name == metric].merge(pop, on="user_id")
    lo = ev["first"] + pd.to_timedelta(delay_h, unit="h")
    keep = ev.ts >= lo
    if window_h is not None:
        keep &= ev.ts < lo + pd.to_timedelta(window_h, unit="h")
    ev = ev[keep].copy()
    ev["v"] = ev.value.fillna(1.0)
    if how == "binomial":
        agg = ev.groupby("user_id").size().clip(upper=1)
    elif how == "count":
        agg = ev.groupby("user_id").size()
    else:
        agg = ev.groupby("user_id").v.sum()
    pop["y"] = pop.user_id.map(agg).fillna(0.0).astype(float)
    return pop


def _arms(pop: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return pop[pop.variant == "A"].y.to_numpy(), pop[pop.variant == "B"].y.to_numpy()


def test_binomial_counts_only_after_exposure_with_delay_and_window(session: Session) -> None:
    data = _load(session)
    define_metric(session=session, data=MetricCreate(name="conv", kind="binomial", delay_hours=1, window_hours=24))
    res = analyze(data["exp"].id, session=session, correction="none", percentiles=False)
    r = res.result("conv")
    a, b = _arms(_per_user(data, "conv", how="binomial", delay_h=1, window_h=24))
    assert (r.kind, r.metric_kind, res.engine) == ("binary", "binomial", "store")
    assert (r.control_users, r.users) == (len(a), len(b)) == (80, 80)
    assert (r.control_conversions, r.conversions) == (int(a.sum()), int(b.sum()))
    # every event counted: strictly fewer conversions than users with any event (pre-exposure ones dropped)
    assert int(a.sum()) < data["events"][data["events"].metric_name == "conv"].user_id.str.startswith("A").sum()
    # unpooled two-proportion z-test by hand: (p_b - p_a) / sqrt(p_a q_a / n_a + p_b q_b / n_b)
    z = (b.mean() - a.mean()) / math.sqrt(a.mean() * (1 - a.mean()) / len(a) + b.mean() * (1 - b.mean()) / len(b))
    assert r.test.p_value == pytest.approx(2 * sps.norm.sf(abs(z)), rel=1e-9)
    # the daily series ends at the headline rates
    last = max(p.day for p in res.daily)
    assert {p.variant: p.value for p in res.daily if p.day == last and p.metric == "conv"} == \
        pytest.approx({"A": a.mean(), "B": b.mean()})
    assert not any("not applied" in w for w in res.warnings)


def test_count_and_mean_per_user_after_exposure(session: Session) -> None:
    data = _load(session, primary="sessions", secondary=["revenue"])
    define_metric(session=session, data=MetricCreate(name="sessions", kind="count"))
    define_metric(session=session, data=MetricCreate(name="revenue", kind="mean", window_hours=48))
    res = analyze(data["exp"].id, session=session, correction="none")
    for metric, how, window in (("sessions", "count", None), ("revenue", "mean", 48.0)):
        r = res.result(metric)
        a, b = _arms(_per_user(data, metric, how=how, window_h=window))
        assert (r.kind, r.metric_kind) == ("mean", how)
        assert (r.control_value, r.value) == pytest.approx((a.mean(), b.mean()), rel=1e-12)
        assert r.control_std == pytest.approx(a.std(ddof=1), rel=1e-9)
        # scipy: Welch's t-test on the per-user values
        assert r.test.p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
        last = max(p.day for p in res.daily)
        assert {p.variant: p.value for p in res.daily if p.day == last and p.metric == metric} == \
            pytest.approx({"A": a.mean(), "B": b.mean()}, rel=1e-12)
    # percentile table: nearest rank (numpy inverted_cdf) of the qualifying event values
    ev = data["events"][data["events"].metric_name == "revenue"].merge(data["exposures"], on="user_id")
    ev = ev[(ev.ts >= ev["first"]) & (ev.ts < ev["first"] + pd.Timedelta(hours=48))]
    pct = next(p for p in res.percentiles if p.metric == "revenue" and p.variant_id == res.control.variant_id)
    vals = ev[ev.variant == "A"].value.to_numpy()
    assert pct.count == len(vals)
    assert pct.percentiles[95] == pytest.approx(np.quantile(vals, 0.95, method="inverted_cdf"))


def test_ratio_uses_the_delta_method(session: Session) -> None:
    data = _load(session, primary="rev_per_session")
    define_metric(session=session, data=MetricCreate(name="rev_per_session", kind="ratio", numerator="revenue",
                                                     denominator="sessions"))
    res = analyze(data["exp"].id, session=session, correction="none")
    r = res.result("rev_per_session")
    num = _per_user(data, "revenue", how="mean")
    den = _per_user(data, "sessions", how="mean")

    def delta(variant: str) -> tuple[float, float]:
        # Deng, Knoblich & Lu (2018) eq. 4, by hand with numpy on the per-user sums
        x = num[num.variant == variant].y.to_numpy()
        y = den[den.variant == variant].y.to_numpy()
        n, mx, my = len(x), x.mean(), y.mean()
        vx, vy, cxy = x.var(ddof=1), y.var(ddof=1), np.cov(x, y, ddof=1)[0, 1]
        return x.sum() / y.sum(), (vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4) / n

    (ra, va), (rb, vb) = delta("A"), delta("B")
    assert (r.kind, r.metric_kind) == ("ratio", "ratio")
    assert (r.control_value, r.value) == pytest.approx((ra, rb), rel=1e-12)
    se = math.sqrt(va + vb)
    assert r.test.std_error == pytest.approx(se, rel=1e-9)
    assert r.test.p_value == pytest.approx(2 * sps.norm.sf(abs(rb - ra) / se), rel=1e-9)
    assert (r.test.ci_low, r.test.ci_high) == pytest.approx((rb - ra - Z * se, rb - ra + Z * se), rel=1e-9)
    last = max(p.day for p in res.daily)
    assert {p.variant: p.value for p in res.daily if p.day == last and p.metric == "rev_per_session"} == \
        pytest.approx({"A": ra, "B": rb}, rel=1e-12)


def test_quantile_interval_matches_the_published_algorithm(session: Session) -> None:
    data = _load(session, primary="latency")
    define_metric(session=session, data=MetricCreate(name="latency", kind="quantile", quantile=0.9,
                                                     direction="decrease"))
    res = analyze(data["exp"].id, session=session, correction="none")
    r = res.result("latency")
    ev = data["events"][data["events"].metric_name == "latency"].merge(data["exposures"], on="user_id")
    ev = ev[ev.ts >= ev["first"]]

    def order_stats(variant: str) -> tuple[float, float]:
        # independent implementation: sort, ranks floor/ceil(n q -/+ z sqrt(n q (1-q))) clipped to [1, n]
        xs = np.sort(ev[ev.variant == variant].value.to_numpy())
        n, q = len(xs), 0.9
        half = Z * math.sqrt(n * q * (1 - q))
        lo = min(max(math.floor(n * q - half), 1), n)
        hi = min(max(math.ceil(n * q + half), 1), n)
        point = float(np.quantile(xs, q, method="inverted_cdf"))
        return point, ((xs[hi - 1] - xs[lo - 1]) / (2 * Z)) ** 2

    (qa, va), (qb, vb) = order_stats("A"), order_stats("B")
    assert (r.kind, r.metric_kind, r.direction) == ("quantile", "quantile", "decrease")
    assert (r.control_value, r.value) == pytest.approx((qa, qb))
    se = math.sqrt(va + vb)
    assert r.test.std_error == pytest.approx(se, rel=1e-9)
    assert r.test.p_value == pytest.approx(2 * sps.norm.sf(abs(qb - qa) / se), rel=1e-9)
    assert not [p for p in res.daily if p.metric == "latency"]  # no daily series for quantiles


@pytest.mark.parametrize("cap", ["percentile", "absolute"])
def test_capping_clips_per_user_values_with_pooled_bounds(session: Session, cap: str) -> None:
    data = _load(session, primary="revenue")
    upper = 0.9 if cap == "percentile" else 40.0
    define_metric(session=session, data=MetricCreate(name="revenue", kind="mean", cap=cap, cap_upper=upper))
    res = analyze(data["exp"].id, session=session, correction="none")
    r = res.result("revenue")
    pop = _per_user(data, "revenue", how="mean")
    # numpy: the bound is the nearest-rank percentile of every user's value (both arms pooled), then np.clip
    bound = float(np.quantile(pop.y, upper, method="inverted_cdf")) if cap == "percentile" else upper
    pop["y"] = np.clip(pop.y, None, bound)
    a, b = _arms(pop)
    assert (r.control_value, r.value) == pytest.approx((a.mean(), b.mean()), rel=1e-12)
    assert r.test.p_value == pytest.approx(sps.ttest_ind(b, a, equal_var=False).pvalue, rel=1e-9)
    last = max(p.day for p in res.daily)
    assert {p.variant: p.value for p in res.daily if p.day == last and p.metric == "revenue"} == \
        pytest.approx({"A": a.mean(), "B": b.mean()}, rel=1e-9)


def test_cuped_without_pre_exposure_data_warns(session: Session) -> None:
    data = _load(session, primary="conv", secondary=["revenue"])
    # no revenue event at all, so none before exposure; conv keeps its pre-exposure events
    session.connection().exec_driver_sql("DELETE FROM ab_experiment_results WHERE metric_name = 'revenue'")
    session.commit()
    res = analyze(data["exp"].id, session=session, cuped=True)
    assert "CUPED: no pre-exposure data for metric revenue; analysed without adjustment." in res.warnings
    assert not res.result("revenue").cuped
    assert res.result("conv").cuped
    assert not any("metric conv" in w for w in res.warnings)


def test_duckdb_engine_equals_the_store(session: Session) -> None:
    pytest.importorskip("duckdb", reason="the duckdb extra is not installed")
    data = _load(session, primary="conv", secondary=["revenue", "rev_per_session", "latency"])
    define_metric(session=session, data=MetricCreate(name="revenue", kind="mean", cap="percentile", cap_upper=0.95))
    define_metric(session=session, data=MetricCreate(name="rev_per_session", kind="ratio", numerator="revenue",
                                                     denominator="sessions"))
    define_metric(session=session, data=MetricCreate(name="latency", kind="quantile", quantile=0.5))
    store = analyze(data["exp"].id, session=session, cuped=True, segment="country")
    duck = analyze(data["exp"].id, session=session, cuped=True, segment="country", engine="duckdb")
    assert (store.engine, duck.engine) == ("store", "duckdb")
    for s, d in zip(store.metrics, duck.metrics, strict=True):
        assert (s.metric, s.kind, s.users, s.conversions) == (d.metric, d.kind, d.users, d.conversions)
        assert (s.value, s.control_value, s.test.p_value) == pytest.approx((d.value, d.control_value, d.test.p_value),
                                                                          rel=1e-9, nan_ok=True)
    assert [(p.day, p.variant, p.metric, p.users) for p in store.daily] == \
        [(p.day, p.variant, p.metric, p.users) for p in duck.daily]
    assert [p.value for p in store.daily] == pytest.approx([p.value for p in duck.daily], rel=1e-9, nan_ok=True)
    assert [(g.value, g.metric, g.users) for g in store.segments] == [(g.value, g.metric, g.users) for g in duck.segments]
    assert store.percentiles == duck.percentiles or [p.percentiles for p in store.percentiles] == \
        pytest.approx([p.percentiles for p in duck.percentiles])


def test_duckdb_percentiles_rank_ties_exactly(session: Session) -> None:
    """DuckDB ranks distinct values with their counts (Dialect.rank_distinct_values): with many ties the
    nearest-rank percentiles are still numpy's ``inverted_cdf`` exactly, as on the store; the undefined
    metric's kind is probed on the store and guessed the same (``mean``)."""
    pytest.importorskip("duckdb", reason="the duckdb extra is not installed")
    from tests.factories import conversion, exposure

    exp, arms = completed_experiment(session, primary_metric="latency")
    rng = np.random.default_rng(11)
    values = {"A": rng.integers(0, 7, 203).astype(float), "B": rng.integers(2, 9, 160).astype(float)}
    assignments, events = [], []
    for name, vals in values.items():
        for i in range(30):
            assignments.append((f"{name}{i}", arms[name], {}))
            events.append(exposure(f"{name}{i}"))
        events += [conversion(f"{name}{i % 30}", "latency", float(v)) for i, v in enumerate(vals)]
    add_data(session, exp, assignments, events)
    store = analyze(exp.id, session=session)
    duck = analyze(exp.id, session=session, engine="duckdb")
    assert duck.result("latency").kind == store.result("latency").kind == "mean"
    for res in (store, duck):
        got = {p.variant_id: p for p in res.percentiles}
        for name, vals in values.items():
            p = got[arms[name].id]
            assert p.count == len(vals)
            assert p.mean == pytest.approx(vals.mean(), rel=1e-12)
            for q in (50, 95, 99):  # the oracle: numpy nearest rank (method="inverted_cdf"), exact equality
                assert p.percentiles[q] == float(np.percentile(vals, q, method="inverted_cdf")), (res.engine, q)


def test_bad_engine_and_source_are_clear_errors(session: Session) -> None:
    data = _load(session)
    with pytest.raises(ValueError, match="engine must be one of store, duckdb, spark"):
        analyze(data["exp"].id, session=session, engine="bigquery")
    with pytest.raises(ValueError, match="invalid source config"):
        analyze(data["exp"].id, session=session, source={"events": {"path": "x.parquet"}})
    parquet = {"events": {"path": "/tmp/none.parquet", "format": "parquet", "columns": {
        "user_id": "u", "timestamp": "t", "metric_name": "m", "value": "v"}}}
    with pytest.raises(ValueError, match="needs engine 'duckdb' or 'spark'"):
        analyze(data["exp"].id, session=session, source=parquet)


def test_cli_analyze_engine_and_source(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    from abcore.cli.main import main
    from abcore.store.db import make_engine

    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as session:
        data = _load(session)
        name = data["exp"].name
    engine.dispose()
    assert main(["--database-url", db_url, "analyze", name, "--engine", "store"]) == 0
    assert "engine store" in capsys.readouterr().out.splitlines()[0]
    if pytest.importorskip("duckdb", reason="the duckdb extra is not installed"):
        assert main(["--database-url", db_url, "analyze", name, "--engine", "duckdb"]) == 0
        assert "engine duckdb" in capsys.readouterr().out.splitlines()[0]
    bad = tmp_path / "source.json"
    bad.write_text('{"events": {"table": "ev"}}')
    assert main(["--database-url", db_url, "analyze", name, "--source", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "invalid source config" in err and "events.columns.user_id is required" in err
