"""abcore.dashboard.views.result_charts: what the results page's charts are built from (results shaped as abcore.analysis.pipeline'
Results, here plain namespaces with the same fields). Expected values are read off the inputs by hand."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from datetime import date
from types import SimpleNamespace as NS

from abcore.dashboard.views import result_charts

SVG = "{http://www.w3.org/2000/svg}"


def _metric(variant: str, lift: float | None, low: float | None, high: float | None, outcome: str) -> NS:
    return NS(metric="m", variant=variant, outcome=outcome, kind="binary",
              test=NS(lift=lift, lift_ci_low=low, lift_ci_high=high))


def _tips(svg: str, tag: str) -> list[str]:
    return [e.findtext(SVG + "title") or "" for e in ET.fromstring(svg).iter(SVG + tag)
            if e.find(SVG + "title") is not None]


def test_forest_draws_an_interval_with_a_bound_at_zero_and_skips_missing_lifts() -> None:
    results = NS(metrics=[_metric("b", 0.1, 0.0, 0.2, "inconclusive"), _metric("c", math.nan, None, None, "inconclusive")])
    svg = result_charts.forest(results)
    assert svg is not None
    # lift 0.1 -> +10 %; the CI [0, 0.2] -> [+0.00, +20.00]: a bound of exactly 0 is a bound, not "missing"
    assert _tips(svg, "line") == ["m · b: +10.00 [+0.00, +20.00] (inconclusive)"]
    assert len(_tips(svg, "circle")) == 1  # c has no finite lift: no row
    assert result_charts.forest(NS(metrics=[_metric("c", None, None, None, "inconclusive")])) is None


def test_cumulative_puts_each_value_on_its_day_and_leaves_gaps() -> None:
    points = [NS(metric="m", variant="control", day=date(2026, 1, 1), value=0.10, lift=math.nan),
              NS(metric="m", variant="b", day=date(2026, 1, 2), value=0.12, lift=0.2)]
    results = NS(daily=points, metrics=[_metric("b", 0.2, 0.1, 0.3, "better")])
    pair = result_charts.cumulative(results, "m", {"control": "#0072B2", "b": "#E69F00"})
    assert pair is not None
    value, lift = pair
    # binary metric: rates shown in %, control on day 1 only, b on day 2 only
    assert _tips(value, "circle") == ["2026-01-01 · control: 10.00", "2026-01-02 · b: 12.00"]
    assert lift is not None and _tips(lift, "circle") == ["2026-01-02 · b: +20.00"]  # control has no lift
    assert result_charts.cumulative(results, "other", {}) is None


def test_assignments_and_feedback_follow_the_page_order() -> None:
    per_day = [NS(day=date(2026, 1, 1), variant_id=1, count=3), NS(day=date(2026, 1, 1), variant_id=2, count=5),
               NS(day=date(2026, 1, 2), variant_id=1, count=2)]
    svg = result_charts.assignments(per_day, {1: "control", 2: "b"}, {"control": "#1", "b": "#2"})
    assert _tips(svg, "rect") == ["2026-01-01 · control: 3", "2026-01-01 · b: 5", "2026-01-02 · control: 2"]
    fb = result_charts.feedback({"b": {"negative": 1}, "control": {"positive": 2, "negative": 0}},
                                {"control": "#1", "b": "#2"})
    assert fb is not None
    # variants in the palette's order, sentiments in SENTIMENT_COLORS' order; zero counts draw nothing
    assert _tips(fb, "rect") == ["control · positive: 2", "b · negative: 1"]
    assert result_charts.feedback({"control": {"positive": 0}}, {"control": "#1"}) is None
