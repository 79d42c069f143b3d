"""The stratified (epoch) comparison and the per-stratum SRM, against numpy on raw rows, statsmodels and scipy.

Expected numbers: per-stratum means and variances computed by numpy on the raw 0/1 or value rows, combined by the
formulas of :mod:`abcore.stats.stratified` written out here (Imbens & Rubin 2015 ch. 9); a single stratum must
equal statsmodels' two-sample Wald tests; the SRM sum of chi-squares is scipy's ``chisquare`` and ``chi2.sf``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from abcore.stats import Stratum, srm_test_strata, stratified_test, stratum_weights


def _binary_stratum(control: np.ndarray, treatment: np.ndarray) -> Stratum:
    # numpy on the raw 0/1 rows: variance of a mean = p (1 - p) / n (np.var, ddof=0, the unpooled Wald variance).
    return Stratum(len(control) + len(treatment), control.mean(), control.var() / len(control), treatment.mean(),
                   treatment.var() / len(treatment))


def test_binary_strata_match_the_hand_formula_on_raw_rows() -> None:
    rng = np.random.default_rng(5)
    arms = [(rng.random(300) < 0.2, rng.random(2700) < 0.21), (rng.random(1500) < 0.05, rng.random(1500) < 0.06)]
    strata = [_binary_stratum(c.astype(float), t.astype(float)) for c, t in arms]
    r = stratified_test(strata, alpha=0.05)
    # Hand formula: w_e = n_e / N; C = sum w C_e; V(C) = sum w^2 V(C_e); z = (T - C) / sqrt(V(C) + V(T)).
    n = np.array([3000.0, 3000.0])
    w = n / n.sum()
    c = np.array([a.mean() for a, _ in arms])
    t = np.array([b.mean() for _, b in arms])
    vc = np.array([a.var() / len(a) for a, _ in arms])
    vt = np.array([b.var() / len(b) for _, b in arms])
    diff = w @ t - w @ c
    se = math.sqrt(w**2 @ vc + w**2 @ vt)
    assert r.diff == pytest.approx(diff, rel=1e-12)
    assert r.std_error == pytest.approx(se, rel=1e-12)
    assert r.p_value == pytest.approx(2 * sps.norm.sf(abs(diff / se)), rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx((diff - 1.959963984540054 * se, diff + 1.959963984540054 * se))
    # Lift by the delta method on the combined means (var(T/C) ~ V(T)/C^2 + T^2 V(C)/C^4).
    C, T = w @ c, w @ t
    var_lift = (w**2 @ vt) / C**2 + T**2 * (w**2 @ vc) / C**4
    assert r.lift == pytest.approx(T / C - 1, rel=1e-12)
    assert r.lift_ci_high - r.lift == pytest.approx(1.959963984540054 * math.sqrt(var_lift), rel=1e-9)


def test_one_stratum_is_the_unpooled_wald_test_of_statsmodels() -> None:
    rng = np.random.default_rng(6)
    a, b = (rng.random(800) < 0.3).astype(float), (rng.random(900) < 0.34).astype(float)
    r = stratified_test([_binary_stratum(a, b)])
    stat, p = sm_proportion.test_proportions_2indep(b.sum(), len(b), a.sum(), len(a), method="wald", compare="diff")
    low, high = sm_proportion.confint_proportions_2indep(b.sum(), len(b), a.sum(), len(a), method="wald", compare="diff")
    assert (r.statistic, r.p_value) == pytest.approx((stat, p), rel=1e-9)
    assert (r.ci_low, r.ci_high) == pytest.approx((low, high), rel=1e-9)


def test_one_stratum_of_means_is_the_unequal_variance_z_test_of_statsmodels() -> None:
    rng = np.random.default_rng(7)
    a, b = rng.gamma(2.0, 3.0, 400), rng.gamma(2.0, 3.3, 500)
    s = Stratum(900, a.mean(), a.var(ddof=1) / len(a), b.mean(), b.var(ddof=1) / len(b))
    r = stratified_test([s])
    z, p = CompareMeans(DescrStatsW(b), DescrStatsW(a)).ztest_ind(usevar="unequal")
    assert (r.statistic, r.p_value) == pytest.approx((z, p), rel=1e-9)


def test_a_stratum_without_a_comparison_is_left_out_and_the_weights_renormalised() -> None:
    good = Stratum(1000, 0.1, 1e-4, 0.12, 1e-4)
    empty = Stratum(500, 0.1, 1e-4, math.nan, math.nan)  # the treatment had 0 % of the split in this epoch
    assert stratum_weights([good, empty]) == [1.0, 0.0]
    r = stratified_test([good, empty])
    assert r.diff == pytest.approx(0.02) and "1 of 2 strata" in (r.error or "")
    assert math.isnan(stratified_test([empty]).p_value)


def test_srm_per_stratum_sums_the_chi_squares() -> None:
    observed = [[95, 905], [510, 490]]
    weights = [[10, 90], [50, 50]]
    combined, each = srm_test_strata(observed, weights)
    chis = [sps.chisquare(o, np.array(w) / sum(w) * sum(o)).statistic for o, w in zip(observed, weights, strict=True)]
    assert [r.statistic for r in each] == pytest.approx(chis, rel=1e-12)
    assert combined.statistic == pytest.approx(sum(chis), rel=1e-12) and combined.dof == 2
    assert combined.p_value == pytest.approx(sps.chi2.sf(sum(chis), 2), rel=1e-9)
    assert not combined.mismatch
    # The pooled counts against the last split are a mismatch; per epoch they are not.
    assert sps.chisquare([605, 1395]).pvalue < 1e-40
    undefined, _ = srm_test_strata([[0, 0]], [[50, 50]])
    assert undefined.error and math.isnan(undefined.p_value)
