"""The effect by days since first exposure and the novelty / primacy test of :func:`abcore.analysis.pipeline.analyze`.

Runs the query of :func:`abcore.analysis.sql.build.build_exposure_day_query` (definitions in
:mod:`abcore.analysis.sql.exposure_days`) and turns its rows into one series of
:class:`abcore.analysis.results.ExposureDayPoint` and one :class:`abcore.stats.NoveltyResult` per metric
and treatment; attaches them to the :class:`abcore.analysis.results.MetricResult` rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from abcore import stats
from abcore.analysis.engines import Engine
from abcore.analysis.overview import as_utc
from abcore.analysis.results import ExposureDayPoint, MetricResult, VariantInfo
from abcore.analysis.sql.build import QuerySource, build_exposure_day_query
from abcore.analysis.sql.exposure_days import EXPOSURE_DAY_KINDS, LATE_FROM
from abcore.metrics import MetricSpec
from abcore.stats import EarlyLateSummary, NoveltyResult, TestResult

__all__ = ["ExposureDayRows", "exposure_day_results", "with_exposure_days"]


class ExposureDayRows:
    """The query's rows by key: cohort sizes per variant and observed days, day sums and novelty sums."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], vid: Callable[[Any], int | None]) -> None:
        self.cohort: dict[int, dict[int, int]] = {}
        self.day: dict[tuple[str, int, int], tuple[float, float]] = {}
        self.novelty: dict[tuple[str, int], tuple[float, ...]] = {}
        for r in rows:
            v = vid(r["variant"])
            if v is None:
                continue
            part, day = str(r["part"]), int(r["day"])
            if part == "cohort":
                self.cohort.setdefault(v, {})[day] = int(r["n"])
            elif part == "day":
                self.day[(str(r["metric"]), v, day)] = (float(r["sum_y"] or 0.0), float(r["sum_y2"] or 0.0))
            else:
                self.novelty[(str(r["metric"]), v)] = tuple(
                    float(r[c] or 0.0) for c in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"))

    def users_beyond(self, variant: int, day: int) -> int:
        """Users of ``variant`` observed for more than ``day`` complete exposure days."""
        return sum(n for k, n in self.cohort.get(variant, {}).items() if k > day)

    def days(self) -> int:
        """The number of exposure days some user has been observed for."""
        return max((k for by_k in self.cohort.values() for k in by_k), default=0)


def _day_test(kind: str, a: stats.MeanSummary, b: stats.MeanSummary, alpha: float) -> TestResult:
    """The headline test of the metric's family on one exposure day: z-test (binomial), Welch (count, mean)."""
    if kind == "binomial":
        return stats.proportion_test_from(stats.BinarySummary(a.n, int(round(a.sum))),
                                          stats.BinarySummary(b.n, int(round(b.sum))), alpha=alpha)
    return stats.mean_test_from(a, b, alpha=alpha)


def _series(data: ExposureDayRows, metric: str, kind: str, control: int, treatment: int,
            alpha: float) -> tuple[ExposureDayPoint, ...]:
    points = []
    for day in range(data.days()):
        arms = []
        for v in (control, treatment):
            sy, sy2 = data.day.get((metric, v, day), (0.0, 0.0))
            arms.append(stats.MeanSummary(data.users_beyond(v, day), sy, sy2))
        a, b = arms
        if a.n == 0 or b.n == 0:
            continue
        points.append(ExposureDayPoint(day, a.n, b.n, a.mean, b.mean, _day_test(kind, a, b, alpha)))
    return tuple(points)


def _novelty(data: ExposureDayRows, metric: str, control: int, treatment: int, alpha: float) -> NoveltyResult | None:
    arms = []
    for v in (control, treatment):
        n = data.users_beyond(v, LATE_FROM)
        if n < 2:
            return None
        arms.append(EarlyLateSummary(n, *data.novelty.get((metric, v), (0.0,) * 5)))
    return stats.novelty_test(arms[0], arms[1], alpha=alpha)


def exposure_day_results(
    runner: Engine, qsource: QuerySource, key: Any, vid: Callable[[Any], int | None], start: datetime | None,
    end: datetime | None, stopped_at: datetime | None, now: datetime, variants: Sequence[VariantInfo],
    specs: Mapping[str, MetricSpec], alpha: float,
) -> dict[tuple[str, int], tuple[tuple[ExposureDayPoint, ...], NoveltyResult | None]]:
    """Per (metric, treatment variant id): the effect by exposure day and the novelty test (level ``alpha``)
    of every binomial, count and mean metric in ``specs``, observed until the first of ``end``, ``stopped_at``
    (the experiment's stop: later days have no data) and ``now``."""
    as_of = min(t for t in (end, as_utc(stopped_at), now) if t is not None)
    control = next((v for v in variants if v.is_control), None)
    metrics = [s for s in specs.values() if s.kind in EXPOSURE_DAY_KINDS]
    if control is None or not metrics:
        return {}
    sql = build_exposure_day_query(metrics, experiment=key, dialect=runner.dialect, as_of=as_of, source=qsource,
                                   start=start, end=end)
    data = ExposureDayRows(runner.run(sql), vid)
    out = {}
    for spec in metrics:
        for tv in (v for v in variants if not v.is_control):
            out[(spec.name, tv.variant_id)] = (
                _series(data, spec.name, spec.kind, control.variant_id, tv.variant_id, alpha),
                _novelty(data, spec.name, control.variant_id, tv.variant_id, alpha),
            )
    return out


def with_exposure_days(
    results: Sequence[MetricResult],
    by_key: Mapping[tuple[str, int], tuple[tuple[ExposureDayPoint, ...], NoveltyResult | None]],
) -> tuple[MetricResult, ...]:
    """``results`` with ``by_exposure_day`` and ``novelty`` set from :func:`exposure_day_results`."""
    out = []
    for r in results:
        found = by_key.get((r.metric, r.variant_id))
        out.append(r if found is None else replace(r, by_exposure_day=found[0], novelty=found[1]))
    return tuple(out)
