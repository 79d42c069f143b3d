"""Effects by days since first exposure: per (metric, variant, exposure day) sums, and per-user early/late values.

Definitions (one place; the docs' statistics page repeats them):

* A user's **exposure day** ``d`` (0, 1, 2, ...) is the interval ``[first_exposure + d days,
  first_exposure + (d + 1) days)`` (24-hour days counted from the user's own first exposure, not UTC days).
* Exposure day ``d`` is **observed** when it has ended by ``as_of`` (the first of the analysis ``end``, the
  experiment's stop and the time of the analysis): a user observed for ``k = floor((as_of - first_exposure) / 1 day)`` complete days (at most
  :data:`MAX_EXPOSURE_DAYS`) is in the cohort of every day ``d < k``. Partial days are left out, so each
  day's cohort is the users who could have acted on all of it.
* A user's **value on day d** uses the metric's qualifying events (the headline's: at or after first
  exposure + ``delay_hours``, inside ``window_hours``, at or after ``start``) whose time falls in that
  exposure day: binomial 1 with at least one such event, count the number of events, mean the sum of
  values (NULL counts 1). Users without events have 0. Capping is not applied per day; ratio and
  quantile metrics have no exposure-day series.
* Per user observed beyond :data:`LATE_FROM` days: ``early`` is the mean value over exposure days
  ``0 .. EARLY_DAYS - 1``, ``late`` the mean over days ``LATE_FROM .. k - 1`` (the input of
  :func:`abcore.stats.novelty_test`).

Rows (columns :data:`EXPOSURE_DAY_COLUMNS`): ``part = 'cohort'`` (per variant, ``day`` = k, ``n`` users
observed exactly k complete days; metric NULL), ``part = 'day'`` (per metric, variant and exposure day
``day``: ``sum_y`` / ``sum_y2`` of the users' day values, over users with events that day), ``part =
'novelty'`` (per metric and variant: ``n`` users observed beyond ``LATE_FROM`` days with events in the
early or late days, ``sum_y`` / ``sum_y2`` of early, ``sum_x`` / ``sum_x2`` of late, ``sum_xy`` of
early x late). Users without events add 0 to every sum, so the cohort counts complete them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.sql.dialects import US_PER_DAY, Dialect
from abcore.analysis.sql.metric_values import MetricContext, metric_refs
from abcore.analysis.sql.population import scan_ctes
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import TimeKeys, bound_offsets, epoch_us

__all__ = [
    "EARLY_DAYS",
    "EXPOSURE_DAY_COLUMNS",
    "EXPOSURE_DAY_KINDS",
    "LATE_FROM",
    "MAX_EXPOSURE_DAYS",
    "exposure_day_parts",
]

#: Exposure days 0 .. EARLY_DAYS - 1 are the early days of the novelty test.
EARLY_DAYS = 1
#: Exposure days LATE_FROM and later are the late days (the long-run estimate).
LATE_FROM = 7
#: Exposure days beyond this many are not analysed (a user observed longer counts as observed this long).
MAX_EXPOSURE_DAYS = 28
#: The metric kinds with an exposure-day series.
EXPOSURE_DAY_KINDS: tuple[str, ...] = ("binomial", "count", "mean")
EXPOSURE_DAY_COLUMNS: tuple[str, ...] = ("part", "metric", "variant", "day", "n", "sum_y", "sum_y2", "sum_x",
                                         "sum_x2", "sum_xy")


def exposure_day_parts(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None, as_of: datetime,
) -> tuple[list[tuple[str, str]], list[str]]:
    """The CTEs and SELECTs (columns :data:`EXPOSURE_DAY_COLUMNS`) of the exposure-day rows of ``metrics``
    (validated definitions; kinds other than :data:`EXPOSURE_DAY_KINDS` are left out) observed at ``as_of``."""
    offsets = bound_offsets(metrics, False, 0)
    ctes = scan_ctes(d, src, metrics, experiment, start, end, None, offsets)
    ctx = MetricContext(d, src, experiment, start, end, False, offsets, metric_refs(d, metrics), 0)
    t = TimeKeys(d, src)
    as_of_us = epoch_us(as_of)
    k = d.int_div(f"({as_of_us} - first_us)", str(US_PER_DAY))
    capped_k = f"CASE WHEN {k} > {MAX_EXPOSURE_DAYS} THEN {MAX_EXPOSURE_DAYS} ELSE {k} END"
    ctes.append(("xd_pop", f"SELECT user_id, variant, first_us, {capped_k} AS k FROM population"
                           f" WHERE first_us <= {as_of_us}"))
    null, zero = d.double("NULL"), d.double("0")
    selects = [f"SELECT 'cohort' AS part, {d.text('NULL')} AS metric, variant, k AS day, COUNT(*) AS n,"
               f" {null} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2, {null} AS sum_xy"
               f" FROM xd_pop GROUP BY variant, k"]
    for i, m in enumerate(metrics):
        if m.kind not in EXPOSURE_DAY_KINDS:
            continue
        ctes.append(ctx.events_cte(i, m, False))
        dd = d.int_div(f"({t.to_us('e.ts_key')} - p.first_us)", str(US_PER_DAY))
        ctes.append((f"m{i}_xe", f"SELECT e.user_id, e.variant, p.k, {dd} AS dd, e.value"
                                 f" FROM m{i}_events e JOIN xd_pop p ON p.user_id = e.user_id WHERE e.post = 1"))
        ctes.append((f"m{i}_xd", f"SELECT user_id, variant, k, dd, {_day_value(d, m.kind)} AS y"
                                 f" FROM m{i}_xe WHERE dd < k GROUP BY user_id, variant, k, dd"))
        early = f"SUM(CASE WHEN dd < {EARLY_DAYS} THEN y ELSE {zero} END) / {EARLY_DAYS}"
        late = f"SUM(CASE WHEN dd >= {LATE_FROM} THEN y ELSE {zero} END) / {d.double(f'k - {LATE_FROM}')}"
        ctes.append((f"m{i}_xu", f"SELECT user_id, variant, {early} AS e, {late} AS l FROM m{i}_xd"
                                 f" WHERE k > {LATE_FROM} GROUP BY user_id, variant, k"))
        name = literal(m.name, d)
        selects.append(f"SELECT 'day' AS part, {name} AS metric, variant, dd AS day, 0 AS n, SUM(y) AS sum_y,"
                       f" SUM(y * y) AS sum_y2, {zero} AS sum_x, {zero} AS sum_x2, {zero} AS sum_xy"
                       f" FROM m{i}_xd GROUP BY variant, dd")
        selects.append(f"SELECT 'novelty' AS part, {name} AS metric, variant, {LATE_FROM} AS day, COUNT(*) AS n,"
                       f" SUM(e) AS sum_y, SUM(e * e) AS sum_y2, SUM(l) AS sum_x, SUM(l * l) AS sum_x2,"
                       f" SUM(e * l) AS sum_xy FROM m{i}_xu GROUP BY variant")
    return ctes, selects


def _day_value(d: Dialect, kind: str) -> str:
    """A user's value on one exposure day over its qualifying events (rows of ``m<i>_xe``)."""
    if kind == "binomial":
        return d.double("1")
    if kind == "count":
        return d.double("COUNT(*)")
    return f"SUM({d.double('COALESCE(value, 1)')})"
