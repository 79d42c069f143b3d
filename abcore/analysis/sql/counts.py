"""Plain counts over the analysis population: qualifying events, users and value sums per metric, and the
histogram of qualifying event values.

Both read the same CTEs as the statistics (:func:`abcore.analysis.sql.population.scan_ctes` and the
per-metric ``m<i>_events`` of :mod:`abcore.analysis.sql.metric_values`), so they count the users and the
windows (first exposure + delay .. + window, inside ``[start, end)``) the analysis counts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.metric_values import MetricContext, metric_refs
from abcore.analysis.sql.population import scan_ctes
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import bound_offsets

__all__ = ["COUNT_COLUMNS", "HISTOGRAM_COLUMNS", "count_parts", "histogram_parts"]

COUNT_COLUMNS: tuple[str, ...] = ("metric", "variant", "n", "events", "users", "converted", "sum_value")
HISTOGRAM_COLUMNS: tuple[str, ...] = ("variant", "bucket", "n", "lo", "hi")


def _event_ctes(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None,
) -> list[tuple[str, str]]:
    """The population, the event scan and every metric's ``m<i>_events`` (no CUPED, no segment)."""
    offsets = bound_offsets(metrics, False, 0)
    ctes = scan_ctes(d, src, metrics, experiment, start, end, None, offsets)
    ctx = MetricContext(d, src, experiment, start, end, False, offsets, metric_refs(d, metrics), 0)
    return ctes + [ctx.events_cte(i, m, False) for i, m in enumerate(metrics)]


def count_parts(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None,
) -> tuple[list[tuple[str, str]], list[str]]:
    """CTEs and SELECTs (columns :data:`COUNT_COLUMNS`) of the counts per metric and population variant.

    A row with ``metric`` NULL per variant gives the population ``n``; per metric and variant ``n`` again,
    ``events`` the qualifying events, ``users`` the users with one, ``converted`` the users with a
    qualifying value >= 1 (NULL counts as 1) and ``sum_value`` the sum of the values (NULL as 1).
    """
    ctes = _event_ctes(d, src, metrics, experiment, start, end)
    ctes.append(("pop_n", "SELECT variant, COUNT(*) AS n FROM population GROUP BY variant"))
    zero = d.double("0")
    selects = [f"SELECT {d.text('NULL')} AS metric, variant, n, 0 AS events, 0 AS users, 0 AS converted,"
               f" {zero} AS sum_value FROM pop_n"]
    value = "COALESCE(value, 1)"
    for i, m in enumerate(metrics):
        per_user = (
            f"SELECT user_id, MIN(variant) AS variant, COUNT(*) AS events,"
            f" MAX(CASE WHEN {value} >= 1 THEN 1 ELSE 0 END) AS converted, SUM({d.double(value)}) AS v"
            f" FROM m{i}_events WHERE post = 1 GROUP BY user_id"
        )
        selects.append(
            f"SELECT {literal(m.name, d)} AS metric, c.variant, c.n, COALESCE(s.events, 0) AS events,"
            f" COALESCE(s.users, 0) AS users, COALESCE(s.converted, 0) AS converted,"
            f" COALESCE(s.sum_value, {zero}) AS sum_value\n"
            f"  FROM pop_n c LEFT JOIN (SELECT variant, SUM(events) AS events, COUNT(*) AS users,"
            f" SUM(converted) AS converted, SUM(v) AS sum_value\n  FROM ({per_user}) u GROUP BY variant) s"
            f" ON s.variant = c.variant"
        )
    return ctes, selects


def histogram_parts(
    d: Dialect, src: QuerySource, metric: Any, experiment: Any, start: datetime | None, end: datetime | None,
    bins: int,
) -> tuple[list[tuple[str, str]], list[str]]:
    """CTEs and the SELECT (columns :data:`HISTOGRAM_COLUMNS`) of the histogram of ``metric``'s qualifying
    non-NULL event values per variant: ``bins`` equal-width bins from the smallest value ``lo`` to the
    largest ``hi`` of all variants, ``bucket`` = ``floor((value - lo) / ((hi - lo) / bins))`` (0 when
    ``hi = lo``; ``bins`` for the largest value, which belongs to the last bin)."""
    ctes = _event_ctes(d, src, [metric], experiment, start, end)
    ctes.append(("vals", f"SELECT variant, {d.double('value')} AS value FROM m0_events"
                         f" WHERE post = 1 AND value IS NOT NULL"))
    ctes.append(("val_range", "SELECT MIN(value) AS lo, MAX(value) AS hi FROM vals"))
    bucket = f"CASE WHEN r.hi > r.lo THEN {d.floor(f'(v.value - r.lo) / ((r.hi - r.lo) / {int(bins)})')} ELSE 0 END"
    select = (
        f"SELECT variant, bucket, COUNT(*) AS n, MIN(lo) AS lo, MIN(hi) AS hi FROM (\n"
        f"  SELECT v.variant, {bucket} AS bucket, r.lo, r.hi FROM vals v CROSS JOIN val_range r\n"
        f"  ) b GROUP BY variant, bucket"
    )
    return ctes, [select]
