"""The segment breakdown of :func:`abcore.analysis.pipeline.analyze`: per value of an assignment attribute,
every metric x treatment tested against the control like the headline (unadjusted, no CUPED)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.compare import compare, summaries
from abcore.analysis.engines import Engine, compute_stats
from abcore.analysis.results import SegmentResult, VariantInfo
from abcore.analysis.sql.build import QuerySource
from abcore.metrics import MetricSpec

__all__ = ["segment_results"]


def segment_results(
    runner: Engine,
    qsource: QuerySource,
    key: Any,
    vid: Any,
    start: datetime | None,
    end: datetime | None,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    specs: Mapping[str, MetricSpec],
    segment: str,
    alpha: float,
) -> tuple[SegmentResult, ...]:
    """Per value of ``segment``, every metric x treatment with the headline's test (unadjusted, no CUPED)."""
    control = next((v for v in variants if v.is_control), None)
    if control is None or not metric_names:
        return ()
    rows = compute_stats(key, [specs[m] for m in metric_names], engine=runner, source=qsource, start=start, end=end,
                         segment=segment, quantile_alpha=alpha)
    by_key = {(r.segment, r.metric, v): r for r in rows if (v := vid(r.variant)) is not None}
    out: list[SegmentResult] = []
    for seg in sorted({r.segment for r in rows}, key=str):
        for metric in metric_names:
            spec = specs[metric]
            ra = by_key.get((seg, metric, control.variant_id))
            for tv in (v for v in variants if not v.is_control):
                rb = by_key.get((seg, metric, tv.variant_id))
                if ra is None or rb is None:
                    continue
                a = summaries(ra, spec, control.variant_id, alpha)
                b = summaries(rb, spec, tv.variant_id, alpha)
                test, _ = compare(spec, a, b, method="frequentist", cuped=False, alpha=alpha, planned_n=1.0)
                out.append(SegmentResult(segment, str(seg), metric, tv.name, ra.n, rb.n, a.value, b.value, test))
    return tuple(out)
