"""Daily series: per (metric, variant, UTC day) the increase of the metric's per-user sums on that day.

Built on the CTEs of :func:`abcore.analysis.sql.stats.stats_parts` (``m<i>_events``; ``m<i>_eu`` for the
day of a binomial user's first qualifying event; ``m<i>_cap`` for capped metrics), so the days summed up
to ``D`` give the headline sums with ``end`` at the end of day ``D``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from abcore.analysis.sql.caps import clipped
from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.metric_values import event_count, metric_refs, per_user_value
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import TimeKeys

__all__ = ["daily_parts"]


def daily_parts(d: Dialect, src: QuerySource, metrics: Sequence[Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """CTEs and SELECTs (columns ``metric, variant, day, sum_y, sum_x``; ``day`` a :meth:`Dialect.key_day`
    value) of the daily increases of every non-quantile metric, on the CTEs of
    :func:`abcore.analysis.sql.stats.stats_parts` (``i`` the index in ``metrics``)."""
    t = TimeKeys(d, src)
    zero = d.double("0")
    day = t.day("ts_key")
    refs = metric_refs(d, metrics)
    ctes: list[tuple[str, str]] = []
    selects: list[str] = []
    for i, m in enumerate(metrics):
        kind = m.kind
        if kind == "quantile":
            continue
        head = f"SELECT {literal(m.name, d)} AS metric, "
        if kind == "binomial":  # users on the day of their first qualifying event (m<i>_eu has it)
            selects.append(head + f"variant, first_day AS day, {d.double('COUNT(*)')} AS sum_y, {zero} AS sum_x\n"
                           f"  FROM m{i}_eu WHERE first_day IS NOT NULL GROUP BY variant, first_day")
            continue
        if kind == "ratio":
            y = per_user_value(d, "mean", refs[m.numerator], "post = 1")
            x = per_user_value(d, "mean", refs[m.denominator], "post = 1")
        elif kind == "event_mean":  # the day's values and events
            y, x = per_user_value(d, "mean", None, "post = 1"), event_count(d, "post = 1")
        else:
            y = per_user_value(d, kind, None, "post = 1")
            x = zero
        if getattr(m, "cap", None) is None:
            # Uncapped: the day's qualifying events per variant (no per-user step needed).
            selects.append(head + f"variant, {day} AS day, {y} AS sum_y, {x} AS sum_x\n"
                           f"  FROM m{i}_events WHERE post = 1 GROUP BY variant, {day}")
            continue
        more, capped = _capped_daily(d, t, i, head, y, x, ["y", "x"] if kind == "ratio" else ["y"])
        ctes += more
        selects += capped
    return ctes, selects


def _capped_daily(
    d: Dialect, t: TimeKeys, i: int, head: str, y: str, x: str, columns: Sequence[str],
) -> tuple[list[tuple[str, str]], list[str]]:
    """A capped metric's daily increases: each user's running total per day clipped to the pooled bounds of
    the whole analysis (``m<i>_cap``), and its day-to-day increase; every user starts at the clipped empty
    total (counted on the day of first exposure)."""
    day = t.day("ts_key")
    ctes = [(f"m{i}_day", f"SELECT user_id, MIN(variant) AS variant, {day} AS day, {y} AS y, {x} AS x"
                          f" FROM m{i}_events WHERE post = 1 GROUP BY user_id, {day}")]
    running = ", ".join(
        f"SUM({d.double(c)}) OVER (PARTITION BY user_id ORDER BY day ROWS UNBOUNDED PRECEDING) AS {c}"
        for c in ("y", "x")
    )
    ctes.append((f"m{i}_run", f"SELECT user_id, variant, day, {running} FROM m{i}_day"))
    values, base = [], []
    for c in ("y", "x"):
        expr, e0 = (clipped(f"r.{c}", "b", c), clipped("0", "b", c)) if c in columns else (f"r.{c}", "0")
        values.append(f"{expr} AS {c}")
        base.append(d.double(e0))
    ctes.append((f"m{i}_clip", f"SELECT r.user_id, r.variant, r.day, {', '.join(values)}"
                               f" FROM m{i}_run r CROSS JOIN m{i}_cap b"))
    inc = ", ".join(
        f"{c} - COALESCE(LAG({c}) OVER (PARTITION BY user_id ORDER BY day), {b0}) AS d{c}"
        for c, b0 in zip(("y", "x"), base, strict=True)
    )
    ctes.append((f"m{i}_inc", f"SELECT c.variant, c.day, {inc} FROM m{i}_clip c CROSS JOIN m{i}_cap b"))
    first_day = t.day("p.first_key")
    selects = [
        head + f"variant, day, SUM({d.double('dy')}) AS sum_y, SUM({d.double('dx')}) AS sum_x\n"
        f"  FROM m{i}_inc GROUP BY variant, day",
        head + f"p.variant, {first_day} AS day, SUM({base[0]}) AS sum_y, SUM({base[1]}) AS sum_x\n"
        f"  FROM population p CROSS JOIN m{i}_cap b GROUP BY p.variant, {first_day}",
    ]
    return ctes, selects
