"""The results page's charts built from an analysis (abcore.analysis.results.Results) and the chart queries.

Pure: data shaping (series per variant over the days, rows of the forest plot, bins per variant) and
the SVG of :mod:`abcore.dashboard.views.charts`; no Streamlit. One colour mapping per page (``palette``, from
:func:`abcore.dashboard.views.forms.variant_colors`) is passed to every chart, so a variant keeps its colour.
"""

from __future__ import annotations

import math
from typing import Any

from abcore.dashboard.views import forms
from abcore.dashboard.views.charts import ForestRow, bar_chart, finite, forest_chart, histogram, line_chart

# Okabe-Ito bluish green / grey / vermillion: readable with the common colour-vision deficiencies.
SENTIMENT_COLORS = {"positive": "#009E73", "neutral": "#9ca3af", "negative": "#D55E00"}
OUTCOME_COLORS = {"better": "#16a34a", "worse": "#dc2626", "inconclusive": "#6b7280"}


def forest(results: Any) -> str | None:
    """Relative lift (%) per metric and treatment with its CI; colour by outcome (green better, red worse,
    grey open); None when no treatment has a lift yet. A missing CI bound draws the point alone."""

    def percent(x: float | None) -> float:
        v = finite(x)
        return math.nan if v is None else v * 100

    rows = [ForestRow(
        label=f"{r.metric} · {r.variant}", estimate=r.test.lift * 100,
        low=percent(r.test.lift_ci_low), high=percent(r.test.lift_ci_high),
        outcome=r.outcome,  # judged by the metric's definition (abcore.analysis.verdict), never by the sign here
    ) for r in results.metrics if finite(r.test.lift) is not None]
    if not rows:
        return None
    return forest_chart(title="Relative lift vs. control (with confidence intervals)", rows=rows,
                        colors=OUTCOME_COLORS, x_title="Lift vs. control (%)")


def cumulative(results: Any, metric: str, palette: dict[str, str]) -> tuple[str, str | None] | None:
    """The cumulative value per variant and the cumulative lift vs. control of ``metric`` (None: no daily data)."""
    points = [p for p in results.daily if p.metric == metric]
    if not points:
        return None
    binary = next((r.kind == "binary" for r in results.metrics if r.metric == metric), False)
    scale = 100 if binary else 1
    days = sorted(set(forms.day_labels(p.day for p in points)))
    at = {d: i for i, d in enumerate(days)}
    variants = [v for v in palette if any(p.variant == v for p in points)]
    variants += sorted({p.variant for p in points} - set(variants))
    value: dict[str, list[float | None]] = {v: [None] * len(days) for v in variants}
    lift: dict[str, list[float | None]] = {v: [None] * len(days) for v in variants}
    for day, p in zip(forms.day_labels(p.day for p in points), points, strict=True):
        value[p.variant][at[day]] = finite(p.value * scale)
        lift[p.variant][at[day]] = finite(p.lift * 100)
    unit = " (%)" if binary else ""
    value_chart = line_chart(title=f"Cumulative {metric} per variant", categories=days, series=value,
                             colors=palette, y_title=f"{metric}{unit}", value_format=".2f" if binary else ".3f")
    lifts = {v: vals for v, vals in lift.items() if any(x is not None for x in vals)}
    if not lifts:
        return value_chart, None
    lift_chart = line_chart(title=f"Cumulative lift of {metric} vs. control (%)", categories=days, series=lifts,
                            colors=palette, y_title="Lift (%)", value_format="+.2f", zero_line=True)
    return value_chart, lift_chart


def distribution(dist: Any, names: dict[int, str], metric: str, palette: dict[str, str]) -> str:
    """The value histogram of ``metric`` per variant (a :class:`abcore.analysis.metric_counts.ValueDistribution`), overlaid."""
    counts = {names.get(vid, str(vid)): list(c) for vid, c in dist.counts.items()}
    return histogram(title=f"Distribution of {metric} per variant", edges=list(dist.edges), counts=counts,
                     colors=palette, x_title=metric)


def assignments(per_day: list[Any], names: dict[int, str], palette: dict[str, str]) -> str:
    """New assignments per day and variant (rows of :func:`abcore.analysis.overview.assignments_per_day`), bars side by side."""
    labels = forms.day_labels(a.day for a in per_day)
    days = sorted(set(labels))
    at = {d: i for i, d in enumerate(days)}
    variants = [v for v in palette if v in names.values()] + sorted(set(names.values()) - set(palette))
    users: dict[str, list[float]] = {v: [0.0] * len(days) for v in variants}
    for day, a in zip(labels, per_day, strict=True):
        users.setdefault(names.get(a.variant_id, str(a.variant_id)), [0.0] * len(days))[at[day]] += a.count
    return bar_chart(title="Assignments per day", categories=days, values=users, colors=palette,
                     y_title="Users", x_title="Day (UTC)")


def feedback(feedback: dict[str, dict[str, int]], palette: dict[str, str]) -> str | None:
    """Feedback events per variant stacked by sentiment (None: no feedback); variants in the page's order."""
    if not any(sum(c.values()) for c in feedback.values()):
        return None
    variants = [v for v in palette if v in feedback] + sorted(set(feedback) - set(palette))
    sentiments = [s for s in SENTIMENT_COLORS if any(s in c for c in feedback.values())]
    sentiments += sorted({s for c in feedback.values() for s in c} - set(sentiments))
    values = {s: [float(feedback[v].get(s, 0)) for v in variants] for s in sentiments}
    return bar_chart(title="User feedback", categories=variants, values=values, colors=SENTIMENT_COLORS,
                     y_title="Feedback events", stacked=True, days=False)


HISTORY_COLORS = {"lift": "#4f46e5", "CI low": "#9ca3af", "CI high": "#9ca3af"}


def snapshot_history(history: list[dict[str, Any]]) -> str | None:
    """The primary metric's lift and always-valid CI per watcher pass (rows of
    :func:`abcore.watch.snapshots.snapshot_history`), the same SVG line chart as the cumulative lift;
    None with fewer than two passes."""
    if len(history) < 2:
        return None
    labels = [h["computed_at"].strftime("%m-%d %H:%M") for h in history]
    series = {name: [None if h[key] is None else h[key] * 100 for h in history]
              for name, key in (("lift", "lift"), ("CI low", "lift_ci_low"), ("CI high", "lift_ci_high"))}
    metric = next((h["metric"] for h in history if h["metric"]), "primary metric")
    return line_chart(title=f"{metric}: lift and always-valid CI per watcher pass", categories=labels,
                      series=series, colors=HISTORY_COLORS, y_title="Lift (%)", value_format="+.2f", zero_line=True,
                      x_title="Watcher pass (UTC)")
