"""The daily cumulative series of :func:`abcore.analysis.pipeline.analyze`: every metric's value per variant
at the end of each UTC day, and the lift over the control on that day."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from abcore.analysis import overview
from abcore.analysis.results import DailyPoint, VariantInfo
from abcore.metrics import RATIO_KINDS, MetricSpec

__all__ = ["daily_series", "epoch_day"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def epoch_day(days: Any) -> date:
    """The UTC date ``days`` whole days after 1970-01-01 (the ``day`` column of the analysis query)."""
    return date.fromordinal(_EPOCH_ORDINAL + int(days))


def daily_series(
    rows: Sequence[Mapping[str, Any]],
    vid: Any,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    specs: Mapping[str, MetricSpec],
    new_users: Sequence[overview.DailyUsers],
) -> tuple[DailyPoint, ...]:
    """Cumulative value per variant at the end of each UTC day, from the ``daily`` rows of
    :func:`abcore.analysis.sql.build.build_analysis_query` (the headline semantics; the last day equals the
    headline value). Quantile metrics have none."""
    with_series = [m for m in metric_names if specs[m].kind != "quantile"]
    if not with_series:
        return ()
    metric_on: dict[tuple[date, int, str], tuple[float, float]] = {}
    for r in rows:
        v = vid(r["variant"])
        if v is None:
            continue
        day = epoch_day(r["day"])
        old = metric_on.get((day, v, str(r["metric"])), (0.0, 0.0))
        metric_on[(day, v, str(r["metric"]))] = (old[0] + float(r["sum_y"] or 0.0), old[1] + float(r["sum_x"] or 0.0))
    days = sorted({r.day for r in new_users} | {k[0] for k in metric_on})
    users_on = {(r.day, r.variant_id): r.new_users for r in new_users}
    control = next((v for v in variants if v.is_control), None)
    points: list[DailyPoint] = []
    for metric in with_series:
        ratio = specs[metric].kind in RATIO_KINDS
        cum_users = dict.fromkeys((v.variant_id for v in variants), 0)
        cum_y = dict.fromkeys((v.variant_id for v in variants), 0.0)
        cum_x = dict.fromkeys((v.variant_id for v in variants), 0.0)
        for day in days:
            current: dict[int, float] = {}
            for v in variants:
                cum_users[v.variant_id] += users_on.get((day, v.variant_id), 0)
                y, x = metric_on.get((day, v.variant_id, metric), (0.0, 0.0))
                cum_y[v.variant_id] += y
                cum_x[v.variant_id] += x
                denominator = cum_x[v.variant_id] if ratio else cum_users[v.variant_id]
                current[v.variant_id] = cum_y[v.variant_id] / denominator if denominator > 0 else math.nan
            base = current.get(control.variant_id, math.nan) if control else math.nan
            for v in variants:
                value = current[v.variant_id]
                lift = (value / base - 1.0) if (not v.is_control and base and math.isfinite(base)) else math.nan
                points.append(DailyPoint(day, v.variant_id, v.name, metric, cum_users[v.variant_id], value, lift))
    return tuple(points)
