"""Interaction detection through the store, on both backends: pairs scanned, counts and tests checked against
scipy / statsmodels on the raw rows, BH flags."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.formula.api as smf
from scipy import stats
from sqlmodel import Session

from abcore import experiments as ex
from abcore.analysis.interactions import interaction_scan, interactions_for, overlapping_pairs
from tests.factories import add_data, conversion, make_experiment


def _data(session: Session, n: int = 800, interaction: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two running experiments ``a`` and ``b`` (no layer) sharing metric ``clicks``; every user in both."""
    rng = np.random.default_rng(11)
    a = make_experiment(session, "a", primary_metric="clicks")
    b = make_experiment(session, "b", primary_metric="clicks")
    arm_a, arm_b = rng.integers(0, 2, n), rng.integers(0, 2, n)
    y = rng.poisson(2.0 + 0.5 * arm_a + interaction * arm_a * arm_b).astype(float)
    names = ["control", "treatment"]
    var_a = {v.name: v for v in ex.get_variants(session=session, experiment_id=a.id)}  # type: ignore[arg-type]
    var_b = {v.name: v for v in ex.get_variants(session=session, experiment_id=b.id)}  # type: ignore[arg-type]
    users = [f"u{i}" for i in range(n)]
    add_data(session, a, [(u, var_a[names[arm_a[i]]], {}) for i, u in enumerate(users)],
             [conversion(u, "clicks", y[i]) for i, u in enumerate(users) if y[i] > 0])
    add_data(session, b, [(u, var_b[names[arm_b[i]]], {}) for i, u in enumerate(users)], [])
    return arm_a, arm_b, y


def test_the_scan_matches_the_raw_rows(session: Session) -> None:
    arm_a, arm_b, y = _data(session, interaction=1.5)
    findings = interaction_scan(session=session)
    dependence = next(f for f in findings if f.test == "assignment")
    table = np.array([[np.sum((arm_a == i) & (arm_b == j)) for j in (0, 1)] for i in (0, 1)])
    assert dependence.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9)  # scipy
    effect = next(f for f in findings if f.test == "effect")
    fit = smf.ols("y ~ a * b", data={"y": y, "a": arm_a, "b": arm_b}).fit(cov_type="HC2")  # statsmodels on raw rows
    assert effect.estimate == pytest.approx(fit.params["a:b"], rel=1e-9)
    assert effect.p_value == pytest.approx(fit.pvalues["a:b"], rel=1e-6)
    assert effect.flagged and effect.users_in_both == 800 and effect.metric == "clicks"
    mirrored = interactions_for(session=session, experiment="b")
    assert {(f.experiment, f.other) for f in mirrored} == {("b", "a")}


def test_experiments_of_one_layer_are_not_paired(session: Session) -> None:
    ex.create_layer("home", session=session)
    make_experiment(session, "x", layer="home", layer_share=50.0)
    make_experiment(session, "y", layer="home", layer_share=50.0)
    make_experiment(session, "z")
    pairs = {(p.name, q.name) for p, q in overlapping_pairs(session)}
    assert pairs == {("x", "z"), ("y", "z")}


def test_the_watcher_alerts_both_experiments_of_a_flagged_pair(engine) -> None:  # noqa: ANN001
    from sqlmodel import select

    from abcore.store.tables import Alert
    from abcore.watch.runner import run_pass

    with Session(engine, expire_on_commit=False) as session:
        _data(session, interaction=1.5)
    run_pass(engine)
    run_pass(engine)  # once per (experiment, rule)
    with Session(engine) as session:
        rules = sorted((a.experiment_id, a.rule) for a in session.exec(select(Alert)).all() if a.rule.startswith("interaction:"))
    assert sorted(r for _, r in rules) == ["interaction:a:clicks", "interaction:b:clicks"]
