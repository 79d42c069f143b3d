"""Epochs end to end through the store: a running experiment whose split changed mid-run, on both store backends
(and DuckDB over the same store). Users are assigned through :class:`abcore.assign.Assigner` before and after
``update_allocations``; their conversions are placed in time with ``track(..., timestamp=...)``.

Expected numbers: numpy on the raw rows the test itself generated (which user, which variant, which epoch,
converted or not), combined by the hand formula of :mod:`abcore.stats.stratified`; the pooled figure is
statsmodels' unpooled Wald test (``test_proportions_2indep``) on the totals.
"""

from __future__ import annotations

import math
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy.engine import Engine
from sqlmodel import Session
from statsmodels.stats import proportion as sm_proportion

from abcore import experiments as ex
from abcore.analysis.epochs import load_epochs
from abcore.analysis.pipeline import analyze
from abcore.assign import Assigner
from abcore.cli.analysis import _analysis_report
from abcore.formatting import format_p_clause, format_pct
from abcore.store.tables import utcnow
from tests.factories import make_experiment

RATES = (0.30, 0.05)  # the base rate of each epoch: it falls when the split changes


def _run(engine: Engine, per_epoch: int = 300, change: str = "split") -> dict[str, tuple[str, int, bool]]:
    """The Simpson A/A: 10/90 then 50/50 (or a traffic ramp), identical arms; ``{user: (variant, epoch, converted)}``."""
    make_experiment(engine, "simpson", [ex.VariantCreate(name="control", allocation_pct=10),
                                        ex.VariantCreate(name="treatment", allocation_pct=90)],
                    primary_metric="converted", secondary_metrics=["revenue"], traffic_allocation=0.5,
                    salt="simpson-salt")
    client = Assigner(engine, cache_ttl=0.0, timeout=5.0)
    rng = np.random.default_rng(3)
    users: dict[str, tuple[str, int, bool]] = {}
    try:
        for epoch in (0, 1):
            if epoch == 1:
                client.flush()
                time.sleep(0.02)  # the change is strictly after every assignment of epoch 0
                with Session(engine) as session:
                    if change == "split":
                        ex.update_allocations(session=session, ref="simpson", allocations={"control": 50, "treatment": 50})
                    else:
                        ex.set_traffic_allocation(session=session, ref="simpson", traffic_allocation=1.0)
                time.sleep(0.02)
                client.refresh()
            n = 0
            while n < per_epoch:
                user = f"e{epoch}-{len(users)}"
                a = client.assign(user, "simpson")
                if a is None:  # outside the traffic share
                    users[user] = ("", epoch, False)
                    continue
                n += 1
                users[user] = (a.variant_name, epoch, bool(rng.random() < RATES[epoch]))
        client.flush()
        later = utcnow() + timedelta(minutes=5)
        for user, (_, _, converted) in users.items():
            if converted:
                assert client.track(user, "simpson", "converted", 1.0, timestamp=later)
                assert client.track(user, "simpson", "revenue", _revenue(user), timestamp=later)
        client.flush()
    finally:
        client.close()
    return {u: v for u, v in users.items() if v[0]}


def _revenue(user: str) -> float:
    """A converted user's revenue (a value that is not 0/1, so the metric is analysed as a mean)."""
    return 2.5 + (sum(map(ord, user)) % 17) * 0.75


def _oracle(users: dict[str, tuple[str, int, bool]]) -> dict[str, Any]:
    """numpy on the raw rows: per-epoch rates, the size-weighted combination and its z-test; pooled totals."""
    cells = {(v, e): np.array([c for vv, ee, c in users.values() if (vv, ee) == (v, e)], dtype=float)
             for v in ("control", "treatment") for e in (0, 1)}
    n_e = np.array([len(cells[("control", e)]) + len(cells[("treatment", e)]) for e in (0, 1)], dtype=float)
    w = n_e / n_e.sum()
    means = {k: c.mean() for k, c in cells.items()}
    var = {k: c.var() / len(c) for k, c in cells.items()}  # p (1 - p) / n, ddof 0
    control = sum(w[e] * means[("control", e)] for e in (0, 1))
    treatment = sum(w[e] * means[("treatment", e)] for e in (0, 1))
    se = math.sqrt(sum(w[e] ** 2 * (var[("control", e)] + var[("treatment", e)]) for e in (0, 1)))
    totals = {v: np.concatenate([cells[(v, 0)], cells[(v, 1)]]) for v in ("control", "treatment")}
    # The mean metric: per-user revenue (0 without a conversion), variance of a mean s^2 / n (ddof 1).
    rev = {(v, e): np.array([_revenue(u) if c else 0.0 for u, (vv, ee, c) in users.items() if (vv, ee) == (v, e)])
           for v in ("control", "treatment") for e in (0, 1)}
    rev_diff = sum(w[e] * (rev[("treatment", e)].mean() - rev[("control", e)].mean()) for e in (0, 1))
    rev_se = math.sqrt(sum(w[e] ** 2 * sum(x.var(ddof=1) / len(x) for x in (rev[("control", e)], rev[("treatment", e)]))
                           for e in (0, 1)))
    return {"rev_diff": rev_diff, "rev_se": rev_se, "control": control, "treatment": treatment, "diff": treatment - control, "se": se,
            "p": 2 * sps.norm.sf(abs(treatment - control) / se), "totals": totals,
            "users": {k: len(c) for k, c in cells.items()}}


def test_a_changed_split_is_analysed_per_epoch(engine: Engine, db_url: str) -> None:
    users = _run(engine)
    expect = _oracle(users)
    with Session(engine) as session:
        results = analyze("simpson", session=session)
        epochs = load_epochs(session, ex.get_experiment(session=session, ref="simpson"),
                             ex.get_variants(session=session, experiment_id=results.experiment_id), None)
    assert [e.split() for e in epochs] == ["10/90", "50/50"]
    m = results.metrics[0]
    assert m.test.diff == pytest.approx(expect["diff"], rel=1e-9)
    assert m.test.std_error == pytest.approx(expect["se"], rel=1e-9)
    assert m.test.p_value == pytest.approx(expect["p"], rel=1e-9)
    assert (m.control_value, m.value) == pytest.approx((expect["control"], expect["treatment"]), rel=1e-9)
    revenue = next(r for r in results.metrics if r.metric == "revenue")
    assert revenue.metric_kind == "mean"
    assert (revenue.test.diff, revenue.test.std_error) == pytest.approx((expect["rev_diff"], expect["rev_se"]), rel=1e-9)
    # The arm sizes stay the users (pooled over the epochs).
    assert (m.control_users, m.users) == (expect["users"][("control", 0)] + expect["users"][("control", 1)],
                                          expect["users"][("treatment", 0)] + expect["users"][("treatment", 1)])
    names = [h.name for h in results.health]
    assert names.index("allocation_changed") == names.index("srm") + 1
    srm = next(h for h in results.health if h.name == "srm")
    assert srm.ok, srm.message  # per epoch against its split (pooled against 50/50 it would be a mismatch)
    assert sps.chisquare([m.control_users, m.users]).pvalue < 0.001
    item = next(h for h in results.health if h.name == "allocation_changed")
    a, b = expect["totals"]["control"], expect["totals"]["treatment"]
    _, pooled_p = sm_proportion.test_proportions_2indep(b.sum(), len(b), a.sum(), len(a), method="wald", compare="diff")
    pooled_lift = b.mean() / a.mean() - 1
    assert "split 10/90 -> 50/50" in item.message and not item.ok and item.severity == "warning"
    assert f"would read {format_pct(pooled_lift, signed=True)} ({format_p_clause(pooled_p)})" in item.message
    assert pooled_p < 0.05 < m.test.p_value  # Simpson: pooled, identical arms "differ"; per epoch they do not
    # One list of health items: the API's /results (to_dict) and the CLI report show it too.
    assert results.to_dict()["health"][names.index("allocation_changed")]["name"] == "allocation_changed"
    assert f"warning: {item.message}" in _analysis_report(results)
    if db_url.startswith("sqlite"):  # DuckDB reads the store file: the same numbers
        with Session(engine) as session:
            duck = analyze("simpson", session=session, engine="duckdb", daily=False)
        assert duck.metrics[0].test.diff == pytest.approx(m.test.diff, rel=1e-12)
        assert duck.metrics[0].test.p_value == pytest.approx(m.test.p_value, rel=1e-12)


def test_a_traffic_ramp_makes_epochs_and_sequential_keeps_the_pooled_figure(engine: Engine) -> None:
    _run(engine, per_epoch=60, change="traffic")
    with Session(engine) as session:
        results = analyze("simpson", session=session)
        sequential = analyze("simpson", session=session, method="sequential")
    item = next(h for h in results.health if h.name == "allocation_changed")
    assert "traffic share 50 % -> 100 %" in item.message, item.message
    assert any("pooled comparison" in w for w in sequential.warnings)
    assert "pooled over the epochs" in next(h for h in sequential.health if h.name == "allocation_changed").message


def test_no_change_while_running_means_no_epochs(engine: Engine) -> None:
    exp = make_experiment(engine, "steady", [ex.VariantCreate(name="control", allocation_pct=10),
                                             ex.VariantCreate(name="treatment", allocation_pct=90)],
                          status="draft", primary_metric="converted")
    with Session(engine) as session:  # a draft's split changes before the start: not an epoch
        ex.update_allocations(session=session, ref=exp.id, allocations={"control": 50, "treatment": 50})
        ex.start_experiment(session=session, ref=exp.id)
        ex.update_allocations(session=session, ref=exp.id, allocations={"control": 50})  # changes nothing
        started = ex.get_experiment(session=session, ref=exp.id)
        assert load_epochs(session, started, ex.get_variants(session=session, experiment_id=exp.id), None) == ()
        results = analyze(exp.id, session=session)
    assert "allocation_changed" not in [h.name for h in results.health]
