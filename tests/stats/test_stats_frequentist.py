"""proportion_test and mean_test against statsmodels / scipy, degenerate input, properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import optimize, stats
from statsmodels.stats import proportion as smp

from abcore.stats import (
    BinarySummary,
    MeanSummary,
    TestResult,
    mean_test,
    mean_test_from,
    proportion_test,
    proportion_test_from,
)

REL = 1e-9
ALTERNATIVES = ["two-sided", "larger", "smaller"]
SM_ALT = {"two-sided": "two-sided", "larger": "larger", "smaller": "smaller"}
SCIPY_ALT = {"two-sided": "two-sided", "larger": "greater", "smaller": "less"}

# (conversions_a, n_a, conversions_b, n_b): a = control, b = treatment
PROP_CASES = [
    (100, 1000, 130, 1000),
    (3, 20, 7, 25),  # small n
    (0, 50, 4, 50),  # zero conversions in control (lift undefined, test defined)
    (5, 50, 0, 50),  # zero conversions in treatment
    (100_000, 10**8, 100_500, 10**8),  # n = 10^8, rate 0.001
    (99_900_000, 10**8, 99_899_000, 10**8),  # n = 10^8, rate 0.999
    (1, 1000, 3, 1200),  # rate ~0.001, unequal n
    (999, 1000, 995, 1000),  # rate 0.999
    (480, 5000, 300, 2500),  # unequal n
    (12, 40, 30, 200),
    (500, 1000, 500, 1000),  # identical
]


def approx(x: float) -> object:
    return pytest.approx(x, rel=REL, abs=1e-300)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # statsmodels' ratio for p = 0
@pytest.mark.parametrize("case", PROP_CASES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_proportion_unpooled_matches_statsmodels_wald(
    case: tuple[int, int, int, int], alternative: str
) -> None:
    ca, na, cb, nb = case
    r = proportion_test(ca, na, cb, nb, alternative=alternative)
    # statsmodels: test_proportions_2indep(method="wald") compares sample 1 (treatment) - sample 2 (control)
    sm = smp.test_proportions_2indep(
        cb, nb, ca, na, method="wald", compare="diff", alternative=SM_ALT[alternative]
    )
    assert r.statistic == approx(sm.statistic)
    assert r.p_value == approx(sm.pvalue)
    assert r.dof is None
    assert r.diff == approx(cb / nb - ca / na)
    # statsmodels confint_proportions_2indep(method="wald") is two-sided; a one-sided bound
    # at alpha equals the matching bound of the two-sided interval at 2 * alpha.
    level = 0.05 if alternative == "two-sided" else 0.10
    low, high = smp.confint_proportions_2indep(cb, nb, ca, na, method="wald", compare="diff", alpha=level)
    if alternative in ("two-sided", "larger"):
        assert r.ci_low == pytest.approx(low, rel=REL, abs=1e-15)
    else:
        assert r.ci_low == -math.inf
    if alternative in ("two-sided", "smaller"):
        assert r.ci_high == pytest.approx(high, rel=REL, abs=1e-15)
    else:
        assert r.ci_high == math.inf


@pytest.mark.parametrize("case", PROP_CASES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_proportion_pooled_matches_statsmodels_ztest(
    case: tuple[int, int, int, int], alternative: str
) -> None:
    ca, na, cb, nb = case
    r = proportion_test(ca, na, cb, nb, alternative=alternative, pooled=True)
    # statsmodels proportions_ztest: pooled variance, count[0] - count[1] = treatment - control
    z, p = smp.proportions_ztest([cb, ca], [nb, na], alternative=SM_ALT[alternative])
    assert r.statistic == approx(z)
    assert r.p_value == approx(p)
    # the interval stays Wald (unpooled) even with pooled=True
    unpooled = proportion_test(ca, na, cb, nb, alternative=alternative)
    assert (r.ci_low, r.ci_high) == (unpooled.ci_low, unpooled.ci_high)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
def test_proportion_alpha_changes_interval_not_pvalue(alpha: float) -> None:
    r = proportion_test(100, 1000, 130, 1000, alpha=alpha)
    low, high = smp.confint_proportions_2indep(
        130, 1000, 100, 1000, method="wald", compare="diff", alpha=alpha
    )
    assert (r.ci_low, r.ci_high) == (approx(low), approx(high))
    assert r.p_value == approx(proportion_test(100, 1000, 130, 1000).p_value)
    assert r.alpha == alpha


def fieller_bounds(ma: float, va: float, mb: float, vb: float, crit: float) -> tuple[float, float]:
    """Fieller's lift interval found numerically (scipy brentq): the lifts r - 1 where the pivot
    (mb - r ma) / sqrt(vb + r^2 va) equals +crit (lower end) and -crit (upper end), on either side of mb / ma."""
    def pivot(r: float) -> float:
        return (mb - r * ma) / math.sqrt(vb + r * r * va)
    point = mb / ma
    low = optimize.brentq(lambda r: pivot(r) - crit, point - 1e3, point, xtol=1e-15, rtol=1e-14)
    high = optimize.brentq(lambda r: pivot(r) + crit, point, point + 1e3, xtol=1e-15, rtol=1e-14)
    return low - 1, high - 1


def test_proportion_lift_interval_is_fiellers() -> None:
    r = proportion_test(100, 1000, 130, 1000)
    va, vb = 0.1 * 0.9 / 1000, 0.13 * 0.87 / 1000
    low, high = fieller_bounds(0.1, va, 0.13, vb, stats.norm.ppf(0.975))
    assert r.lift == pytest.approx(0.3, rel=REL)
    assert (r.lift_ci_low, r.lift_ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    assert r.error is None
    # p = 0.035 (statsmodels test_proportions_2indep, wald) and the lift interval agrees: it excludes 0. The
    # linear delta-method interval (gbstats: var = var_b / p_a^2 + p_b^2 var_a / p_a^4) covered 0 here.
    se = math.sqrt(vb / 0.1**2 + 0.13**2 * va / 0.1**4)
    assert 0.3 - stats.norm.ppf(0.975) * se < 0 < r.lift_ci_low and r.p_value < 0.05


def test_proportion_one_sided_lift_interval_is_a_half_line() -> None:
    r = proportion_test(100, 1000, 130, 1000, alternative="larger")
    low, _high = fieller_bounds(0.1, 0.1 * 0.9 / 1000, 0.13, 0.13 * 0.87 / 1000, stats.norm.ppf(0.95))
    assert r.lift_ci_low == pytest.approx(low, rel=1e-9) and r.lift_ci_high == math.inf


def test_mean_lift_interval_is_fiellers_with_welchs_t() -> None:
    r = mean_test(10.0, 2.0, 50, 11.0, 3.0, 60)
    welch = (4 / 50 + 9 / 60) ** 2 / ((4 / 50) ** 2 / 49 + (9 / 60) ** 2 / 59)  # Welch-Satterthwaite by hand
    low, high = fieller_bounds(10.0, 4 / 50, 11.0, 9 / 60, stats.t.ppf(0.975, welch))
    assert (r.lift_ci_low, r.lift_ci_high) == (pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9))
    # negative means: the same pivot
    neg = mean_test(-10.0, 2.0, 50, -11.0, 3.0, 60)
    low, high = fieller_bounds(-10.0, 4 / 50, -11.0, 9 / 60, -stats.t.ppf(0.975, welch))
    assert neg.lift == pytest.approx(0.1, rel=REL)
    assert sorted((neg.lift_ci_low, neg.lift_ci_high)) == [pytest.approx(low, rel=1e-9), pytest.approx(high, rel=1e-9)]


def test_lift_interval_is_unbounded_when_the_control_mean_is_not_distinguishable_from_0() -> None:
    # control 1/20 (5 %): mean / se = 0.05 / sqrt(0.05 * 0.95 / 20) = 1.03 < 1.96, so no bounded set of ratios
    r = proportion_test(1, 20, 12, 20)
    assert (r.lift_ci_low, r.lift_ci_high) == (-math.inf, math.inf)
    assert r.p_value < 0.05  # the difference interval speaks (abcore.analysis.verdict.displayed_interval)


def test_proportion_from_summaries() -> None:
    assert proportion_test_from(BinarySummary(1000, 100), BinarySummary(1000, 130)) == proportion_test(
        100, 1000, 130, 1000
    )


# (mean_a, std_a, n_a, mean_b, std_b, n_b)
MEAN_CASES = [
    (10.0, 2.0, 50, 11.0, 3.0, 60),
    (0.5, 1.0, 2, 0.7, 1.5, 3),  # tiny n
    (100.0, 20.0, 10**8, 100.01, 20.0, 10**8),  # n = 10^8
    (5.0, 0.0, 30, 6.0, 1.0, 40),  # one arm without spread
    (1.0, 1.0, 1000, 1.0, 1.0, 1000),  # identical
    (3.0, 5.0, 10, 2.0, 1.0, 1000),  # very unequal n and variance
    (-2.0, 1.0, 20, -1.5, 1.0, 25),  # negative means
    (0.001, 0.03, 10**6, 0.00101, 0.031, 2 * 10**6),
]


def welch_dof_reference(sa: float, na: int, sb: float, nb: int) -> float:
    # Welch (1947) / Satterthwaite (1946), textbook form
    qa, qb = sa**2 / na, sb**2 / nb
    return (qa + qb) ** 2 / (qa**2 / (na - 1) + qb**2 / (nb - 1))


@pytest.mark.parametrize("case", MEAN_CASES)
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_mean_test_matches_scipy_welch(case: tuple[float, ...], alternative: str) -> None:
    ma, sa, na, mb, sb, nb = case
    r = mean_test(ma, sa, na, mb, sb, nb, alternative=alternative)
    # scipy: ttest_ind_from_stats(treatment, control, equal_var=False)
    ref = stats.ttest_ind_from_stats(
        mb, sb, nb, ma, sa, na, equal_var=False, alternative=SCIPY_ALT[alternative]
    )
    assert r.statistic == approx(ref.statistic)
    assert r.p_value == approx(ref.pvalue)
    dof = welch_dof_reference(sa, na, sb, nb)
    assert r.dof == approx(dof)
    se = math.sqrt(sa**2 / na + sb**2 / nb)
    if alternative == "two-sided":
        q = stats.t.ppf(0.975, dof)  # scipy.stats.t quantile for the Welch CI
        assert (r.ci_low, r.ci_high) == (
            pytest.approx(mb - ma - q * se, rel=REL, abs=1e-15),
            pytest.approx(mb - ma + q * se, rel=REL, abs=1e-15),
        )
    elif alternative == "larger":
        assert r.ci_low == pytest.approx(mb - ma - stats.t.ppf(0.95, dof) * se, rel=REL, abs=1e-15)
        assert r.ci_high == math.inf
    else:
        assert r.ci_high == pytest.approx(mb - ma + stats.t.ppf(0.95, dof) * se, rel=REL, abs=1e-15)
        assert r.ci_low == -math.inf


@pytest.mark.parametrize("alternative", ALTERNATIVES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mean_test_from_raw_data_matches_scipy_ttest_ind(alternative: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = rng.exponential(2.0, size=40 + seed)
    b = rng.exponential(2.4, size=70)
    r = mean_test_from(MeanSummary.from_values(a), MeanSummary.from_values(b), alternative=alternative)
    # scipy ttest_ind(equal_var=False) on the raw values, including its Welch confidence interval
    ref = stats.ttest_ind(b, a, equal_var=False, alternative=SCIPY_ALT[alternative])
    ci = ref.confidence_interval(0.95)
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.dof == pytest.approx(ref.df, rel=1e-9)
    assert r.ci_low == pytest.approx(ci.low, rel=1e-9)
    assert r.ci_high == pytest.approx(ci.high, rel=1e-9)


def test_test_result_is_frozen() -> None:
    r = proportion_test(1, 10, 2, 10)
    with pytest.raises(AttributeError):
        r.p_value = 0.0  # type: ignore[misc]
    assert isinstance(r, TestResult)


# ---------------------------------------------------------------- degenerate input
DEGENERATE_PROPS = [
    (0, 0, 5, 10),  # n = 0
    (0, 0, 0, 1),  # n = 0 in both arms
    (0, 100, 0, 100),  # 0 % in both arms
    (100, 100, 100, 100),  # 100 % in both arms
    (-1, 100, 3, 100),  # negative count
    (5, -100, 3, 100),  # negative n
    (101, 100, 3, 100),  # conversions > n
    (float("nan"), 100, 3, 100),
    (3, 100, 3, float("inf")),
    (None, 100, 3, 100),
]


@pytest.mark.parametrize("case", DEGENERATE_PROPS)
@pytest.mark.parametrize("pooled", [False, True])
def test_proportion_degenerate_input_sets_error(case: tuple, pooled: bool) -> None:
    r = proportion_test(*case, pooled=pooled)
    assert r.error
    assert math.isnan(r.p_value) and math.isnan(r.statistic)
    assert math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert math.isnan(r.lift_ci_low) and math.isnan(r.lift_ci_high)
    assert r.significant is False


def test_proportion_zero_control_rate_only_lift_undefined() -> None:
    r = proportion_test(0, 50, 4, 50)
    assert r.error and "lift" in r.error
    assert math.isnan(r.lift) and math.isnan(r.lift_ci_low)
    assert not math.isnan(r.p_value) and not math.isnan(r.ci_low)


DEGENERATE_MEANS = [
    (1.0, 1.0, 1, 2.0, 1.0, 10),  # n = 1
    (1.0, 1.0, 0, 2.0, 1.0, 10),  # n = 0
    (1.0, 0.0, 10, 2.0, 0.0, 10),  # zero variance in both arms
    (1.0, -1.0, 10, 2.0, 1.0, 10),  # negative std
    (float("nan"), 1.0, 10, 2.0, 1.0, 10),
    (1.0, float("inf"), 10, 2.0, 1.0, 10),
    (1.0, 1.0, 10, 2.0, float("nan"), 10),
]


@pytest.mark.parametrize("case", DEGENERATE_MEANS)
def test_mean_degenerate_input_sets_error(case: tuple) -> None:
    r = mean_test(*case)
    assert r.error
    assert math.isnan(r.p_value) and math.isnan(r.ci_low) and math.isnan(r.ci_high)
    assert r.significant is False


def test_mean_zero_control_mean_lift_undefined() -> None:
    r = mean_test(0.0, 1.0, 100, 0.5, 1.0, 100)
    assert r.error and "lift" in r.error
    assert math.isnan(r.lift_ci_low)
    assert r.p_value == approx(stats.ttest_ind_from_stats(0.5, 1, 100, 0, 1, 100, equal_var=False).pvalue)


def test_mean_summary_n1_gives_error_not_exception() -> None:
    r = mean_test_from(MeanSummary(1, 5.0, 25.0), MeanSummary(10, 50.0, 260.0))
    assert r.error and "at least 2" in r.error


@pytest.mark.parametrize("alpha", [0, 1, -0.1, 1.5, float("nan"), "x"])
def test_invalid_alpha_raises(alpha: object) -> None:
    with pytest.raises(ValueError, match="alpha"):
        proportion_test(1, 10, 2, 10, alpha=alpha)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpha"):
        mean_test(1, 1, 10, 2, 1, 10, alpha=alpha)  # type: ignore[arg-type]


def test_invalid_alternative_raises() -> None:
    with pytest.raises(ValueError, match="alternative"):
        proportion_test(1, 10, 2, 10, alternative="greater")
    with pytest.raises(ValueError, match="alternative"):
        mean_test(1, 1, 10, 2, 1, 10, alternative="two_sided")


# ---------------------------------------------------------------- properties
@st.composite
def two_arms(draw: st.DrawFn) -> tuple[int, int, int, int]:
    na = draw(st.integers(2, 10**7))
    nb = draw(st.integers(2, 10**7))
    return draw(st.integers(0, na)), na, draw(st.integers(0, nb)), nb


@settings(max_examples=150, deadline=None)
@given(two_arms(), st.sampled_from(ALTERNATIVES), st.sampled_from([0.01, 0.05, 0.1]))
def test_prop_ci_consistent_with_pvalue(
    arms: tuple[int, int, int, int], alternative: str, alpha: float
) -> None:
    r = proportion_test(*arms, alpha=alpha, alternative=alternative)
    if r.error and "lift" not in r.error:
        return
    assert r.ci_low <= r.diff <= r.ci_high
    assert 0.0 <= r.p_value <= 1.0
    # stay away from the exact boundary, where the two sides differ by rounding only
    assume(abs(r.p_value - alpha) > 1e-9 * alpha)
    excludes_zero = r.ci_low > 0 or r.ci_high < 0
    assert (r.p_value < alpha) == excludes_zero == r.significant
    if not math.isnan(r.lift):
        assert r.lift_ci_low <= r.lift <= r.lift_ci_high


@settings(max_examples=150, deadline=None)
@given(
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e3),
    st.integers(2, 10**7),
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e3),
    st.integers(2, 10**7),
    st.sampled_from(ALTERNATIVES),
)
def test_welch_ci_consistent_with_pvalue(
    ma: float, sa: float, na: int, mb: float, sb: float, nb: int, alternative: str
) -> None:
    r = mean_test(ma, sa, na, mb, sb, nb, alternative=alternative)
    assert r.ci_low <= r.diff <= r.ci_high
    assert 0.0 <= r.p_value <= 1.0
    assume(abs(r.p_value - 0.05) > 1e-9)
    assert (r.p_value < 0.05) == (r.ci_low > 0 or r.ci_high < 0)


@settings(max_examples=100, deadline=None)
@given(two_arms())
def test_prop_one_sided_pvalues_complement(arms: tuple[int, int, int, int]) -> None:
    larger = proportion_test(*arms, alternative="larger")
    smaller = proportion_test(*arms, alternative="smaller")
    two = proportion_test(*arms)
    if two.error and "lift" not in two.error:
        return
    assert larger.p_value + smaller.p_value == pytest.approx(1.0, abs=1e-12)
    assert two.p_value == pytest.approx(
        min(1.0, 2 * min(larger.p_value, smaller.p_value)), rel=1e-9, abs=1e-300
    )
