"""Sufficient statistics: ``GROUP BY variant[, segment]`` into n, sums, sums of squares and cross-products.

Per metric one SELECT with the columns :data:`STATS_COLUMNS` (``UNION ALL`` of them is the statement of
:func:`abcore.analysis.sql.build.build_stats_query`): over the per-user values (``m<i>_eu`` joined to the
population counts ``pop_n``, or the capped ``m<i>_capped``), or for a ``quantile`` metric the exact
nearest-rank quantile of the event values and the order statistics of its confidence interval. Also the
nearest-rank percentiles of event values (:func:`percentile_parts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.sql.caps import cap_ctes
from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.metric_values import (
    MetricContext,
    metric_refs,
    population_values_cte,
    user_values_cte,
    users_all_cte,
)
from abcore.analysis.sql.population import scan_ctes
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import bound_offsets, hours_us
from abcore.metrics import RATIO_KINDS
from abcore.stats._common import norm_ppf

__all__ = ["STATS_COLUMNS", "percentile_parts", "stats_parts"]

STATS_COLUMNS: tuple[str, ...] = (
    "metric", "variant", "segment", "n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy", "q_n", "q_value",
    "q_lower", "q_upper",
)


def stats_parts(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None, segment: str | None, cuped: bool, cuped_lookback_hours: float, quantile_alpha: float,
    epochs: Sequence[datetime] = (),
) -> tuple[list[tuple[str, str]], list[str]]:
    """The CTEs (population, per-metric events ``m<i>_events``, per-user values, caps) and the per-metric
    SELECTs (columns :data:`STATS_COLUMNS`) of :func:`abcore.analysis.sql.build.build_stats_query`, for
    metric definitions the caller has validated. With ``epochs`` the rows are per epoch (the ``segment``
    column, :func:`abcore.analysis.sql.population.epoch_label`)."""
    z = -norm_ppf(quantile_alpha / 2)  # the z of abcore.stats.quantile_ranks (same float)
    lookback = hours_us(cuped_lookback_hours)
    offsets = bound_offsets(metrics, cuped, lookback)
    ctes = scan_ctes(d, src, metrics, experiment, start, end, segment, offsets, epochs)
    grouped = segment is not None or bool(epochs)
    ctx = MetricContext(d, src, experiment, start, end, grouped, offsets, metric_refs(d, metrics), lookback)
    selects: list[str] = []
    if any(getattr(m, "cap", None) is None for m in metrics):  # uncapped and quantile metrics: n is pop_n's
        ctes.append(("pop_n", "SELECT variant, segment, COUNT(*) AS n FROM population GROUP BY variant, segment"))
    # Dialect.one_user_pass: every metric's per-user values in one GROUP BY over events_in (users_all, put here
    # once the loop has its columns); m<i>_eu is then that metric's columns of it.
    one_pass = d.one_user_pass and d.shared_scan
    user_cols: list[str] = []
    users_at = len(ctes)
    for i, m in enumerate(metrics):
        with_pre = cuped and m.kind not in (*RATIO_KINDS, "quantile")
        ctes.append(ctx.events_cte(i, m, with_pre))
        if m.kind == "quantile":
            ranked, select = _quantile_parts(d, i, m, z)
            ctes.append(ranked)
            selects.append(select)
            continue
        ctes.append(user_values_cte(ctx, i, m, with_pre, one_pass, user_cols))
        sums = _sums(d, m.kind in RATIO_KINDS or with_pre)
        if getattr(m, "cap", None) is None:
            selects.append(_uncapped_select(d, i, m, sums))
            continue
        # Capped: every population user's value (0 without events) for the pooled bounds and the clip.
        ctes.append(population_values_cte(i))
        ctes.extend(cap_ctes(d, i, m, ["y", "x"] if m.kind == "ratio" else ["y"]))
        selects.append(
            f"SELECT {literal(m.name, d)} AS metric, variant, segment, COUNT(*) AS n, {sums}, {_tail(d)}\n"
            f"  FROM m{i}_capped GROUP BY variant, segment"
        )
    if user_cols:
        ctes.insert(users_at, users_all_cte(d, segment if segment is not None or not epochs else "epoch", user_cols))
    return ctes, selects


def _sums(d: Dialect, has_x: bool) -> str:
    """``sum_y, sum_y2, sum_x, sum_x2, sum_xy`` over per-user ``y`` / ``x`` (x columns 0 without ``has_x``)."""
    zero = d.double("0")
    yd = d.double("y")
    xd = d.double("x")
    return (
        f"SUM({yd}) AS sum_y, SUM({yd} * {yd}) AS sum_y2,"
        + (f" SUM({xd}) AS sum_x, SUM({xd} * {xd}) AS sum_x2, SUM({xd} * {yd}) AS sum_xy"
           if has_x else f" {zero} AS sum_x, {zero} AS sum_x2, {zero} AS sum_xy")
    )


def _tail(d: Dialect) -> str:
    """The quantile columns of a non-quantile metric's row."""
    null = d.double("NULL")
    return f"0 AS q_n, {null} AS q_value, {null} AS q_lower, {null} AS q_upper"


def _uncapped_select(d: Dialect, i: int, m: Any, sums: str) -> str:
    """An uncapped metric's rows: the population counts ``pop_n`` with the sums over users with events
    (users without any count 0 in every sum)."""
    zero = d.double("0")
    sums_of = ", ".join(f"COALESCE(s.{c}, {zero}) AS {c}" for c in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"))
    return (
        f"SELECT {literal(m.name, d)} AS metric, c.variant, c.segment, c.n, {sums_of}, {_tail(d)}\n"
        f"  FROM pop_n c LEFT JOIN (SELECT variant, segment, {sums} FROM m{i}_eu GROUP BY variant, segment) s"
        f" ON s.variant = c.variant AND s.segment = c.segment"
    )


def _clip_rank(expr: str) -> str:
    """``expr`` clipped to the ranks ``[1, cnt]``."""
    return f"(CASE WHEN {expr} < 1 THEN 1 WHEN {expr} > cnt THEN cnt ELSE {expr} END)"


def _quantile_parts(d: Dialect, i: int, m: Any, z: float) -> tuple[tuple[str, str], str]:
    """``m<i>_ranked`` (event values ranked per variant and segment) and the quantile metric's SELECT:
    ``q_n`` values, the nearest-rank ``q_value`` and the order statistics ``q_lower`` / ``q_upper`` at the
    ranks of :func:`abcore.stats.quantile_ranks` (``n`` is the exposed users of the variant and segment, from
    ``pop_n``, like every other metric's; ``q_n`` the values)."""
    ranked = (
        f"SELECT variant, segment, user_id, value, ROW_NUMBER() OVER"
        f" (PARTITION BY variant, segment ORDER BY value) AS rn,"
        # the same window as rn (one sort): the whole partition's count
        f" COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING"
        f" AND UNBOUNDED FOLLOWING) AS cnt\n"
        f"  FROM m{i}_events WHERE post = 1 AND value IS NOT NULL"
    )
    null = d.double("NULL")
    q = float(m.quantile)
    rank = d.ceil(f"{q!r} * cnt")
    half = f"{z!r} * SQRT(cnt * {q!r} * {1 - q!r})"  # the float order of quantile_ranks
    lo_rank = _clip_rank(d.floor(f"{q!r} * cnt - {half}"))
    hi_rank = _clip_rank(d.ceil(f"{q!r} * cnt + {half}"))
    values = (
        f"SELECT variant, segment, COUNT(*) AS q_n, MIN(CASE WHEN rn = {rank} THEN {d.double('value')} END) AS q_value,"
        f" MIN(CASE WHEN rn = {lo_rank} THEN {d.double('value')} END) AS q_lower,"
        f" MIN(CASE WHEN rn = {hi_rank} THEN {d.double('value')} END) AS q_upper"
        f" FROM m{i}_ranked GROUP BY variant, segment"
    )
    # n is every exposed user of the variant and segment (pop_n), as for every other metric; the
    # quantile's own count is q_n (values).
    select = (
        f"SELECT {literal(m.name, d)} AS metric, c.variant, c.segment, c.n,"
        f" {null} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2, {null} AS sum_xy,"
        f" q.q_n, q.q_value, q.q_lower, q.q_upper\n"
        f"  FROM pop_n c JOIN ({values}) q ON q.variant = c.variant AND q.segment = c.segment"
    )
    return (f"m{i}_ranked", ranked), select


def percentile_parts(d: Dialect, i: int, name: str) -> tuple[tuple[str, str], str]:
    """``m<i>_pct`` and the ``percentile`` rows (columns of :data:`abcore.analysis.sql.build.ANALYSIS_COLUMNS`)
    of metric ``name``'s qualifying event values per variant (NULL values left out): ``n`` values, ``sum_y``
    their sum, ``v_min`` / ``v_max`` and nearest-rank ``p50`` / ``p95`` / ``p99`` (rank ``ceil(p N / 100)``)."""
    if d.rank_distinct_values:
        # One row per distinct value with its count c; cum = values <= it. The value at rank k is the
        # smallest distinct value with cum >= k: the k-th smallest value (Dialect.rank_distinct_values).
        ranked = (f"SELECT variant, value, c, SUM(c) OVER (PARTITION BY variant ORDER BY value ROWS BETWEEN"
                  f" UNBOUNDED PRECEDING AND CURRENT ROW) AS cum, SUM(c) OVER (PARTITION BY variant) AS cnt\n"
                  f"  FROM (SELECT variant, value, COUNT(*) AS c FROM m{i}_events WHERE post = 1 AND value IS NOT NULL"
                  f" GROUP BY variant, value) g")
        at, n_expr, sum_expr = "cum >=", "CAST(SUM(c) AS BIGINT)", f"SUM({d.double('value')} * c)"
    else:
        ranked = (f"SELECT variant, value, ROW_NUMBER() OVER (PARTITION BY variant ORDER BY value) AS rn,"
                  f" COUNT(*) OVER (PARTITION BY variant ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED"
                  f" FOLLOWING) AS cnt FROM m{i}_events WHERE post = 1 AND value IS NOT NULL")
        at, n_expr, sum_expr = "rn =", "COUNT(*)", f"SUM({d.double('value')})"
    picks = ", ".join(
        f"MIN(CASE WHEN {at} {d.int_div(f'(cnt * {p} + 99)', '100')} THEN {d.double('value')} END) AS p{p}"
        for p in (50, 95, 99)
    )
    null = d.double("NULL")
    int_null = "CAST(NULL AS BIGINT)" if d.name != "sqlite" else "NULL"
    select = (
        f"SELECT 'percentile' AS part, {literal(name, d)} AS metric, variant, {d.text('NULL')} AS segment, {int_null} AS day,"
        f" {n_expr} AS n, {sum_expr} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2,"
        f" {null} AS sum_xy, 0 AS q_n, {null} AS q_value, {null} AS q_lower, {null} AS q_upper,"
        f" MIN({d.double('value')}) AS v_min, MAX({d.double('value')}) AS v_max, {picks}\n"
        f"  FROM m{i}_pct GROUP BY variant"
    )
    return (f"m{i}_pct", ranked), select
