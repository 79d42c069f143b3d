"""Counts and value histograms over the analysis population, read from the store.

What the API's ``/metrics`` and the results page's value histogram show: plain counts, not
statistics, over the same population (assigned users with a first exposure in ``[start, end)``)
and the same qualifying events (at or after first exposure + the definition's ``delay_hours``,
inside its ``window_hours`` and ``[start, end)``) that :func:`abcore.analysis.pipeline.analyze`
reads: the SQL comes from :func:`abcore.analysis.sql.build.build_metric_counts_query` and
:func:`abcore.analysis.sql.build.build_value_histogram_query`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from abcore.analysis.engines import store_engine
from abcore.analysis.sql.build import build_metric_counts_query, build_value_histogram_query
from abcore.metrics import MetricSpec, resolve_specs

__all__ = ["MetricCounts", "PopulationCounts", "ValueDistribution", "event_metric_specs", "metric_counts",
           "value_distribution"]


def event_metric_specs(*, session: Session, names: Sequence[str]) -> list[MetricSpec]:
    """The event metrics ``names`` with the window and delay of their definitions (none without one)."""
    defined = resolve_specs(session=session, names=names)
    out = []
    for name in dict.fromkeys(names):
        spec = defined.get(name)
        window = getattr(spec, "window_hours", None)
        delay = float(getattr(spec, "delay_hours", 0.0) or 0.0)
        out.append(MetricSpec(name=name, kind="mean", window_hours=window, delay_hours=delay))
    return out


@dataclass(frozen=True)
class MetricCounts:
    """One metric in one variant: qualifying ``events``, ``users`` with one, ``converted`` users (a qualifying
    value >= 1) and the ``sum`` of the qualifying values (``value``, or 1 when NULL; uncapped)."""

    variant_id: int
    metric: str
    events: int
    users: int
    converted: int
    sum: float


@dataclass(frozen=True)
class PopulationCounts:
    """``users``: the analysis population per variant id; ``metrics``: :class:`MetricCounts` per
    ``(variant_id, metric)`` (every population variant and metric asked for)."""

    users: dict[int, int]
    metrics: dict[tuple[int, str], MetricCounts]


def metric_counts(
    *, session: Session, experiment_id: int, metrics: Sequence[str], start: datetime | None = None,
    end: datetime | None = None,
) -> PopulationCounts:
    """The population per variant and each metric's qualifying events, users, converted users and value sum,
    in one query on the store (the definitions' windows and delays applied; see the module docstring)."""
    specs = event_metric_specs(session=session, names=metrics)
    sql = build_metric_counts_query(specs, experiment=experiment_id, dialect=store_engine(session).dialect,
                                    start=start, end=end)
    users: dict[int, int] = {}
    found: dict[tuple[int, str], MetricCounts] = {}
    for r in store_engine(session).run(sql):
        variant = int(r["variant"])
        if r["metric"] is None:
            users[variant] = int(r["n"])
            continue
        found[(variant, str(r["metric"]))] = MetricCounts(
            variant_id=variant, metric=str(r["metric"]), events=int(r["events"] or 0), users=int(r["users"] or 0),
            converted=int(r["converted"] or 0), sum=float(r["sum_value"] or 0.0),
        )
    return PopulationCounts(users=users, metrics=found)


@dataclass(frozen=True)
class ValueDistribution:
    """Histogram of a metric's qualifying event values per variant on shared bins.

    ``edges`` has ``bins + 1`` increasing values; ``counts[variant_id][i]`` counts values in
    ``[edges[i], edges[i + 1])`` (the last bin includes its right edge). Empty without values.
    """

    metric: str
    edges: tuple[float, ...]
    counts: dict[int, tuple[int, ...]]


def value_distribution(
    *, session: Session, experiment_id: int, metric: str, bins: int = 30, start: datetime | None = None,
    end: datetime | None = None,
) -> ValueDistribution:
    """The histogram of ``metric``'s qualifying non-NULL event values per variant (the events
    :func:`metric_counts` counts), on ``bins`` equal-width bins from the smallest to the largest value."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    spec = event_metric_specs(session=session, names=[metric])[0]
    runner = store_engine(session)
    rows = runner.run(build_value_histogram_query(spec, experiment=experiment_id, dialect=runner.dialect, bins=bins,
                                                  start=start, end=end))
    if not rows:
        return ValueDistribution(metric=metric, edges=(), counts={})
    lo, hi = float(rows[0]["lo"]), float(rows[0]["hi"])
    width = (hi - lo) / bins if hi > lo else 1.0
    counts: dict[int, list[int]] = {}
    for r in rows:
        at = min(max(int(r["bucket"]), 0), bins - 1)
        counts.setdefault(int(r["variant"]), [0] * bins)[at] += int(r["n"])
    edges = tuple(lo + i * width for i in range(bins + 1))
    return ValueDistribution(metric=metric, edges=edges, counts={k: tuple(v) for k, v in sorted(counts.items())})


