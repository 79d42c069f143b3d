"""Differential impact (``Results.differential_impact``): who is affected differently?

Every segment attribute of the experiment (the stored assignment attributes; with an exposure table its
declared segment columns) is scanned. For each cell (attribute = value, ``'(none)'`` for users without
it), binomial / count / mean metric and treatment, the effect among the cell's users (the headline's
test: z-test or Welch, no CUPED) is compared with the effect among everyone else (the rest's sums are
the totals minus the cell's) by :func:`abcore.stats.effect_difference`. The p-values of all cells,
metrics and treatments form one family, adjusted by Benjamini-Hochberg (``fdr_bh``) at the analysis
``alpha`` as the false-discovery rate; the cells below it survive. Attributes with more than
:data:`MAX_VALUES` values (identifiers, free text) are left out of the scan.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from sqlmodel import Session

from abcore import stats
from abcore.analysis import overview
from abcore.analysis.engines import Engine, MetricStatsRow, compute_stats
from abcore.analysis.results import DifferentialCell, DifferentialImpact, VariantInfo
from abcore.analysis.sql.build import QuerySource
from abcore.metrics import MetricSpec
from abcore.stats import MeanSummary, TestResult

__all__ = ["MAX_VALUES", "differential_impact", "scan_cells", "scanned_attributes"]

#: Attributes with more distinct values than this are not scanned.
MAX_VALUES = 50
_KINDS = ("binomial", "count", "mean")


def _test(kind: str, a: MeanSummary, b: MeanSummary, alpha: float) -> TestResult:
    """The headline test of the family: z-test (binomial, unpooled), Welch (count, mean)."""
    if kind == "binomial":
        return stats.proportion_test_from(stats.BinarySummary(a.n, int(round(a.sum))),
                                          stats.BinarySummary(b.n, int(round(b.sum))), alpha=alpha)
    return stats.mean_test_from(a, b, alpha=alpha)


def _minus(total: MeanSummary, part: MeanSummary) -> MeanSummary:
    return MeanSummary(total.n - part.n, total.sum - part.sum, max(total.sum_squares - part.sum_squares, 0.0))


def _cells_of(
    attribute: str, rows: Sequence[MetricStatsRow], vid: Callable[[Any], int | None], control: int,
    treatments: Sequence[VariantInfo], roles: Mapping[str, str], specs: Mapping[str, MetricSpec], alpha: float,
) -> list[tuple[DifferentialCell, float]]:
    """Every testable cell of one attribute with its raw p-value (adjusted later)."""
    sums: dict[tuple[str, str, int], MeanSummary] = {}
    totals: dict[tuple[str, int], MeanSummary] = {}
    for r in rows:
        v = vid(r.variant)
        if v is None:
            continue
        s = MeanSummary(r.n, r.sum_y, r.sum_y2)
        sums[(str(r.segment), r.metric, v)] = s
        t = totals.get((r.metric, v), MeanSummary(0, 0.0, 0.0))
        totals[(r.metric, v)] = MeanSummary(t.n + s.n, t.sum + s.sum, t.sum_squares + s.sum_squares)
    out = []
    for value in sorted({k[0] for k in sums}):
        for metric, role in roles.items():
            kind = specs[metric].kind
            for tv in treatments:
                a, b = sums.get((value, metric, control)), sums.get((value, metric, tv.variant_id))
                ta, tb = totals.get((metric, control)), totals.get((metric, tv.variant_id))
                if a is None or b is None or ta is None or tb is None:
                    continue
                ra, rb = _minus(ta, a), _minus(tb, b)
                if min(a.n, b.n, ra.n, rb.n) < 2:
                    continue
                cell = _test(kind, a, b, alpha)
                versus = stats.effect_difference(cell, _test(kind, ra, rb, alpha), alpha=alpha)
                out.append((DifferentialCell(attribute, value, metric, role, tv.name, a.n, b.n, cell, versus,
                                             versus.p_value, False), versus.p_value))
    return out


def scan_cells(
    rows_by_attribute: Mapping[str, Sequence[MetricStatsRow]], vid: Callable[[Any], int | None],
    variants: Sequence[VariantInfo], roles: Mapping[str, str], specs: Mapping[str, MetricSpec], alpha: float,
) -> DifferentialImpact:
    """The scan over per-segment statistics (``rows_by_attribute``: attribute -> rows segmented by it), pure:
    every cell tested against the rest, BH across all of them at ``alpha``."""
    control = next((v for v in variants if v.is_control), None)
    treatments = [v for v in variants if not v.is_control]
    roles = {m: r for m, r in roles.items() if m in specs and specs[m].kind in _KINDS}
    found: list[tuple[DifferentialCell, float]] = []
    if control is not None:
        for attribute, rows in rows_by_attribute.items():
            found += _cells_of(attribute, rows, vid, control.variant_id, treatments, roles, specs, alpha)
    adjusted = stats.adjust_pvalues([p for _, p in found], method="fdr_bh") if found else []
    cells = [
        replace(c, p_value_adjusted=float(q), significant=True)
        for (c, _), q in zip(found, adjusted, strict=True) if q < alpha
    ]
    cells.sort(key=lambda c: (c.p_value_adjusted, c.attribute, c.value, c.metric, c.variant))
    return DifferentialImpact(tuple(rows_by_attribute), sum(1 for _, p in found if p == p), alpha, tuple(cells))


def differential_impact(
    runner: Engine, qsource: QuerySource, key: Any, vid: Callable[[Any], int | None], start: datetime | None,
    end: datetime | None, attributes: Sequence[str], variants: Sequence[VariantInfo], roles: Mapping[str, str],
    specs: Mapping[str, MetricSpec], alpha: float,
) -> DifferentialImpact:
    """Run one segmented statistics query per attribute (binomial, count and mean metrics) and scan the cells
    (:func:`scan_cells`); attributes with more than :data:`MAX_VALUES` values are left out."""
    metrics = [specs[m] for m in roles if m in specs and specs[m].kind in _KINDS]
    by_attribute: dict[str, list[MetricStatsRow]] = {}
    if metrics:
        for attribute in attributes:
            rows = compute_stats(key, metrics, engine=runner, source=qsource, start=start, end=end, segment=attribute)
            if len({r.segment for r in rows}) <= MAX_VALUES:
                by_attribute[attribute] = rows
    return scan_cells(by_attribute, vid, variants, roles, specs, alpha)


def scanned_attributes(session: Session, experiment_id: int, qsource: QuerySource) -> list[str]:
    """The attributes to scan: those stored with the experiment's assignments
    (:func:`abcore.analysis.overview.attribute_names`), or with an exposure-table source its segment columns."""
    if qsource.exposures is None:
        return overview.attribute_names(session=session, experiment_id=experiment_id)
    return list(qsource.segment_columns)
