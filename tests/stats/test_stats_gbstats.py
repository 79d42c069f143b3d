"""Cross-check against GrowthBook's stats engine (gbstats) when it is installed.

gbstats declares ``pandas<2``, so it is not a package dependency; ``make test`` installs it
with ``pip install --no-deps gbstats==0.8.0`` (it runs on our pandas, scipy, numpy, pydantic).
Elsewhere this module is skipped with that reason.
"""

from __future__ import annotations

import math

import pytest

gbstats = pytest.importorskip(
    "gbstats", reason="gbstats is not installed (make test installs it: pip install --no-deps gbstats==0.8.0)"
)

from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig  # noqa: E402
from gbstats.frequentist.tests import (  # noqa: E402
    FrequentistConfig,
    SequentialConfig,
    SequentialTwoSidedTTest,
    TwoSidedTTest,
)
from gbstats.models.statistics import ProportionStatistic, SampleMeanStatistic  # noqa: E402

from abcore.stats import (  # noqa: E402
    BinarySummary,
    MeanSummary,
    bayes_mean_from,
    mean_test_from,
    sequential_test,
)

MEAN_CASES = [
    (MeanSummary(1000, 5200.0, 41000.0), MeanSummary(1100, 5900.0, 46000.0)),
    (MeanSummary(50, 30.0, 80.0), MeanSummary(60, 45.0, 110.0)),
    (MeanSummary(200_000, 1.0e6, 9.0e6), MeanSummary(200_000, 1.01e6, 9.1e6)),
]


def gb(s: MeanSummary) -> SampleMeanStatistic:
    return SampleMeanStatistic(n=s.n, sum=s.sum, sum_squares=s.sum_squares)


@pytest.mark.parametrize(("a", "b"), MEAN_CASES)
def test_welch_matches_gbstats_two_sided_ttest(a: MeanSummary, b: MeanSummary) -> None:
    ours = mean_test_from(a, b)
    absolute = TwoSidedTTest(gb(a), gb(b), FrequentistConfig(difference_type="absolute")).compute_result()
    relative = TwoSidedTTest(gb(a), gb(b), FrequentistConfig(difference_type="relative")).compute_result()
    assert ours.p_value == pytest.approx(absolute.p_value, rel=1e-9)
    assert [ours.ci_low, ours.ci_high] == pytest.approx(absolute.ci, rel=1e-9)
    assert_fieller_of(ours, a, b, relative)


def assert_fieller_of(ours: object, a: MeanSummary, b: MeanSummary, relative: object) -> None:
    """``ours`` has Fieller's lift interval at the critical value gbstats uses (its delta-method relative
    half-width / the delta-method standard error: t, or the sequential boundary factor); Fieller's ends are
    where the pivot (m_b - r m_a) / sqrt(v_b + r^2 v_a) equals -/+ that value (Fieller 1954), by hand."""
    ma, mb, va, vb = a.mean, b.mean, a.std**2 / a.n, b.std**2 / b.n
    linear_se = math.sqrt(vb / ma**2 + mb**2 * va / ma**4)  # gbstats frequentist_variance_relative
    crit = (relative.ci[1] - relative.ci[0]) / 2 / linear_se  # type: ignore[attr-defined]
    if ma * ma <= crit * crit * va:  # control mean within crit standard errors of 0: no bounded set of ratios
        assert (ours.lift_ci_low, ours.lift_ci_high) == (-math.inf, math.inf)  # type: ignore[attr-defined]
        return
    for end in (ours.lift_ci_low, ours.lift_ci_high):  # type: ignore[attr-defined]
        r = end + 1
        assert abs(mb - r * ma) / math.sqrt(vb + r * r * va) == pytest.approx(crit, rel=1e-7)
    assert ours.lift_ci_low < ours.lift < ours.lift_ci_high  # type: ignore[attr-defined]
    assert ours.lift == pytest.approx(relative.expected, rel=1e-9)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("a", "b"), MEAN_CASES)
@pytest.mark.parametrize("planned", [1000, 50_000])
def test_sequential_matches_gbstats(a: MeanSummary, b: MeanSummary, planned: int) -> None:
    ours = sequential_test(a, b, planned_n=planned)
    # gbstats counts both arms in n and in the tuning parameter: total = 2 * per-variant planned n
    cfg_abs = SequentialConfig(difference_type="absolute", sequential_tuning_parameter=2 * planned)
    cfg_rel = SequentialConfig(difference_type="relative", sequential_tuning_parameter=2 * planned)
    absolute = SequentialTwoSidedTTest(gb(a), gb(b), cfg_abs).compute_result()
    relative = SequentialTwoSidedTTest(gb(a), gb(b), cfg_rel).compute_result()
    assert [ours.ci_low, ours.ci_high] == pytest.approx(absolute.ci, rel=1e-9)
    assert ours.p_value == pytest.approx(absolute.p_value, rel=1e-9)
    assert_fieller_of(ours, a, b, relative)


def test_sequential_proportions_match_gbstats() -> None:
    a, b = BinarySummary(4000, 400), BinarySummary(4100, 470)
    ours = sequential_test(a, b, planned_n=5000)
    cfg = SequentialConfig(difference_type="absolute", sequential_tuning_parameter=10_000)
    ref = SequentialTwoSidedTTest(
        ProportionStatistic(n=a.n, sum=a.conversions), ProportionStatistic(n=b.n, sum=b.conversions), cfg
    ).compute_result()
    assert [ours.ci_low, ours.ci_high] == pytest.approx(ref.ci, rel=1e-9)
    assert ours.p_value == pytest.approx(ref.p_value, rel=1e-9)


@pytest.mark.parametrize(("a", "b"), MEAN_CASES)
def test_bayes_mean_matches_gbstats_flat_prior_absolute(a: MeanSummary, b: MeanSummary) -> None:
    ours = bayes_mean_from(a, b)
    ref = EffectBayesianABTest(
        gb(a), gb(b), EffectBayesianConfig(difference_type="absolute")
    ).compute_result()
    assert ours.chance_to_beat_control == pytest.approx(ref.chance_to_win, rel=1e-9)
    assert [ours.diff_ci_low, ours.diff_ci_high] == pytest.approx(ref.ci, rel=1e-9)
    # gbstats risk = [risk of keeping control, risk of shipping treatment]
    assert ours.expected_loss_control == pytest.approx(ref.risk[0], rel=1e-7, abs=1e-12)
    assert ours.expected_loss == pytest.approx(ref.risk[1], rel=1e-7, abs=1e-12)
