"""The sample-size plan (users per variant, days at the expected traffic) and the power curve shown on the
sample-size page and next to the create form's success criteria; the formulas are :mod:`abcore.stats.power`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from abcore.dashboard.views.charts import line_chart
from abcore.formatting import format_int, format_pct


@dataclass(frozen=True)
class SamplePlan:
    """Users needed per variant and the days it takes at the given traffic (``None``: cannot be computed)."""

    per_variant: int | None
    total: int | None
    days: int | None
    error: str | None = None


def sample_plan(
    *,
    baseline: float,
    mde: float,
    relative: bool = True,
    metric_kind: str = "proportion",
    std: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    daily_traffic: float = 0.0,
    traffic_share: float = 1.0,
    smallest_allocation: float | None = None,
    alternative: str = "two-sided",
) -> SamplePlan:
    """Sample size per variant (abcore.stats) and the run time in days.

    ``metric_kind="proportion"`` uses :func:`abcore.stats.power.sample_size_proportion`
    with ``baseline`` the conversion rate; ``"mean"`` uses :func:`sample_size_mean` with
    ``std`` and ``mde`` (relative to ``baseline`` when ``relative``). Days are the time for
    the smallest arm (``smallest_allocation``, default an even split) to reach its size
    at ``daily_traffic * traffic_share`` users a day entering the experiment. Invalid
    inputs give a plan with ``error`` set rather than raising.
    """
    from abcore.stats.power import sample_size_mean, sample_size_proportion

    try:
        if n_variants < 2:
            raise ValueError("an experiment needs at least two variants")
        if metric_kind == "mean":
            if std is None:
                raise ValueError("enter the standard deviation of the metric")
            delta = mde * baseline if relative else mde
            if relative and baseline == 0:
                raise ValueError("a relative effect needs a non-zero baseline mean")
            n = sample_size_mean(std, delta, alpha=alpha, power=power, alternative=alternative)
        else:
            n = sample_size_proportion(baseline, mde, relative=relative, alpha=alpha, power=power, alternative=alternative)
    except (ValueError, ZeroDivisionError) as exc:
        return SamplePlan(None, None, None, str(exc))
    total = n * n_variants
    days: int | None = None
    share = smallest_allocation if smallest_allocation is not None else 1.0 / n_variants
    per_day = float(daily_traffic) * float(traffic_share) * float(share)
    if per_day > 0:
        days = max(1, math.ceil(n / per_day))
    return SamplePlan(n, total, days)


def design_plan(*, baseline_pct: float, min_effect_pct: float, confidence: float, allocations: Sequence[float],
                daily_traffic: float, traffic_pct: float, layer_share_pct: float = 100.0) -> SamplePlan:
    """The create form's plan: a conversion metric at 80 % power, the relative minimum effect and the
    confidence of the success criteria, the run time paced by the smallest variant's allocation and by the
    share of the layer the experiment holds (``layer_share_pct``: 100 outside any layer).

    Percent inputs as the form shows them (``baseline_pct`` 10 = 10 %); an allocation of 0 % counts as an
    even split (the smallest arm is not known yet).
    """
    smallest = min(allocations, default=0.0) / 100.0
    return sample_plan(
        baseline=baseline_pct / 100.0,
        mde=min_effect_pct / 100.0,
        relative=True,
        alpha=1.0 - confidence,
        n_variants=len(allocations),
        daily_traffic=daily_traffic,
        traffic_share=traffic_pct / 100.0 * layer_share_pct / 100.0,
        smallest_allocation=smallest if smallest > 0 else None,
    )


@dataclass(frozen=True)
class PowerCurve:
    """Power (0-1) of the test at each number of users per variant."""

    n: tuple[int, ...]
    power: tuple[float, ...]


def power_curve(
    *,
    baseline: float,
    mde: float,
    relative: bool = True,
    metric_kind: str = "proportion",
    std: float | None = None,
    alpha: float = 0.05,
    n_max: int = 10_000,
    points: int = 60,
) -> PowerCurve:
    """Power from ``n_max / points`` up to ``n_max`` users per variant (abcore.stats.power).

    Raises ``ValueError`` for inputs :func:`sample_plan` would also refuse.
    """
    from abcore.stats.power import power_mean, power_proportion

    n_max = max(2, int(n_max))
    points = max(2, min(points, n_max))
    ns = sorted({max(2, round(n_max * (i + 1) / points)) for i in range(points)})
    if metric_kind == "mean":
        if std is None:
            raise ValueError("enter the standard deviation of the metric")
        delta = mde * baseline if relative else mde
        values = [power_mean(std, delta, n, alpha=alpha) for n in ns]
    else:
        values = [power_proportion(baseline, mde, n, relative=relative, alpha=alpha) for n in ns]
    return PowerCurve(tuple(ns), tuple(values))


def power_chart(curve: PowerCurve, target: float, per_variant: float) -> str:
    """The power curve as an SVG line chart (:func:`abcore.dashboard.views.charts.line_chart`): power (%) by
    users per variant, with the target power as a flat line; the title names the users the plan needs."""
    labels = [format_int(n) for n in curve.n]
    target_name = f"target {format_pct(target, 0)}"
    series = {"power": [p * 100 for p in curve.power], target_name: [target * 100] * len(curve.n)}
    return line_chart(title=f"Power by users per variant ({format_int(per_variant)} users reach the target)",
                      categories=labels, series=series, colors={"power": "#4f46e5", target_name: "#9ca3af"},
                      y_title="Power (%)", value_format=".1f", x_title="Users per variant")
