"""Novelty / primacy (early vs late exposure days) and the effect difference of differential impact.

Oracles: scipy's Welch t-test (``scipy.stats.ttest_ind(equal_var=False)``) on the raw per-user values,
and the normal interaction z-test written out with numpy. Calibration: simulated users with staggered
entry and a known effect curve ``tau(d) = tau_inf + (tau_0 - tau_inf) exp(-d / lambda)`` (small here;
the published figures come from ``benchmarks/bench_novelty.py``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from abcore.stats import (
    EarlyLateSummary,
    MeanSummary,
    effect_difference,
    mean_test_from,
    novelty_test,
)
from tests.stats.novelty_sim import simulate_curve


def _summary(e: np.ndarray, late: np.ndarray) -> EarlyLateSummary:
    return EarlyLateSummary(n=len(e), sum_early=float(e.sum()), sum_early2=float((e * e).sum()),
                            sum_late=float(late.sum()), sum_late2=float((late * late).sum()),
                            sum_early_late=float((e * late).sum()))


def test_novelty_test_matches_welch_on_raw_per_user_values() -> None:
    rng = np.random.default_rng(3)
    user_a, user_b = rng.normal(0, 1, 800), rng.normal(0, 1, 900)
    ea, la = user_a + rng.normal(1.0, 1, 800), user_a + rng.normal(1.0, 0.5, 800)
    eb, lb = user_b + rng.normal(1.4, 1, 900), user_b + rng.normal(1.05, 0.5, 900)
    result = novelty_test(_summary(ea, la), _summary(eb, lb), alpha=0.05)
    # scipy Welch on the per-user differences early - late (the difference-in-differences)
    ref = sps.ttest_ind(eb - lb, ea - la, equal_var=False)
    assert result.change.diff == pytest.approx((eb - lb).mean() - (ea - la).mean(), rel=1e-9)
    assert result.change.p_value == pytest.approx(ref.pvalue, rel=1e-6)
    ci = ref.confidence_interval(0.95)
    assert (result.change.ci_low, result.change.ci_high) == pytest.approx((ci.low, ci.high), rel=1e-6)
    # scipy Welch on the late values: the long-run estimate
    ref_late = sps.ttest_ind(lb, la, equal_var=False)
    assert result.long_run.diff == pytest.approx(lb.mean() - la.mean(), rel=1e-9)
    assert result.long_run.p_value == pytest.approx(ref_late.pvalue, rel=1e-6)
    assert result.early.diff == pytest.approx(eb.mean() - ea.mean(), rel=1e-9)
    assert result.detected and result.pattern == "novelty"  # early effect +0.4, late +0.05
    assert result.users == 1700


def test_primacy_when_the_effect_grows_and_none_without_change() -> None:
    rng = np.random.default_rng(5)
    ea, la = rng.normal(1, 1, 3000), rng.normal(1, 1, 3000)
    eb, lb = rng.normal(1.0, 1, 3000), rng.normal(1.3, 1, 3000)
    assert novelty_test(_summary(ea, la), _summary(eb, lb)).pattern == "primacy"
    same = novelty_test(_summary(ea, la), _summary(ea.copy(), la.copy()))
    assert not same.detected and same.pattern == "none"


def test_degenerate_arms_give_nan_and_a_message() -> None:
    empty = EarlyLateSummary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
    result = novelty_test(empty, empty)
    assert math.isnan(result.change.p_value) and not result.detected and result.error


def test_a_one_time_metric_is_not_flagged() -> None:
    """Converted on the first day only: every late value is 0, the decay is by nature, not novelty."""
    rng = np.random.default_rng(9)
    ea, eb = (rng.random(2000) < 0.2).astype(float), (rng.random(2000) < 0.3).astype(float)
    result = novelty_test(_summary(ea, np.zeros(2000)), _summary(eb, np.zeros(2000)))
    assert result.change.p_value < 0.001 and not result.detected and "one-time" in (result.error or "")


def test_effect_difference_is_the_interaction_z_test() -> None:
    rng = np.random.default_rng(8)
    ya, yb = rng.normal(0, 1, 400), rng.normal(0.3, 1, 420)
    ra, rb = rng.normal(0, 1, 3000), rng.normal(0.05, 1, 3100)
    cell = mean_test_from(MeanSummary.from_values(ya), MeanSummary.from_values(yb))
    rest = mean_test_from(MeanSummary.from_values(ra), MeanSummary.from_values(rb))
    out = effect_difference(cell, rest)
    # numpy: delta of the two mean differences, se from the four sample variances (ddof=1)
    delta = (yb.mean() - ya.mean()) - (rb.mean() - ra.mean())
    se = math.sqrt(ya.var(ddof=1) / 400 + yb.var(ddof=1) / 420 + ra.var(ddof=1) / 3000 + rb.var(ddof=1) / 3100)
    assert out.delta == pytest.approx(delta, rel=1e-9)
    assert out.std_error == pytest.approx(se, rel=1e-9)
    assert out.p_value == pytest.approx(2 * sps.norm.sf(abs(delta / se)), rel=1e-9)
    assert out.ci_low == pytest.approx(delta - sps.norm.ppf(0.975) * se, rel=1e-9)


def test_known_curve_calibration_small() -> None:
    """120 simulated experiments (2,000 users per arm, staggered entry over 28 days; the bench runs 2,000
    and publishes the figures): per-exposure-day CIs cover tau(d), a decay of 0.15 (daily noise sd 1,
    user level sd 1) is flagged, the long-run CI covers tau_inf, a constant effect is rarely flagged."""
    decaying = simulate_curve(runs=120, seed=1, tau_0=0.2, tau_inf=0.05, lam=1.5)
    assert 0.93 <= decaying.day_coverage <= 0.97
    assert decaying.flagged >= 0.80
    assert 0.90 <= decaying.long_run_coverage <= 0.99
    constant = simulate_curve(runs=120, seed=2, tau_0=0.05, tau_inf=0.05, lam=1.5)
    assert constant.flagged <= 0.05 + 0.04  # 120 runs (binomial sd 0.02): the bench checks <= 0.05 at 2,000
    assert 0.93 <= constant.day_coverage <= 0.97
