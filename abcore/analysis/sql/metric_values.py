"""Per-metric values: the metric's events in its window after exposure, then one value per user.

Per metric ``i``: ``m<i>_events`` marks the metric's rows of ``events_in`` (or, on SQLite, of its own
index range) at or after first exposure + ``delay_hours`` and before + ``window_hours`` as ``post``
(and, for CUPED, those in the lookback before first exposure as ``pre``); ``m<i>_eu`` is the per-user
value ``y`` (and covariate or denominator ``x``) of every user with events of the metric, and
``m<i>_user`` every population user's (0 without events). Conventions: an event's value is ``value``,
or 1 when it is NULL (a bare conversion) for ``mean``/``ratio``; ``count`` counts events; ``binomial``
is 1 when a user has any qualifying event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.population import analysed_names, events_in
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.time_keys import TimeKeys, bound_column, hours_us

__all__ = [
    "MetricContext",
    "metric_events",
    "metric_refs",
    "metric_rows",
    "per_user_value",
    "population_values_cte",
    "event_count",
    "post_pre",
    "user_values_cte",
    "users_all_cte",
]


def metric_refs(d: Dialect, metrics: Sequence[Any]) -> dict[str, str]:
    """Per analysed metric name the SQL value its events have in the ``metric_name`` column of the metric
    CTEs: the name, or its index in :func:`abcore.analysis.sql.population.analysed_names` on a narrow shared scan."""
    names = analysed_names(metrics)
    if d.narrow_shared_scan:
        return {n: literal(i, d) for i, n in enumerate(names)}
    return {n: literal(n, d) for n in names}


def metric_events(
    d: Dialect, src: QuerySource, refs: Sequence[str], m: Any, start: datetime | None, offsets: Sequence[int],
    cuped_offset: int | None = None, rows: str = "events_in", segment: str = "segment",
) -> str:
    """``m<i>_events``: the metric's rows of ``events_in`` (``metric_name`` one of ``refs``, SQL values of
    :func:`metric_refs`); ``post`` = 1 inside its window after exposure (and at or after ``start``); with
    ``cuped_offset`` ``pre`` = 1 in the lookback before first exposure. ``segment`` is the SQL of its column."""
    post, pre_cond = post_pre(d, src, m, start, offsets, cuped_offset)
    pre = "" if pre_cond is None else f", CASE WHEN {pre_cond} THEN 1 ELSE 0 END AS pre"
    where = "" if rows != "events_in" else f" WHERE metric_name IN ({', '.join(refs)})"
    return (
        f"SELECT user_id, variant, {segment}, metric_name, value, ts_key,"
        f" CASE WHEN {post} THEN 1 ELSE 0 END AS post{pre}\n"
        f"  FROM {rows}{where}"
    )


def post_pre(
    d: Dialect, src: QuerySource, m: Any, start: datetime | None, offsets: Sequence[int], cuped_offset: int | None,
) -> tuple[str, str | None]:
    """The conditions (on ``ts_key`` and the population's bound keys) of an event of ``m`` counting after
    exposure (``post``: inside its window, at or after ``start``) and, with ``cuped_offset``, before it
    (``pre``: in the CUPED lookback)."""
    t = TimeKeys(d, src)
    delay = hours_us(getattr(m, "delay_hours", 0) or 0)
    window = getattr(m, "window_hours", None)
    post = [f"ts_key >= {bound_column(delay, offsets)}"]
    if window is not None:
        post.append(f"ts_key < {bound_column(delay + hours_us(window), offsets)}")
    if start is not None:
        post.append(f"ts_key >= {t.literal(start)}")
    pre = None
    if cuped_offset is not None:
        pre = f"ts_key < first_key AND ts_key >= {bound_column(cuped_offset, offsets)}"
    return " AND ".join(post), pre


def metric_rows(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], refs: dict[str, str], m: Any,
    start: datetime | None, end: datetime | None, offsets: Sequence[int], cuped_offset: int | None = None,
    segmented: bool = True,
) -> str:
    """``m<i>_events`` from the shared ``events_in`` scan, or on SQLite (``Dialect.shared_scan`` False) from
    its own index range of the event table (each metric's events stream in user order, no sort)."""
    codes = [refs[n] for n in names]
    if d.shared_scan:
        segment = "segment" if segmented or not d.narrow_shared_scan else f"{literal('(all)', d)} AS segment"
        return metric_events(d, src, codes, m, start, offsets, cuped_offset, segment=segment)
    inner = events_in(d, src, experiment, names, end, offsets)
    return metric_events(d, src, codes, m, start, offsets, cuped_offset, rows=f"(\n  {inner}\n  ) s")


def _clip_rank(expr: str) -> str:
    """``expr`` clipped to the ranks ``[1, cnt]``."""
    return f"(CASE WHEN {expr} < 1 THEN 1 WHEN {expr} > cnt THEN cnt ELSE {expr} END)"


def per_user_value(d: Dialect, kind: str, ref: str | None, cond: str) -> str:
    """The SQL of one per-user value over rows of ``m<i>_events`` that satisfy ``cond`` (and, with ``ref``,
    whose ``metric_name`` is that value of :func:`metric_refs`)."""
    match = f"{cond} AND metric_name = {ref}" if ref is not None else cond
    if kind == "binomial":
        return f"MAX(CASE WHEN {match} THEN 1 ELSE 0 END)"
    if kind == "count":
        return f"SUM(CASE WHEN {match} THEN 1 ELSE 0 END)"
    return f"SUM(CASE WHEN {match} THEN {d.double('COALESCE(value, 1)')} ELSE {d.double('0')} END)"


def event_count(d: Dialect, cond: str) -> str:
    """The number of rows of ``m<i>_events`` that satisfy ``cond``, as a double (an ``event_mean``'s ``x``)."""
    return f"SUM(CASE WHEN {cond} THEN {d.double('1')} ELSE {d.double('0')} END)"


@dataclass(frozen=True)
class MetricContext:
    """What every per-metric CTE of one query shares: the dialect and source, the experiment and
    ``[start, end)``, whether it is segmented, the window bound ``offsets`` of the population, the
    metric name values (:func:`metric_refs`) and the CUPED lookback in microseconds."""

    d: Dialect
    src: QuerySource
    experiment: Any
    start: datetime | None
    end: datetime | None
    segmented: bool
    offsets: Sequence[int]
    refs: dict[str, str]
    lookback: int

    def events_cte(self, i: int, m: Any, with_pre: bool) -> tuple[str, str]:
        """``m<i>_events`` of metric ``m`` (with the CUPED ``pre`` flag when ``with_pre``)."""
        names = [m.numerator, m.denominator] if m.kind == "ratio" else [m.name]
        return (f"m{i}_events", metric_rows(self.d, self.src, self.experiment, names, self.refs, m, self.start,
                                            self.end, self.offsets, -self.lookback if with_pre else None,
                                            self.segmented))


def _y_x(d: Dialect, refs: dict[str, str], m: Any, with_pre: bool) -> tuple[str, str]:
    """The per-user value ``y`` and ``x`` (ratio denominator, CUPED covariate, else 0) over ``m<i>_events``."""
    if m.kind == "ratio":
        return (per_user_value(d, "mean", refs[m.numerator], "post = 1"),
                per_user_value(d, "mean", refs[m.denominator], "post = 1"))
    if m.kind == "event_mean":  # the user's sum of values over the user's number of events
        return per_user_value(d, "mean", None, "post = 1"), event_count(d, "post = 1")
    y = per_user_value(d, m.kind, None, "post = 1")
    return y, per_user_value(d, m.kind, None, "pre = 1") if with_pre else d.double("0")


def user_values_cte(
    ctx: MetricContext, i: int, m: Any, with_pre: bool, one_pass: bool, user_cols: list[str],
) -> tuple[str, str]:
    """``m<i>_eu``: per user with events of ``m`` the value ``y``, ``x`` and (binomial) ``first_day``, the day
    of the first qualifying event (for the daily series in the same pass). With ``one_pass``
    (:attr:`Dialect.one_user_pass`) the values are columns ``y<i>``, ``x<i>`` (``fd<i>``) appended to
    ``user_cols`` of the one per-user pass ``users_all`` (:func:`users_all_cte`), and ``m<i>_eu`` reads them."""
    d, src = ctx.d, ctx.src
    kind = m.kind
    if one_pass:
        return _one_pass_values(ctx, i, m, with_pre, user_cols)
    y, x = _y_x(d, ctx.refs, m, with_pre)
    first = f", MIN(CASE WHEN post = 1 THEN {TimeKeys(d, src).day('ts_key')} END) AS first_day" if kind == "binomial" else ""
    if d.group_user_keys:  # the same rows: one variant and segment per user (Dialect.group_user_keys)
        return (f"m{i}_eu", f"SELECT user_id, variant, segment, {y} AS y, {x} AS x{first}"
                            f" FROM m{i}_events GROUP BY user_id, variant, segment")
    return (f"m{i}_eu", f"SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, {y} AS y,"
                        f" {x} AS x{first} FROM m{i}_events GROUP BY user_id")


def _one_pass_values(ctx: MetricContext, i: int, m: Any, with_pre: bool, user_cols: list[str]) -> tuple[str, str]:
    """``m<i>_eu`` over ``users_all``: the values of :func:`user_values_cte` with ``m<i>_events``' post / pre
    conditions written out; a user without events of this metric gets y = x = 0 and no first_day (adding
    nothing to any sum)."""
    d, src, refs = ctx.d, ctx.src, ctx.refs
    kind = m.kind
    names = [m.numerator, m.denominator] if kind == "ratio" else [m.name]
    post, pre_cond = post_pre(d, src, m, ctx.start, ctx.offsets, -ctx.lookback if with_pre else None)
    match = f"metric_name IN ({', '.join(refs[n] for n in names)})"
    if kind == "ratio":
        yi = per_user_value(d, "mean", refs[m.numerator], post)
        xi = per_user_value(d, "mean", refs[m.denominator], post)
    elif kind == "event_mean":
        yi = per_user_value(d, "mean", None, f"{match} AND {post}")
        xi = event_count(d, f"{match} AND {post}")
    else:
        yi = per_user_value(d, kind, None, f"{match} AND {post}")
        xi = per_user_value(d, kind, None, f"{match} AND {pre_cond}") if with_pre else d.double("0")
    user_cols += [f"{yi} AS y{i}", f"{xi} AS x{i}"]
    fd = ""
    if kind == "binomial":
        user_cols.append(f"MIN(CASE WHEN {match} AND {post} THEN {TimeKeys(d, src).day('ts_key')} END) AS fd{i}")
        fd = f", fd{i} AS first_day"
    return (f"m{i}_eu", f"SELECT user_id, variant, segment, y{i} AS y, x{i} AS x{fd} FROM users_all")


def users_all_cte(d: Dialect, segment: str | None, user_cols: Sequence[str]) -> tuple[str, str]:
    """``users_all``: every metric's per-user values in one GROUP BY over ``events_in`` (:func:`user_values_cte`)."""
    # Unsegmented, every user's segment is the constant '(all)': not a group key (one key less to hash).
    seg, keys = ("segment", ", segment") if segment is not None else (f"{literal('(all)', d)} AS segment", "")
    return ("users_all", f"SELECT user_id, variant, {seg}, {', '.join(user_cols)}\n"
                         f"  FROM events_in GROUP BY user_id, variant{keys}")


def population_values_cte(i: int) -> tuple[str, str]:
    """``m<i>_user``: every population user's value (0 without events), for the pooled caps and the clip."""
    return (f"m{i}_user", f"SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y,"
                          f" COALESCE(e.x, 0) AS x\n  FROM population p LEFT JOIN m{i}_eu e"
                          f" ON e.user_id = p.user_id")
