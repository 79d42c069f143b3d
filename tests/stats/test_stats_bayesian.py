"""Bayesian summaries: closed forms against numerical integration and seeded Monte Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from abcore.stats import (
    BayesResult,
    BinarySummary,
    MeanSummary,
    bayes_mean,
    bayes_mean_from,
    bayes_proportion,
    bayes_proportion_from,
)


def exact_beta_chance(ca: int, na: int, cb: int, nb: int) -> float:
    """P(B > A) for independent Beta(1+c, 1+n-c) posteriors by numerical integration (scipy.integrate.quad)."""
    a = stats.beta(1 + ca, 1 + na - ca)
    b = stats.beta(1 + cb, 1 + nb - cb)
    lo = min(a.ppf(1e-12), b.ppf(1e-12))
    hi = max(a.isf(1e-12), b.isf(1e-12))
    val, _ = integrate.quad(lambda x: a.pdf(x) * b.sf(x), lo, hi, limit=200, points=[a.mean(), b.mean()])
    return val


@pytest.mark.parametrize(
    "case", [(100, 1000, 130, 1000), (30, 300, 35, 280), (500, 10_000, 540, 10_000), (200, 1000, 180, 1000)]
)
def test_chance_to_beat_close_to_exact_beta(case: tuple[int, int, int, int]) -> None:
    r = bayes_proportion(*case)
    # the normal approximation of the Beta posteriors is accurate to well under a percentage point here
    assert r.chance_to_beat_control == pytest.approx(exact_beta_chance(*case), abs=0.005)


@pytest.mark.parametrize("case", [(100, 1000, 130, 1000), (200, 1000, 190, 1000)])
def test_expected_loss_and_lift_close_to_monte_carlo(case: tuple[int, int, int, int]) -> None:
    ca, na, cb, nb = case
    rng = np.random.default_rng(7)  # fixed seed
    a = rng.beta(1 + ca, 1 + na - ca, size=400_000)
    b = rng.beta(1 + cb, 1 + nb - cb, size=400_000)
    r = bayes_proportion(*case)
    assert r.expected_loss == pytest.approx(np.maximum(a - b, 0).mean(), rel=0.03, abs=1e-5)
    assert r.expected_loss_control == pytest.approx(np.maximum(b - a, 0).mean(), rel=0.03, abs=1e-5)
    lift = b / a - 1
    # log-normal approximation of the lift against Monte Carlo quantiles of b / a - 1
    assert r.lift_ci_low == pytest.approx(np.quantile(lift, 0.025), abs=0.006)
    assert r.lift_ci_high == pytest.approx(np.quantile(lift, 0.975), abs=0.006)
    assert r.control == pytest.approx((1 + ca) / (2 + na), rel=1e-12)  # Beta posterior mean


def test_bayes_mean_closed_form() -> None:
    r = bayes_mean(10.0, 2.0, 500, 10.3, 2.0, 500)
    s = math.sqrt(4 / 500 + 4 / 500)
    assert r.chance_to_beat_control == pytest.approx(stats.norm.cdf(0.3 / s), rel=1e-12)
    # E[max(-D, 0)], D ~ N(0.3, s^2), by numerical integration
    loss, _ = integrate.quad(lambda d: -d * stats.norm.pdf(d, 0.3, s), -10, 0)
    assert r.expected_loss == pytest.approx(loss, rel=1e-7)
    gain, _ = integrate.quad(lambda d: d * stats.norm.pdf(d, 0.3, s), 0, 10)
    assert r.expected_loss_control == pytest.approx(gain, rel=1e-7)
    assert (r.diff_ci_low, r.diff_ci_high) == (
        pytest.approx(0.3 - stats.norm.ppf(0.975) * s),
        pytest.approx(0.3 + stats.norm.ppf(0.975) * s),
    )


def test_symmetry_swapping_arms() -> None:
    r = bayes_proportion(100, 1000, 130, 1000)
    s = bayes_proportion(130, 1000, 100, 1000)
    assert r.chance_to_beat_control + s.chance_to_beat_control == pytest.approx(1.0, abs=1e-12)
    assert r.expected_loss == pytest.approx(s.expected_loss_control, rel=1e-12)


def test_large_n_and_summaries() -> None:
    r = bayes_proportion(100_000, 10**8, 100_500, 10**8)
    assert 0.5 < r.chance_to_beat_control < 1 and r.error is None
    assert bayes_proportion_from(BinarySummary(1000, 100), BinarySummary(1000, 130)) == bayes_proportion(
        100, 1000, 130, 1000
    )
    a, b = MeanSummary.from_values([1.0, 2.0, 3.0]), MeanSummary.from_values([2.0, 3.0, 5.0])
    assert bayes_mean_from(a, b) == bayes_mean(a.mean, a.std, 3, b.mean, b.std, 3)


def test_zero_conversions_both_arms_defined_by_prior() -> None:
    # Beta(1, 1) priors keep every quantity defined (unlike the z-test)
    r = bayes_proportion(0, 100, 0, 100)
    assert r.error is None
    assert r.chance_to_beat_control == pytest.approx(0.5)
    assert r.lift_ci_low < 0 < r.lift_ci_high


@pytest.mark.parametrize(
    "case", [(0, 0, 1, 10), (0, 1, 1, 10), (-1, 10, 1, 10), (11, 10, 1, 10), (float("nan"), 10, 1, 10)]
)
def test_degenerate_proportions(case: tuple) -> None:
    r = bayes_proportion(*case)
    assert isinstance(r, BayesResult)
    assert r.error and math.isnan(r.chance_to_beat_control) and math.isnan(r.expected_loss)


@pytest.mark.parametrize(
    "case",
    [(1, 1, 1, 2, 1, 10), (1, 0, 10, 2, 0, 10), (1, -1, 10, 1, 1, 10), (1, 1, 10, float("inf"), 1, 10)],
)
def test_degenerate_means(case: tuple) -> None:
    r = bayes_mean(*case)
    assert r.error and math.isnan(r.chance_to_beat_control)


def test_zero_control_mean_lift_undefined() -> None:
    r = bayes_mean(0.0, 1.0, 100, 0.2, 1.0, 100)
    assert r.error and "lift" in r.error
    assert math.isnan(r.lift_ci_low) and not math.isnan(r.chance_to_beat_control)


def test_invalid_parameters_raise() -> None:
    with pytest.raises(ValueError):
        bayes_proportion(1, 10, 2, 10, credible_level=1.0)
    with pytest.raises(ValueError):
        bayes_proportion(1, 10, 2, 10, prior_alpha=0)
    with pytest.raises(ValueError):
        bayes_mean(1, 1, 10, 2, 1, 10, credible_level=0)
