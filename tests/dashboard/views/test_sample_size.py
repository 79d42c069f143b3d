"""abcore.dashboard.views.sample_size: the sample-size plan and power curve against abcore.stats.power."""

from __future__ import annotations

import pytest

from abcore.dashboard.views import sample_size
from abcore.stats.power import power_proportion, sample_size_proportion


def test_sample_plan_matches_abcore_stats_and_counts_days() -> None:
    # 10 % baseline, +20 % relative = 12 %: R power.prop.test(p1=.1, p2=.12, power=.8) -> 3840.847 -> 3841
    plan = sample_size.sample_plan(baseline=0.10, mde=0.20, relative=True, n_variants=2, daily_traffic=1000)
    assert plan.per_variant == 3841 == sample_size_proportion(0.10, 0.02)
    assert plan.total == 7682
    assert plan.days == 8  # 3841 / (1000 * 1/2) = 7.68 -> 8 days
    # Half the traffic and a 20 % smallest arm: 3841 / (1000 * 0.5 * 0.2) = 38.4 -> 39 days
    assert sample_size.sample_plan(baseline=0.10, mde=0.02, relative=False, daily_traffic=1000, traffic_share=0.5,
                             smallest_allocation=0.2).days == 39
    assert sample_size.sample_plan(baseline=0.10, mde=0.0, daily_traffic=10).error is not None
    no_traffic = sample_size.sample_plan(baseline=0.10, mde=0.2)
    assert no_traffic.per_variant == 3841 and no_traffic.days is None
    # Means: (z_.975 + z_.8)^2 * 2 * std^2 / mde^2 = 7.849 * 2 * 25 / 1 = 392.4 -> 393 (hand derivation)
    assert sample_size.sample_plan(baseline=10, mde=1, relative=False, metric_kind="mean", std=5).per_variant == 393
    assert sample_size.sample_plan(baseline=10, mde=0.1, relative=True, metric_kind="mean", std=5).per_variant == 393


def test_power_curve_is_increasing_and_hits_target_at_the_planned_size() -> None:
    curve = sample_size.power_curve(baseline=0.10, mde=0.02, relative=False, n_max=7682, points=2)
    assert curve.n == (3841, 7682)
    assert curve.power[0] == pytest.approx(power_proportion(0.10, 0.02, 3841), abs=1e-12)
    assert curve.power[0] == pytest.approx(0.80, abs=1e-3)
    full = sample_size.power_curve(baseline=0.10, mde=0.02, relative=False, n_max=8000)
    assert all(a <= b for a, b in zip(full.power, full.power[1:], strict=False))


def test_design_plan_is_the_create_forms_percent_inputs_as_a_sample_plan() -> None:
    # 10 % baseline, +20 % relative at 95 %: 3841 per variant (as above); a 20 % smallest arm at half the traffic
    plan = sample_size.design_plan(baseline_pct=10, min_effect_pct=20, confidence=0.95, allocations=[80, 20],
                                   daily_traffic=1000, traffic_pct=50)
    assert plan == sample_size.sample_plan(baseline=0.10, mde=0.20, n_variants=2, daily_traffic=1000,
                                           traffic_share=0.5, smallest_allocation=0.2)
    assert plan.per_variant == 3841 and plan.days == 39
    # an arm at 0 % does not pace the run: the even split does
    zero = sample_size.design_plan(baseline_pct=10, min_effect_pct=20, confidence=0.95, allocations=[100, 0],
                                   daily_traffic=1000, traffic_pct=100)
    assert zero.days == 8
