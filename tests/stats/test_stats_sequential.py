"""Always-valid confidence sequences: formula, p-value/CS consistency, degenerate input."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats

from abcore.stats import (
    BinarySummary,
    CovariateSummary,
    MeanSummary,
    SequentialResult,
    TestResult,
    mean_test,
    proportion_test,
    sequential_halfwidth,
    sequential_mean_test,
    sequential_proportion_test,
    sequential_rho2,
    sequential_test,
)


def gbstats_halfwidth(se2: float, n_total: float, tuning_total: float, alpha: float) -> float:
    """GrowthBook gbstats two-sided CS half-width, re-typed from Waudby-Smith et al. eq. (9):

    rho = sqrt((-2 ln a + ln(-2 ln a + 1)) / N);  s2 = SE^2 * n  (per-observation variance)
    halfwidth = sqrt(s2) * sqrt(2 (n rho^2 + 1) ln(sqrt(n rho^2 + 1) / a) / (n rho)^2)
    with n = n_control + n_treatment and N the tuning parameter in the same (total) units.
    """
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning_total)
    s2 = se2 * n_total
    return math.sqrt(s2) * math.sqrt(
        2 * (n_total * rho**2 + 1) * math.log(math.sqrt(n_total * rho**2 + 1) / alpha) / (n_total * rho) ** 2
    )


@pytest.mark.parametrize(
    ("case", "planned"),
    [((100, 1000, 130, 1000), 5000), ((480, 5000, 300, 2500), 5000), ((1000, 10**6, 1100, 10**6), 10**5)],
)
@pytest.mark.parametrize("alpha", [0.05, 0.01, 0.1])
def test_halfwidth_matches_gbstats_parameterisation(
    case: tuple[int, ...], planned: int, alpha: float
) -> None:
    ca, na, cb, nb = case
    r = sequential_proportion_test(ca, na, cb, nb, planned_n=planned, alpha=alpha)
    fixed = proportion_test(ca, na, cb, nb, alpha=alpha)
    # per-variant planned n in abcore == total planned n (2 * planned) in gbstats units
    hw = gbstats_halfwidth(fixed.std_error**2, na + nb, 2 * planned, alpha)
    assert (r.ci_high - r.ci_low) / 2 == pytest.approx(hw, rel=1e-12)
    assert r.diff == fixed.diff
    assert r.ci_low < fixed.ci_low and r.ci_high > fixed.ci_high  # always wider than the fixed-n CI
    assert isinstance(r, TestResult) and isinstance(r, SequentialResult)
    assert r.dof is None and r.planned_n == planned


def test_rho_formula() -> None:
    # Waudby-Smith et al. (arXiv:2103.06476) eq. (161): rho^2 = (-2 ln a + ln(-2 ln a + 1)) / N
    la = -2 * math.log(0.05)
    assert sequential_rho2(0.05, 1000) == pytest.approx((la + math.log(la + 1)) / 1000, rel=1e-15)


def test_halfwidth_tightest_near_planned_n() -> None:
    # at fixed t the width, as a function of the tuning parameter, is minimised near t
    t, alpha = 10_000.0, 0.05

    def width(planned: float) -> float:
        return sequential_halfwidth(1.0 / t, t, sequential_rho2(alpha, planned), alpha)

    best = optimize.minimize_scalar(lambda lp: width(math.exp(lp)), bounds=(0, 20), method="bounded")
    assert math.exp(best.x) == pytest.approx(t, rel=0.15)
    # the price of always-valid inference at the planned n: ~1.55x the z interval at alpha = 0.05
    # (t rho^2 = 7.94: sqrt(2 * 8.94 / 7.94 * ln(sqrt(8.94) / 0.05)) / 1.96 = 1.549)
    ratio = width(t) / (stats.norm.isf(0.025) / math.sqrt(t))
    assert ratio == pytest.approx(1.549, abs=0.001)


def _bisect_alpha(diff: float, var: float, t: float, rho2: float, two_sided: bool) -> float:
    """Smallest alpha' whose CS (rho fixed) excludes 0, by bisection on the half-width."""

    def gap(a: float) -> float:
        return abs(diff) - sequential_halfwidth(var, t, rho2, a, two_sided=two_sided)

    if gap(1 - 1e-15) <= 0:
        return 1.0
    if gap(1e-300) > 0:
        return 0.0
    return optimize.brentq(gap, 1e-300, 1 - 1e-15, xtol=1e-300, rtol=1e-13)


@pytest.mark.parametrize("alternative", ["two-sided", "larger", "smaller"])
@pytest.mark.parametrize(
    "case", [(100, 1000, 130, 1000), (130, 1000, 100, 1000), (1000, 10000, 1040, 10000), (50, 400, 52, 420)]
)
def test_always_valid_pvalue_is_smallest_alpha_excluding_zero(
    case: tuple[int, ...], alternative: str
) -> None:
    r = sequential_proportion_test(*case, planned_n=2000, alternative=alternative)
    ca, na, cb, nb = case
    t = (na + nb) / 2
    right_direction = alternative == "two-sided" or (alternative == "larger") == (r.diff > 0)
    expected = (
        _bisect_alpha(r.diff, r.std_error**2, t, r.rho2, alternative == "two-sided")
        if right_direction
        else 1.0
    )
    assert r.p_value == pytest.approx(expected, rel=1e-8, abs=1e-300)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(2, 10**6),
    st.integers(2, 10**6),
    st.floats(0.01, 0.99),
    st.floats(0.01, 0.99),
    st.integers(10, 10**6),
    st.sampled_from(["two-sided", "larger", "smaller"]),
    st.sampled_from([0.01, 0.05, 0.1]),
)
def test_pvalue_below_alpha_iff_cs_excludes_zero(
    na: int, nb: int, ra: float, rb: float, planned: int, alternative: str, alpha: float
) -> None:
    r = sequential_proportion_test(
        round(ra * na), na, round(rb * nb), nb, planned_n=planned, alpha=alpha, alternative=alternative
    )
    if r.error and "lift" not in r.error:
        return
    assert r.ci_low <= r.diff <= r.ci_high
    assert 0.0 <= r.p_value <= 1.0
    assume(abs(r.p_value - alpha) > 1e-9 * alpha)
    assert (r.p_value < alpha) == (r.ci_low > 0 or r.ci_high < 0) == r.significant
    fixed = proportion_test(round(ra * na), na, round(rb * nb), nb, alpha=alpha, alternative=alternative)
    assert r.p_value >= fixed.p_value - 1e-12  # never more significant than the fixed-horizon test


def test_means_and_summaries_dispatch() -> None:
    a, b = MeanSummary.from_values([1, 2, 3, 4, 5, 6]), MeanSummary.from_values([2, 3, 4, 5, 6, 9])
    r = sequential_test(a, b, planned_n=100)
    assert r == sequential_mean_test(a.mean, a.std, a.n, b.mean, b.std, b.n, planned_n=100)
    fixed = mean_test(a.mean, a.std, a.n, b.mean, b.std, b.n)
    assert r.diff == pytest.approx(fixed.diff) and r.std_error == pytest.approx(fixed.std_error)
    rb = sequential_test(
        BinarySummary(1000, 100), BinarySummary(1000, 130), planned_n=1000, alternative="larger"
    )
    assert rb == sequential_proportion_test(100, 1000, 130, 1000, planned_n=1000, alternative="larger")
    assert rb.ci_high == math.inf
    with pytest.raises(TypeError):
        sequential_test(BinarySummary(10, 1), a, planned_n=10)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        sequential_test(CovariateSummary(2, 1, 1, 1, 1, 1), a, planned_n=10)  # type: ignore[arg-type]


@pytest.mark.parametrize("planned", [0, -5, float("nan"), float("inf"), "many"])
def test_invalid_planned_n_raises(planned: object) -> None:
    with pytest.raises(ValueError, match="planned_n"):
        sequential_proportion_test(1, 10, 2, 10, planned_n=planned)  # type: ignore[arg-type]


def test_invalid_alpha_alternative_raise() -> None:
    with pytest.raises(ValueError):
        sequential_proportion_test(1, 10, 2, 10, planned_n=10, alpha=0)
    with pytest.raises(ValueError):
        sequential_mean_test(1, 1, 10, 2, 1, 10, planned_n=10, alternative="up")


@pytest.mark.parametrize(
    "case", [(0, 0, 1, 10), (0, 1, 1, 1), (0, 10, 0, 10), (10, 10, 10, 10), (-1, 10, 1, 10), (11, 10, 1, 10)]
)
def test_degenerate_proportions(case: tuple) -> None:
    r = sequential_proportion_test(*case, planned_n=100)
    assert r.error and math.isnan(r.p_value) and math.isnan(r.ci_low) and r.significant is False


@pytest.mark.parametrize(
    "case",
    [
        (1.0, 1.0, 1, 2.0, 1.0, 10),
        (1.0, 0.0, 10, 2.0, 0.0, 10),
        (float("nan"), 1, 10, 1, 1, 10),
        (1, 1e200, 2, 1, 1, 2),
    ],
)
def test_degenerate_means(case: tuple) -> None:
    r = sequential_mean_test(*case, planned_n=100)
    assert r.error and math.isnan(r.p_value) and r.significant is False


def test_one_sided_wrong_direction_p_is_one() -> None:
    r = sequential_proportion_test(130, 1000, 100, 1000, planned_n=1000, alternative="larger")
    assert r.p_value == 1.0 and not r.significant
    assert r.ci_high == math.inf and r.ci_low < r.diff < 0
