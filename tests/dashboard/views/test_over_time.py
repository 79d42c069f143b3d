"""Rows and captions of the results page's "Effect by days since first exposure" and "Differential impact"."""

from __future__ import annotations

from types import SimpleNamespace

from abcore import stats
from abcore.analysis.results import DifferentialCell, DifferentialImpact, ExposureDayPoint
from abcore.dashboard.views import over_time


def _results() -> SimpleNamespace:
    day0 = stats.proportion_test(300, 1000, 400, 1000)  # lift +33.3 %
    nov = stats.novelty_test(stats.EarlyLateSummary(1000, 300.0, 300.0, 300.0, 390.0, 300.0),
                             stats.EarlyLateSummary(1000, 400.0, 400.0, 310.0, 400.0, 300.0))
    metric = SimpleNamespace(metric="click", variant="B", novelty=nov,
                             by_exposure_day=(ExposureDayPoint(0, 1000, 1000, 0.3, 0.4, day0),))
    cell = DifferentialCell("country", "fr", "click", "primary", "B", 100, 110, day0,
                            stats.effect_difference(day0, stats.proportion_test(300, 1000, 310, 1000)), 0.01, True)
    return SimpleNamespace(metrics=[metric], alpha=0.05,
                           differential_impact=DifferentialImpact(("country", "plan"), 12, 0.05, (cell,)))


def test_exposure_day_rows_and_caption() -> None:
    res = _results()
    assert over_time.exposure_day_rows(res, "click") == [{
        "day": "0", "variant": "B", "users": "1,000", "control users": "1,000", "control": "0.3", "value": "0.4",
        "lift": "+33.3 %", "95 % CI": over_time.fmt.format_interval(res.metrics[0].by_exposure_day[0].test.lift_ci_low,
                                                                 res.metrics[0].by_exposure_day[0].test.lift_ci_high)}]
    caption = over_time.exposure_day_caption(res, "click")
    assert "B: lift decaying (+33.3 % on day 0, +3.3 %" in caption and "from day 7 on" in caption
    assert over_time.exposure_day_rows(res, "other") == []


def test_differential_rows_and_caption() -> None:
    res = _results()
    rows = over_time.differential_rows(res)
    assert [(r["attribute"], r["value"], r["metric"], r["adjusted p"]) for r in rows] == [("country", "fr", "click", "0.010")]
    assert over_time.differential_caption(res) == (
        "12 cells tested (every value of country, plan × metric × treatment, each against the other users); "
        "1 differ at a false-discovery rate of 5 % (Benjamini-Hochberg).")
    assert over_time.differential_caption(SimpleNamespace(differential_impact=None)) == ""
