"""Ratio (delta method), quantile (order-statistic CI) and capped-mean tests: oracles and seeded calibration.

Calibration simulates the sufficient statistics directly (numpy, seeded) and prints its figures
(run with ``-s`` to see them): A/A false-positive rate must be in [0.04, 0.06] and CI coverage of
the true difference 95 +/- 1.5 %.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

from abcore.stats import MeanSummary, mean_test_from
from abcore.stats.ratio_quantile import (
    QuantileSummary,
    RatioSummary,
    quantile_ranks,
    quantile_test,
    ratio_test,
)

REPS = 3000


def _ratio_summary(x: np.ndarray, y: np.ndarray) -> RatioSummary:
    return RatioSummary(n=len(x), sum_x=float(x.sum()), sum_x2=float((x * x).sum()), sum_y=float(y.sum()),
                        sum_y2=float((y * y).sum()), sum_xy=float((x * y).sum()))


def test_ratio_variance_matches_linearisation_by_hand() -> None:
    rng = np.random.default_rng(1)
    y = rng.poisson(3, 400) + 1.0
    x = y * rng.exponential(5, 400)
    s = _ratio_summary(x, y)
    # Hand derivation (linearisation): R = sum x / sum y; u_i = (x_i - R y_i) / mean(y); Var(R) = var(u, ddof=1) / n.
    r = x.sum() / y.sum()
    u = (x - r * y) / y.mean()
    assert math.isclose(s.mean, r, rel_tol=1e-12)
    assert math.isclose(s.variance, u.var(ddof=1) / len(x), rel_tol=1e-9)
    t = ratio_test(s, _ratio_summary(x * 1.1, y))
    se = math.sqrt(s.variance + _ratio_summary(x * 1.1, y).variance)
    assert math.isclose(t.p_value, 2 * sps.norm.sf(abs(t.diff) / se), rel_tol=1e-9)  # scipy normal tail


def _published_quantile_ci(values: np.ndarray, q: float, alpha: float) -> tuple[float, float, float]:
    """Deng, Knoblich & Lu (2018) order-statistic CI, written independently: ranks n q -/+ z sqrt(n q (1-q))."""
    xs = np.sort(values)
    n = len(xs)
    z = sps.norm.ppf(1 - alpha / 2)
    lo = int(np.clip(np.floor(n * q - z * np.sqrt(n * q * (1 - q))), 1, n))
    hi = int(np.clip(np.ceil(n * q + z * np.sqrt(n * q * (1 - q))), 1, n))
    point = float(np.quantile(xs, q, method="inverted_cdf"))  # nearest rank ceil(n q)
    return float(xs[lo - 1]), point, float(xs[hi - 1])


def _quantile_summary(values: np.ndarray, q: float, alpha: float = 0.05) -> QuantileSummary:
    xs = np.sort(values)
    lo, mid, hi = quantile_ranks(len(xs), q, alpha=alpha)
    return QuantileSummary(n=len(xs), q=q, value=float(xs[mid - 1]), lower=float(xs[lo - 1]),
                           upper=float(xs[hi - 1]), alpha=alpha)


def test_quantile_ci_matches_published_algorithm() -> None:
    rng = np.random.default_rng(2)
    values = rng.lognormal(4, 0.6, 1001)
    for q in (0.5, 0.95, 0.99):
        s = _quantile_summary(values, q)
        assert (s.lower, s.value, s.upper) == _published_quantile_ci(values, q, 0.05)


def _calibrate(name: str, fpr: float, coverage: float) -> None:
    print(f"\ncalibration {name}: A/A false-positive rate {fpr:.4f}, CI coverage {coverage * 100:.2f} %")
    assert 0.04 <= fpr <= 0.06, (name, fpr)
    assert 0.935 <= coverage <= 0.965, (name, coverage)


def test_ratio_calibration() -> None:
    rng = np.random.default_rng(11)
    n = 500
    false_pos = covered = 0
    for _ in range(REPS):
        ya, yb = rng.poisson(3, n) + 1.0, rng.poisson(3, n) + 1.0
        xa, xb = ya * rng.exponential(5, n), yb * rng.exponential(5, n)
        false_pos += ratio_test(_ratio_summary(xa, ya), _ratio_summary(xb, yb)).p_value < 0.05
        # true ratio 5 in A, 6 in B (minutes per session): coverage of the true difference 1
        t = ratio_test(_ratio_summary(xa, ya), _ratio_summary(xb * 1.2, yb))
        covered += t.ci_low <= 1.0 <= t.ci_high
    _calibrate("ratio (delta method)", false_pos / REPS, covered / REPS)


def test_quantile_calibration() -> None:
    rng = np.random.default_rng(12)
    n, q = 1000, 0.95
    false_pos = covered = 0
    a_all = rng.lognormal(4, 0.6, (REPS, n))
    b_all = rng.lognormal(4, 0.6, (REPS, n))
    for a, b in zip(a_all, b_all, strict=True):
        false_pos += quantile_test(_quantile_summary(a, q), _quantile_summary(b, q)).p_value < 0.05
        t = quantile_test(_quantile_summary(a, q), _quantile_summary(b + 10.0, q))  # true difference 10
        covered += t.ci_low <= 10.0 <= t.ci_high
    _calibrate("quantile p95 (order statistics)", false_pos / REPS, covered / REPS)


def test_capped_mean_calibration_with_pooled_percentile_cap() -> None:
    rng = np.random.default_rng(13)
    n = 1000
    false_pos = covered = 0
    for _ in range(REPS):
        a, b = rng.lognormal(2, 1.2, n), rng.lognormal(2, 1.2, n)
        cap = np.quantile(np.concatenate([a, b]), 0.99)  # pooled over both variants, computed once
        ca, cb = np.clip(a, None, cap), np.clip(b, None, cap)
        t = mean_test_from(MeanSummary(n, float(ca.sum()), float((ca * ca).sum())),
                           MeanSummary(n, float(cb.sum()), float((cb * cb).sum())))
        false_pos += t.p_value < 0.05
        covered += t.ci_low <= 0.0 <= t.ci_high  # A/A: the true difference of the capped means is 0
    _calibrate("capped mean (pooled p99 cap)", false_pos / REPS, covered / REPS)
