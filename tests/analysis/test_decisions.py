"""Decisions follow the metric definitions: outcome by direction, guardrail breaches, Bayesian chance
in the metric's direction, shipped / cancelled verdicts, SRM first, and the significance rule
(significance never contradicts the displayed interval). Both backends via ``session``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats as sps
from sqlmodel import Session

from abcore.analysis import verdict as decisions
from abcore.analysis.pipeline import analyze
from abcore.metrics import MetricCreate, define_metric, update_metric
from abcore.stats import TestResult
from tests.factories import add_data, completed_experiment, conversion, exposure

N = 200  # users per arm


def _latency(rng: np.random.Generator, arm: str, worse: bool) -> float:
    base = 100.0
    shift = 30.0 if arm == "B" else 0.0
    return float(base + (shift if worse else -shift) + rng.normal(0, 10))


def _load(session: Session, *, latency_worse: bool, **fields: Any) -> Any:
    """Control A: 20 % click; treatment B: 40 % click (a clear win); latency_ms 30 ms worse or better in B."""
    exp, arms = completed_experiment(session, guardrail_metrics=["latency_ms"], **fields)
    rng = np.random.default_rng(7)
    assignments, events = [], []
    for arm, rate in (("A", 0.2), ("B", 0.4)):
        for i in range(N):
            u = f"{arm}{i}"
            assignments.append((u, arms[arm], {}))
            events.append(exposure(u))
            if i < rate * N:
                events.append(conversion(u, "click", 1.0))
            events.append(conversion(u, "latency_ms", _latency(rng, arm, latency_worse)))
    add_data(session, exp, assignments, events)
    return exp, arms


def _define(session: Session) -> None:
    define_metric(session=session, data=MetricCreate(name="click", kind="binomial"))
    define_metric(session=session, data=MetricCreate(name="latency_ms", kind="mean", direction="decrease"))


def test_lower_is_better_guardrail_getting_worse_blocks_and_is_worse(session: Session) -> None:
    _define(session)
    exp, _ = _load(session, latency_worse=True)
    res = analyze(exp.id, session=session, percentiles=False, daily=False)
    click, latency = res.result("click"), res.result("latency_ms")
    assert (click.outcome, click.direction) == ("better", "increase")
    # latency +30 ms on ~100 ms with sd 10 and 200 users per arm: z ~ 30 (hand derivation), so significant.
    assert latency.test.diff > 0 and latency.significant
    assert (latency.outcome, latency.direction) == ("worse", "decrease")
    assert res.verdict.decision == "keep_control"
    assert "latency_ms" in res.verdict.reason and "guardrail" in res.verdict.reason
    assert not any("No metric definition" in w for w in res.warnings)


def test_lower_is_better_guardrail_getting_better_does_not_block(session: Session) -> None:
    _define(session)
    exp, _ = _load(session, latency_worse=False)
    res = analyze(exp.id, session=session, percentiles=False, daily=False)
    latency = res.result("latency_ms")
    assert latency.test.diff < 0 and latency.outcome == "better"
    assert (res.verdict.decision, res.verdict.variant) == ("ship", "B")


def test_bayesian_chance_follows_direction(session: Session) -> None:
    _define(session)
    exp, _ = _load(session, latency_worse=False)
    down = analyze(exp.id, session=session, method="bayesian", percentiles=False, daily=False).result("latency_ms")
    update_metric(session=session, name="latency_ms", changes={"direction": "increase"})
    up = analyze(exp.id, session=session, method="bayesian", percentiles=False, daily=False).result("latency_ms")
    assert down.bayes is not None and up.bayes is not None
    # B is ~30 ms faster: with lower-is-better the chance to win is ~1, with higher-is-better ~0.
    assert down.bayes.chance_to_beat_control > 0.999 and up.bayes.chance_to_beat_control < 0.001
    assert math.isclose(down.bayes.chance_to_beat_control, 1 - up.bayes.chance_to_beat_control, abs_tol=1e-12)
    assert math.isclose(down.bayes.expected_loss, up.bayes.expected_loss_control, rel_tol=1e-12)
    # Independent: normal approximation P(B < A) = Phi((mA - mB) / sqrt(se_A^2 + se_B^2)) (scipy).
    se = math.sqrt(down.control_std**2 / down.control_users + down.std**2 / down.users)
    assert math.isclose(down.bayes.chance_to_beat_control, sps.norm.cdf((down.control_value - down.value) / se),
                        abs_tol=1e-3)
    assert (down.outcome, up.outcome) == ("better", "worse")


def test_undefined_metrics_get_defaults_and_a_warning(session: Session) -> None:
    exp, _ = _load(session, latency_worse=True)
    res = analyze(exp.id, session=session, percentiles=False, daily=False)
    assert any("No metric definition" in w and "latency_ms" in w for w in res.warnings)
    # default for a guardrail: lower is better ("must not increase"), as before the registry
    assert res.result("latency_ms").direction == "decrease" and res.result("latency_ms").outcome == "worse"
    assert res.verdict.decision == "keep_control"


def test_shipped_and_cancelled_verdicts(session: Session) -> None:
    _define(session)
    exp, arms = _load(session, latency_worse=False)
    exp.winner_variant_id, exp.rollout_pct = arms["B"].id, 100.0
    session.add(exp)
    session.commit()
    v = analyze(exp.id, session=session, percentiles=False, daily=False).verdict
    assert (v.decision, v.variant, v.rollout_pct) == ("shipped", "B", 100.0)
    assert "B" in v.reason and "100 %" in v.reason
    exp.status, exp.winner_variant_id = "cancelled", None
    session.add(exp)
    session.commit()
    assert analyze(exp.id, session=session, percentiles=False, daily=False).verdict.decision == "cancelled"


def test_srm_is_named_first_with_every_blocker(session: Session) -> None:
    _define(session)
    exp, _ = _load(session, latency_worse=False, min_samples_per_variant=1000,
                   variants=(("A", 90.0), ("B", 10.0)))
    v = analyze(exp.id, session=session, percentiles=False, daily=False).verdict
    assert exp.status == "completed" and v.decision == "no_winner"  # a completed experiment cannot keep running
    assert len(v.blockers) == 2 and v.blockers[0].startswith("Sample ratio mismatch")
    assert "Too few users" in v.blockers[1] and v.reason.index("Sample ratio") < v.reason.index("Too few")


def _result(**kw: Any) -> TestResult:
    base = dict(control=1.0, treatment=1.5, diff=0.5, ci_low=0.13, ci_high=1.72, lift=0.5, lift_ci_low=-0.029,
                lift_ci_high=1.128, statistic=2.5, p_value=0.01, dof=None, significant=True)
    base.update(kw)
    return TestResult(**base)


def test_significance_never_contradicts_displayed_interval() -> None:
    # The sequential revenue row: difference CI [0.13, 1.72] but lift CI [-2.9 %, +112.8 %] -> not significant.
    assert not decisions.is_significant(_result(), 0.01, 0.05)
    assert decisions.displayed_interval(_result())[2] == "relative"
    assert decisions.is_significant(_result(lift_ci_low=0.05), 0.01, 0.05)
    # lift undefined (control 0): the absolute interval is shown and decides
    undefined = _result(lift=math.nan, lift_ci_low=math.nan, lift_ci_high=math.nan)
    assert decisions.displayed_interval(undefined) == (0.13, 1.72, "absolute")
    assert decisions.is_significant(undefined, 0.01, 0.05)
    assert not decisions.is_significant(_result(lift_ci_low=0.05), 0.2, 0.05)  # adjusted p too large
    assert decisions.outcome(True, -1.0, "decrease") == "better"
    assert decisions.outcome(True, -1.0, "increase") == "worse"
    assert decisions.outcome(False, -1.0, "increase") == "inconclusive"


def test_significance_rule_holds_for_every_method(session: Session) -> None:
    _define(session)
    exp, _ = _load(session, latency_worse=True)
    for method, cuped in (("frequentist", False), ("sequential", False), ("bayesian", False), ("frequentist", True)):
        res = analyze(exp.id, session=session, method=method, cuped=cuped, percentiles=False, daily=False)
        for r in res.metrics:
            low, high, _ = decisions.displayed_interval(r.test, r.bayes)
            if r.significant:
                assert low > 0 or high < 0, (method, cuped, r.metric)
            assert (r.outcome == "inconclusive") == (not r.significant)


def test_definition_parts_are_applied_not_warned(session: Session) -> None:
    """Window and quantile kind of a definition are applied (tests/analysis/test_definitions.py checks the
    numbers against numpy); only undefined names are warned about."""
    define_metric(session=session, data=MetricCreate(name="click", kind="binomial", window_hours=24))
    define_metric(session=session, data=MetricCreate(name="latency_ms", kind="quantile", quantile=0.95,
                                                     direction="decrease"))
    exp, _ = _load(session, latency_worse=True)
    res = analyze(exp.id, session=session, percentiles=False, daily=False)
    assert not any("not applied" in w or "does not compute" in w for w in res.warnings)
    latency = res.result("latency_ms")
    assert (latency.kind, latency.metric_kind) == ("quantile", "quantile")
    assert (res.result("click").kind, res.result("click").metric_kind) == ("binary", "binomial")
    assert latency.direction == "decrease"
    assert res.engine == "store"
