"""CUPED against per-user computation with scipy; summaries against numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abcore.stats import (
    BinarySummary,
    CovariateSummary,
    CupedResult,
    MeanSummary,
    TestResult,
    cuped,
    cuped_theta,
    mean_test_from,
)


def summarise(x: np.ndarray, y: np.ndarray) -> CovariateSummary:
    return CovariateSummary(
        n=len(y),
        sum_y=float(y.sum()),
        sum_y2=float((y * y).sum()),
        sum_x=float(x.sum()),
        sum_x2=float((x * x).sum()),
        sum_xy=float((x * y).sum()),
    )


def make_arm(
    rng: np.random.Generator, n: int, effect: float, rho: float = 0.7
) -> tuple[np.ndarray, np.ndarray]:
    x = rng.normal(10, 2, size=n)
    y = 5 + effect + rho * (x - 10) / 2 + math.sqrt(1 - rho**2) * rng.normal(size=n)
    return x, y


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
@pytest.mark.parametrize("seed", [1, 2])
def test_cuped_matches_per_user_adjustment_with_scipy(alternative: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    xa, ya = make_arm(rng, 300, 0.0)
    xb, yb = make_arm(rng, 350, 0.15)
    a, b = summarise(xa, ya), summarise(xb, yb)
    r = cuped(a, b, alternative=alternative)
    # theta: OLS slope of y on x over both arms pooled (numpy)
    x, y = np.concatenate([xa, xb]), np.concatenate([ya, yb])
    theta = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)
    assert r.theta == pytest.approx(theta, rel=1e-9)
    # adjusted per-user values y - theta (x - mean x), then scipy Welch test (Deng et al. 2013)
    adj_a, adj_b = ya - theta * (xa - x.mean()), yb - theta * (xb - x.mean())
    ref = stats.ttest_ind(
        adj_b,
        adj_a,
        equal_var=False,
        alternative={"two-sided": "two-sided", "larger": "greater", "smaller": "less"}[alternative],
    )
    ci = ref.confidence_interval(0.95)
    assert r.control == pytest.approx(adj_a.mean(), rel=1e-9)
    assert r.treatment == pytest.approx(adj_b.mean(), rel=1e-9)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-7)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-7)
    assert r.dof == pytest.approx(ref.df, rel=1e-7)
    assert r.ci_low == pytest.approx(ci.low, rel=1e-7)
    assert r.ci_high == pytest.approx(ci.high, rel=1e-7)
    unadj = stats.ttest_ind(yb, ya, equal_var=False)
    expected_reduction = 1 - (adj_a.var(ddof=1) / 300 + adj_b.var(ddof=1) / 350) / (
        ya.var(ddof=1) / 300 + yb.var(ddof=1) / 350
    )
    assert r.variance_reduction == pytest.approx(expected_reduction, rel=1e-7)
    assert 0.35 < r.variance_reduction < 0.65  # ~ rho^2 = 0.49
    assert r.unadjusted_diff == pytest.approx(yb.mean() - ya.mean(), rel=1e-9)
    assert r.unadjusted_std_error == pytest.approx((yb.mean() - ya.mean()) / unadj.statistic, rel=1e-7)
    assert r.correlation == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)
    assert isinstance(r, CupedResult) and isinstance(r, TestResult) and r.error is None


def test_theta_zero_is_unadjusted_welch() -> None:
    rng = np.random.default_rng(3)
    a, b = summarise(*make_arm(rng, 100, 0)), summarise(*make_arm(rng, 100, 0.2))
    r = cuped(a, b, theta=0.0)
    u = mean_test_from(a.y, b.y)
    assert r.p_value == pytest.approx(u.p_value, rel=1e-9)
    assert r.variance_reduction == pytest.approx(0.0, abs=1e-12)


def test_constant_covariate_gives_no_adjustment() -> None:
    y = np.array([1.0, 2.0, 4.0, 3.0])
    x = np.zeros(4)
    a, b = summarise(x, y), summarise(x, y + 1)
    assert cuped_theta(a, b) == 0.0
    r = cuped(a, b)
    assert r.theta == 0.0 and r.error is None
    assert r.diff == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (CovariateSummary(1, 1, 1, 1, 1, 1), CovariateSummary(10, 10, 20, 10, 20, 20)),  # n = 1
        (CovariateSummary(0, 0, 0, 0, 0, 0), CovariateSummary(10, 10, 20, 10, 20, 20)),  # n = 0
        (CovariateSummary(10, float("nan"), 1, 1, 1, 1), CovariateSummary(10, 10, 20, 10, 20, 20)),
        (CovariateSummary(10, 10, 10, 10, 10, 10), CovariateSummary(10, 10, 10, 10, 10, 10)),  # zero variance
        (CovariateSummary(10, 10, -5, 10, 20, 20), CovariateSummary(10, 10, 20, 10, 20, 20)),
    ],
)
def test_cuped_degenerate(a: CovariateSummary, b: CovariateSummary) -> None:
    r = cuped(a, b)
    assert r.error and math.isnan(r.p_value) and r.significant is False


def test_cuped_invalid_parameters() -> None:
    a = CovariateSummary(4, 10, 30, 8, 20, 24)
    with pytest.raises(ValueError):
        cuped(a, a, alpha=2)
    with pytest.raises(ValueError):
        cuped(a, a, alternative="bigger")
    with pytest.raises(ValueError):
        cuped(a, a, theta=float("nan"))


# ---------------------------------------------------------------- summaries
def test_mean_summary_against_numpy() -> None:
    values = np.random.default_rng(5).lognormal(size=1000)
    s = MeanSummary.from_values(values)
    assert s.mean == pytest.approx(values.mean(), rel=1e-12)
    assert s.variance == pytest.approx(values.var(ddof=1), rel=1e-9)
    assert s.std == pytest.approx(values.std(ddof=1), rel=1e-9)


@pytest.mark.parametrize("n", [0, 1])
def test_mean_summary_guards_small_n(n: int) -> None:
    s = MeanSummary(n, 3.0 * n, 9.0 * n)
    assert math.isnan(s.variance) and math.isnan(s.std)
    assert math.isnan(s.mean) if n == 0 else s.mean == 3.0


def test_mean_summary_clips_cancellation() -> None:
    # constant values with a huge mean: the sums cancel to a tiny negative number
    s = MeanSummary.from_values([1e9 + 0.1] * 3)
    assert s.variance >= 0.0


def test_binary_summary() -> None:
    s = BinarySummary(n=200, conversions=50)
    assert s.mean == s.rate == 0.25
    assert s.variance == pytest.approx(0.25 * 0.75)
    assert s.sum == s.sum_squares == 50
    assert math.isnan(BinarySummary(0, 0).mean)
    with pytest.raises(AttributeError):
        s.n = 3  # type: ignore[misc]


def test_covariate_summary_against_numpy() -> None:
    rng = np.random.default_rng(9)
    x, y = make_arm(rng, 500, 0.0)
    s = summarise(x, y)
    assert s.cov_xy == pytest.approx(np.cov(x, y, ddof=1)[0, 1], rel=1e-9)
    assert s.var_x == pytest.approx(x.var(ddof=1), rel=1e-9)
    assert s.var_y == pytest.approx(y.var(ddof=1), rel=1e-9)
    assert s.corr == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-9)
    assert s.y == MeanSummary(500, s.sum_y, s.sum_y2)
    both = s + s
    assert both.n == 1000 and both.sum_xy == 2 * s.sum_xy
    assert math.isnan(CovariateSummary(1, 1, 1, 1, 1, 1).cov_xy)
