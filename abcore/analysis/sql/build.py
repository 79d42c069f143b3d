"""One analysis query per experiment, built from metric definitions, rendered per dialect.

The query produces per-variant (and per-segment) sufficient statistics for every metric in
one statement, with CTEs in a fixed order (as GrowthBook's warehouse SQL does):

1. ``exposures``  - each user's first exposure (store exposure events, or an exposure table);
2. ``population`` - assigned users with that first exposure, their variant and segment;
3. ``events_in`` - the events of every analysed metric joined to the population (one scan), then per
   metric ``m<i>_events``, marking events at or after first exposure + ``delay_hours`` and before
   + ``window_hours`` as ``post``;
4. per metric ``m<i>_user`` - the per-user value (every population user; 0 without events) and the
   CUPED covariate (the same metric in the ``cuped_lookback_hours`` before first exposure);
5. per metric ``m<i>_cap`` - the pooled capping bound (a percentile cap is the nearest-rank
   percentile of the per-user values of all variants together), then ``m<i>_capped``;
6. the final ``UNION ALL`` of ``GROUP BY variant[, segment]`` into n, sums, sums of squares and
   cross-products, plus exact quantile inputs (``q_n`` values and the nearest-rank value).

On DuckDB ``events_in`` is narrow (integer user key, metric code; :attr:`Dialect.narrow_shared_scan`), and
over the store's event table one ``event_scan`` before ``exposures`` feeds both the exposures and ``events_in``.

Conventions: an event's value is ``value``, or 1 when it is NULL (a bare conversion) for
``mean``/``ratio``; ``count`` counts events; ``binomial`` is 1 when a user has any qualifying
event; ``quantile`` is over event values, NULL values ignored, nearest rank ``ceil(q N)``
(numpy ``method="inverted_cdf"``). Only the dialect-specific pieces come from
:mod:`abcore.analysis.sql.dialects`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from abcore.analysis.sql.dialects import Dialect, get_dialect
from abcore.metrics import validate_metric
from abcore.stats._common import norm_ppf

__all__ = [
    "QuerySource",
    "ANALYSIS_COLUMNS",
    "AnalysisStatements",
    "build_analysis_query",
    "build_analysis_statements",
    "build_daily_metric_query",
    "build_daily_query",
    "build_kind_probe_query",
    "build_stats_query",
    "literal",
]

US_PER_HOUR = 3_600_000_000


@dataclass(frozen=True)
class QuerySource:
    """Where the events and exposures are, and which columns mean what.

    ``events`` / ``exposures`` are relation references in the target dialect (a table name, a
    qualified ``store.ab_experiment_results``, ``read_parquet('...')``, a Spark view). With
    ``exposures=None`` the population is the store's: ``assignments`` (user, experiment,
    variant, JSON attributes) joined to the first event of type ``exposure_type``.
    """

    events: str = "ab_experiment_results"
    user_id: str = "user_id"
    ts: str = "ts"
    ts_format: str = "timestamp"
    event_type: str | None = "event_type"
    metric_name: str = "metric_name"
    value: str = "value"
    experiment: str | None = "experiment_id"
    conversion_type: str = "conversion"
    exposure_type: str = "exposure"
    # Store population.
    assignments: str | None = "ab_user_assignments"
    assignment_variant: str = "variant_id"
    assignment_experiment: str = "experiment_id"
    assignment_attributes: str | None = "attributes"
    # Exposure-table population (overrides the store's when set).
    exposures: str | None = None
    exposure_user_id: str = "user_id"
    exposure_ts: str = "ts"
    exposure_ts_format: str = "timestamp"
    exposure_variant: str = "variant"
    exposure_experiment: str | None = "experiment"
    segment_columns: tuple[str, ...] = field(default_factory=tuple)


def literal(value: Any) -> str:
    """A SQL literal for a number, string or ``None`` (strings escaped, no binding needed)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite literal")
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def _epoch_us(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _hours_us(hours: float) -> int:
    return int(round(hours * US_PER_HOUR))


@dataclass(frozen=True)
class _Time:
    """How timestamps are compared: per-row keys (text on SQLite, see ``Dialect.text_keys``), per-user bounds."""

    d: Dialect
    src: QuerySource

    @property
    def text(self) -> bool:
        s = self.src
        return self.d.text_keys(s.ts_format) and (s.exposures is None or self.d.text_keys(s.exposure_ts_format))

    @property
    def fmt(self) -> str:
        return "timestamp" if self.text else "epoch_us"

    def event_key(self, expr: str) -> str:
        return expr if self.text else self.d.epoch_us(expr, self.src.ts_format)

    def exposure_key(self, expr: str) -> str:
        return expr if self.text else self.d.epoch_us(expr, self.src.exposure_ts_format)

    def to_us(self, key: str) -> str:
        return self.d.key_to_us(key, self.fmt)

    def from_us(self, expr: str) -> str:
        return self.d.us_to_key(expr, self.fmt)

    def literal(self, value: datetime) -> str:
        return self.d.key_literal(_epoch_us(value), self.fmt)

    def day(self, key: str) -> str:
        return self.d.key_day(key, self.fmt)

    def day_out(self, day: str) -> str:
        return self.d.day_out(day, self.fmt)


def _bound_offsets(metrics: Sequence[Any], cuped: bool, lookback_us: int) -> list[int]:
    """The offsets (microseconds from first exposure) of every metric window bound, except 0."""
    out: list[int] = []
    for m in metrics:
        delay = _hours_us(getattr(m, "delay_hours", 0) or 0)
        window = getattr(m, "window_hours", None)
        for off in [delay] + ([delay + _hours_us(window)] if window is not None else []):
            if off and off not in out:
                out.append(off)
    if cuped and -lookback_us not in out:
        out.append(-lookback_us)
    return out


def _bound(offset: int, offsets: Sequence[int]) -> str:
    """The population column holding the key of first exposure + ``offset``."""
    return "first_key" if offset == 0 else f"b{offsets.index(offset)}"


def _population_ctes(
    d: Dialect, src: QuerySource, experiment: Any, start: datetime | None, end: datetime | None,
    segment: str | None, offsets: Sequence[int] = (), user_key: bool = False,
) -> list[tuple[str, str]]:
    """``exposures`` (first exposure key per user) and ``population`` (user, variant, segment, first
    exposure as key and as epoch microseconds, and the keys of the bounds at ``offsets``). With
    ``user_key`` the population's ``user_id`` is an integer surrogate and the source id is
    ``source_user_id`` (:attr:`Dialect.narrow_shared_scan`)."""
    q = d.quote
    surrogate = "ROW_NUMBER() OVER () AS user_id, " if user_key else ""
    source_id = "source_user_id" if user_key else "user_id"
    t = _Time(d, src)
    ts_window = []
    first_us = t.to_us("e.first_key")
    bounds = "".join(f", {t.from_us(f'{first_us} + {off}')} AS b{j}" for j, off in enumerate(offsets))
    if src.exposures is None:
        key = t.event_key(q(src.ts))
        where = [f"{q(src.experiment)} = {literal(experiment)}"] if src.experiment else []
        if src.event_type:
            where.append(f"{q(src.event_type)} = {literal(src.exposure_type)}")
        if start is not None:
            ts_window.append(f"{key} >= {t.literal(start)}")
        if end is not None:
            ts_window.append(f"{key} < {t.literal(end)}")
        # MIN of the key, converted once per user (the conversion is monotonic).
        exposures = (
            f"SELECT {q(src.user_id)} AS user_id, MIN({key}) AS first_key\n  FROM {src.events}\n"
            f"  WHERE {' AND '.join(where + ts_window) or '1 = 1'}\n  GROUP BY {q(src.user_id)}"
        )
        if segment is None:
            seg = literal("(all)")
        elif src.assignment_attributes:
            seg = f"COALESCE({d.json_text('a.' + q(src.assignment_attributes), segment)}, '(none)')"
        else:
            raise ValueError("this source has no assignment attributes to segment by")
        population = (
            f"SELECT {surrogate}a.{q(src.user_id)} AS {source_id}, a.{q(src.assignment_variant)} AS variant, e.first_key,"
            f" {first_us} AS first_us, {seg} AS segment{bounds}\n  FROM {src.assignments} a\n"
            f"  JOIN exposures e ON e.user_id = a.{q(src.user_id)}\n"
            f"  WHERE a.{q(src.assignment_experiment)} = {literal(experiment)}"
        )
        return [("exposures", exposures), ("population", population)]
    key = t.exposure_key(q(src.exposure_ts))
    where = [f"{q(src.exposure_experiment)} = {literal(experiment)}"] if src.exposure_experiment else []
    if start is not None:
        where.append(f"{key} >= {t.literal(start)}")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    if segment is not None and segment not in src.segment_columns:
        raise ValueError(f"segment {segment!r} is not a declared segment column of the exposure table")
    seg = literal("(all)") if segment is None else f"COALESCE(MIN({d.text(q(segment))}), '(none)')"
    # A user exposed to more than one variant is left out (their outcome cannot be attributed). MIN = MAX is
    # COUNT(DISTINCT variant) = 1 (both ignore NULLs; all-NULL gives NULL, left out too) without the distinct
    # set per user that DuckDB keeps for COUNT(DISTINCT): 20 s instead of 38 s over 60M exposures.
    variant = q(src.exposure_variant)
    exposures = (
        f"SELECT {q(src.exposure_user_id)} AS user_id, MIN({variant}) AS variant,"
        f" MIN({key}) AS first_key, {seg} AS segment\n  FROM {src.exposures}\n"
        f"  WHERE {' AND '.join(where) or '1 = 1'}\n  GROUP BY {q(src.exposure_user_id)}\n"
        f"  HAVING MIN({variant}) = MAX({variant})"
    )
    own_id = f"{surrogate}user_id AS source_user_id" if user_key else "user_id"
    population = f"SELECT {own_id}, variant, first_key, {first_us} AS first_us, segment{bounds} FROM exposures e"
    return [("exposures", exposures), ("population", population)]


def _events_in(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], end: datetime | None,
    offsets: Sequence[int] = (), segmented: bool = True, from_scan: bool = False,
) -> str:
    """``events_in``: every event of the analysed metric names joined once to the population (one scan),
    with the event's timestamp key and the user's bound keys. With :attr:`Dialect.narrow_shared_scan`
    ``user_id`` is the population's surrogate key, ``metric_name`` the index in ``names`` and an
    unsegmented scan (``segmented`` False) has no ``segment`` (see :func:`_metric_refs`). With ``from_scan`` the
    events come from ``event_scan`` (:func:`_one_event_scan`), already filtered and coded."""
    q = d.quote
    t = _Time(d, src)
    key = t.event_key("ev." + q(src.ts))
    where = [f"ev.{q(src.metric_name)} IN ({', '.join(literal(n) for n in names)})"]
    if src.experiment and src.exposures is None:
        where.insert(0, f"ev.{q(src.experiment)} = {literal(experiment)}")
    if src.event_type:
        where.insert(1 if len(where) > 1 else 0, f"ev.{q(src.event_type)} = {literal(src.conversion_type)}")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    bounds = "".join(f", p.b{j}" for j in range(len(offsets)))
    if from_scan:
        segment = ", p.segment" if segmented else ""
        return (
            f"SELECT p.user_id AS user_id, p.variant{segment}, ev.code AS metric_name, ev.value, ev.ts_key,"
            f" p.first_key{bounds}\n  FROM population p\n  JOIN event_scan ev ON ev.user_id = p.source_user_id\n"
            f"  WHERE ev.code >= 0"
        )
    if d.name == "sqlite":
        # Events first, in index order (metric, user): each user is one lookup in the population, and the
        # per-user GROUP BY downstream streams without sorting (CROSS JOIN keeps the written order in SQLite).
        join = f"{src.events} ev\n  CROSS JOIN population p ON p.user_id = ev.{q(src.user_id)}"
    elif d.narrow_shared_scan:
        join = f"population p\n  JOIN {src.events} ev ON ev.{q(src.user_id)} = p.source_user_id"
    else:
        join = f"population p\n  JOIN {src.events} ev ON ev.{q(src.user_id)} = p.user_id"
    user, segment, metric = f"ev.{q(src.user_id)}", ", p.segment", f"ev.{q(src.metric_name)}"
    if d.narrow_shared_scan:
        user, segment = "p.user_id", ", p.segment" if segmented else ""
        metric = f"CAST({_metric_code(metric, names)} AS SMALLINT)"
    return (
        f"SELECT {user} AS user_id, p.variant{segment}, {metric} AS metric_name, ev.{q(src.value)} AS value,"
        f" {key} AS ts_key, p.first_key{bounds}\n  FROM {join}\n  WHERE {' AND '.join(where)}"
    )


def _one_event_scan(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], start: datetime | None,
    end: datetime | None,
) -> tuple[str, str]:
    """``event_scan`` and the ``exposures`` read from it: ONE scan of the event table for the store population's
    exposures and the analysed metrics' events (:attr:`Dialect.narrow_shared_scan`; the event table has an
    event type column), instead of one scan for each.

    ``event_scan`` keeps each row's user, timestamp key, value and ``code``: -1 for an exposure, else the metric's
    index in ``names`` (so 8-byte and 2-byte columns, not strings, are materialised). ``exposures`` is every
    user's first exposure key at or after ``start``, as :func:`_population_ctes` computes it from the table.
    Over the 10M-event SQLite store through ``sqlite_scanner`` the statement took 5.0-6.0 s instead of 6.7-8.2 s.
    """
    q = d.quote
    t = _Time(d, src)
    key = t.event_key(q(src.ts))
    is_exposure = f"{q(src.event_type)} = {literal(src.exposure_type)}"
    where = [f"{q(src.experiment)} = {literal(experiment)}"] if src.experiment else []
    where.append(f"({is_exposure} OR ({q(src.event_type)} = {literal(src.conversion_type)}"
                 f" AND {q(src.metric_name)} IN ({', '.join(literal(n) for n in names)})))")
    if end is not None:
        where.append(f"{key} < {t.literal(end)}")
    scan = (
        f"SELECT {q(src.user_id)} AS user_id, {key} AS ts_key, {q(src.value)} AS value,"
        f" CAST(CASE WHEN {is_exposure} THEN -1 ELSE {_metric_code(q(src.metric_name), names)} END AS SMALLINT) AS code\n"
        f"  FROM {src.events}\n  WHERE {' AND '.join(where)}"
    )
    since = f" AND ts_key >= {t.literal(start)}" if start is not None else ""
    exposures = f"SELECT user_id, MIN(ts_key) AS first_key FROM event_scan WHERE code = -1{since} GROUP BY user_id"
    return scan, exposures


def _metric_code(column: str, names: Sequence[str]) -> str:
    """``column`` (a metric name) as its index in ``names`` (NULL for another name)."""
    return f"CASE {column} " + " ".join(f"WHEN {literal(n)} THEN {i}" for i, n in enumerate(names)) + " END"


def _analysed_names(metrics: Sequence[Any]) -> list[str]:
    """The event metric names an analysis of ``metrics`` reads, in first-use order (ratio: numerator, denominator)."""
    names: list[str] = []
    for m in metrics:
        for n in [m.numerator, m.denominator] if m.kind == "ratio" else [m.name]:
            if n not in names:
                names.append(n)
    return names


def _metric_refs(d: Dialect, metrics: Sequence[Any]) -> dict[str, str]:
    """Per analysed metric name the SQL value its events have in the ``metric_name`` column of the metric
    CTEs: the name, or its index in :func:`_analysed_names` on a narrow shared scan."""
    names = _analysed_names(metrics)
    if d.narrow_shared_scan:
        return {n: literal(i) for i, n in enumerate(names)}
    return {n: literal(n) for n in names}


def _metric_events(
    d: Dialect, src: QuerySource, refs: Sequence[str], m: Any, start: datetime | None, offsets: Sequence[int],
    cuped_offset: int | None = None, rows: str = "events_in", segment: str = "segment",
) -> str:
    """``m<i>_events``: the metric's rows of ``events_in`` (``metric_name`` one of ``refs``, SQL values of
    :func:`_metric_refs`); ``post`` = 1 inside its window after exposure (and at or after ``start``); with
    ``cuped_offset`` ``pre`` = 1 in the lookback before first exposure. ``segment`` is the SQL of its column."""
    post, pre_cond = _post_pre(d, src, m, start, offsets, cuped_offset)
    pre = "" if pre_cond is None else f", CASE WHEN {pre_cond} THEN 1 ELSE 0 END AS pre"
    where = "" if rows != "events_in" else f" WHERE metric_name IN ({', '.join(refs)})"
    return (
        f"SELECT user_id, variant, {segment}, metric_name, value, ts_key,"
        f" CASE WHEN {post} THEN 1 ELSE 0 END AS post{pre}\n"
        f"  FROM {rows}{where}"
    )


def _post_pre(
    d: Dialect, src: QuerySource, m: Any, start: datetime | None, offsets: Sequence[int], cuped_offset: int | None,
) -> tuple[str, str | None]:
    """The conditions (on ``ts_key`` and the population's bound keys) of an event of ``m`` counting after
    exposure (``post``: inside its window, at or after ``start``) and, with ``cuped_offset``, before it
    (``pre``: in the CUPED lookback)."""
    t = _Time(d, src)
    delay = _hours_us(getattr(m, "delay_hours", 0) or 0)
    window = getattr(m, "window_hours", None)
    post = [f"ts_key >= {_bound(delay, offsets)}"]
    if window is not None:
        post.append(f"ts_key < {_bound(delay + _hours_us(window), offsets)}")
    if start is not None:
        post.append(f"ts_key >= {t.literal(start)}")
    pre = None
    if cuped_offset is not None:
        pre = f"ts_key < first_key AND ts_key >= {_bound(cuped_offset, offsets)}"
    return " AND ".join(post), pre


def _metric_rows(
    d: Dialect, src: QuerySource, experiment: Any, names: Sequence[str], refs: dict[str, str], m: Any,
    start: datetime | None, end: datetime | None, offsets: Sequence[int], cuped_offset: int | None = None,
    segmented: bool = True,
) -> str:
    """``m<i>_events`` from the shared ``events_in`` scan, or on SQLite (``Dialect.shared_scan`` False) from
    its own index range of the event table (each metric's events stream in user order, no sort)."""
    codes = [refs[n] for n in names]
    if d.shared_scan:
        segment = "segment" if segmented or not d.narrow_shared_scan else f"{literal('(all)')} AS segment"
        return _metric_events(d, src, codes, m, start, offsets, cuped_offset, segment=segment)
    inner = _events_in(d, src, experiment, names, end, offsets)
    return _metric_events(d, src, codes, m, start, offsets, cuped_offset, rows=f"(\n  {inner}\n  ) s")


def _clip_rank(expr: str) -> str:
    """``expr`` clipped to the ranks ``[1, cnt]``."""
    return f"(CASE WHEN {expr} < 1 THEN 1 WHEN {expr} > cnt THEN cnt ELSE {expr} END)"


def _per_user_value(d: Dialect, kind: str, ref: str | None, cond: str) -> str:
    """The SQL of one per-user value over rows of ``m<i>_events`` that satisfy ``cond`` (and, with ``ref``,
    whose ``metric_name`` is that value of :func:`_metric_refs`)."""
    match = f"{cond} AND metric_name = {ref}" if ref is not None else cond
    if kind == "binomial":
        return f"MAX(CASE WHEN {match} THEN 1 ELSE 0 END)"
    if kind == "count":
        return f"SUM(CASE WHEN {match} THEN 1 ELSE 0 END)"
    return f"SUM(CASE WHEN {match} THEN {d.double('COALESCE(value, 1)')} ELSE {d.double('0')} END)"


def _cap_ctes(d: Dialect, i: int, m: Any, columns: Sequence[str]) -> list[tuple[str, str]]:
    """``m<i>_cap`` (bounds per column) and ``m<i>_capped`` (per-user values clipped to them)."""
    cap = getattr(m, "cap", None)
    if cap is None:
        return [(f"m{i}_capped", f"SELECT * FROM m{i}_user")]
    up, lo = getattr(m, "cap_upper", None), getattr(m, "cap_lower", None)
    bounds: list[str] = []
    if cap == "absolute":
        for c in columns:
            bounds.append(f"{d.double(literal(None if up is None else float(up)))} AS {c}_hi")
            bounds.append(f"{d.double(literal(None if lo is None else float(lo)))} AS {c}_lo")
        cap_sql = "SELECT " + ", ".join(bounds)
    else:
        # Nearest-rank percentile of the per-user values pooled over variants: value at rank ceil(p N).
        parts = []
        for c in columns:
            ranked = (
                f"SELECT {c} AS v, ROW_NUMBER() OVER (ORDER BY {c}) AS rn, COUNT(*) OVER () AS n FROM m{i}_user"
            )
            for label, p in (("hi", up), ("lo", lo)):
                if p is None:
                    parts.append(f"(SELECT {d.double('NULL')}) AS {c}_{label}")
                else:
                    parts.append(
                        f"(SELECT MIN(v) FROM ({ranked}) r WHERE rn >= {d.ceil(f'{float(p)!r} * n')}) AS {c}_{label}"
                    )
        cap_sql = "SELECT " + ",\n    ".join(parts)
    clipped = []
    for c in columns:
        expr = f"u.{c}"
        expr = f"CASE WHEN c.{c}_hi IS NOT NULL AND {expr} > c.{c}_hi THEN c.{c}_hi ELSE {expr} END"
        expr = f"CASE WHEN c.{c}_lo IS NOT NULL AND u.{c} < c.{c}_lo THEN c.{c}_lo ELSE {expr} END"
        clipped.append(f"{expr} AS {c}")
    others = [c for c in ("user_id", "variant", "segment", "x") if c not in columns]
    capped = f"SELECT {', '.join('u.' + o for o in others)}, {', '.join(clipped)}\n  FROM m{i}_user u CROSS JOIN m{i}_cap c"
    return [(f"m{i}_cap", cap_sql), (f"m{i}_capped", capped)]


_OUT = (
    "metric", "variant", "segment", "n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy", "q_n", "q_value",
    "q_lower", "q_upper",
)


def build_stats_query(
    metrics: Sequence[Any],
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    segment: str | None = None,
    cuped: bool = False,
    cuped_lookback_hours: float = 14 * 24,
    quantile_alpha: float = 0.05,
) -> str:
    """The single SQL statement of per-variant sufficient statistics for ``metrics``.

    One row per (metric, variant, segment) with columns ``metric, variant, segment, n, sum_y,
    sum_y2, sum_x, sum_x2, sum_xy, q_n, q_value``: for ``ratio`` y is the numerator and x the
    denominator; with ``cuped`` x is the pre-exposure covariate of binomial/count/mean metrics;
    for ``quantile`` ``q_n`` is the number of non-NULL event values and ``q_value`` the exact
    nearest-rank quantile (n then counts users with at least one value), ``q_lower`` / ``q_upper``
    the order statistics at the ranks ``floor / ceil(N q -/+ z sqrt(N q (1 - q)))`` (clipped to
    ``[1, N]``, ``z`` the two-sided normal quantile of ``quantile_alpha``; the interval of
    :func:`abcore.stats.quantile_ranks`, Deng, Knoblich & Lu 2018). ``segment`` groups by an
    assignment attribute (``'(none)'`` when missing; ``'(all)'`` without a segment).
    ``ValueError`` lists every problem of an invalid definition.
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    ctes, selects = _stats_parts(d, src, metrics, experiment, start, end, segment, cuped, cuped_lookback_hours,
                                 quantile_alpha)
    return _assemble(d, ctes, selects, _OUT, "metric, variant, segment")


def _assemble(
    d: Dialect, ctes: Sequence[tuple[str, str]], selects: Sequence[str], columns: Sequence[str], order: str,
    inline: Sequence[str] = (),
) -> str:
    """``WITH ... SELECT columns FROM (selects UNION ALL) ORDER BY order``.

    On SQLite the per-metric event CTEs (``m<i>_events``) and the CTEs named in ``inline`` are
    ``NOT MATERIALIZED``: each consumer (per-user values, daily sums, percentiles) streams the
    metric's index range in user order instead of reading and sorting a materialized copy (and a
    population read from a keyed table is looked up by that key). On DuckDB the ``m<i>_events``
    are ``NOT MATERIALIZED`` too (:attr:`Dialect.inline_metric_events`): each consumer filters the
    materialised ``events_in`` instead of a second copy of the metric's rows.
    """
    def hint(name: str) -> str:
        if d.inline_metric_events and name.endswith("_events"):
            return "NOT MATERIALIZED "
        return "NOT MATERIALIZED " if d.name == "sqlite" and name in inline else ""

    with_sql = ",\n".join(f"{name} AS {hint(name)}(\n  {body}\n)" for name, body in ctes)
    body = "\nUNION ALL\n".join(selects)
    return f"WITH {with_sql}\nSELECT {', '.join(columns)} FROM (\n{body}\n) s\nORDER BY {order}"


def _stats_parts(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None, segment: str | None, cuped: bool, cuped_lookback_hours: float, quantile_alpha: float,
) -> tuple[list[tuple[str, str]], list[str]]:
    """The CTEs (population, per-metric events ``m<i>_events``, per-user values, caps) and the per-metric
    SELECTs (columns :data:`_OUT`) of :func:`build_stats_query`."""
    if not metrics:
        raise ValueError("no metrics to analyse")
    for m in metrics:
        problems = validate_metric(m)
        if problems:
            raise ValueError(f"invalid metric {getattr(m, 'name', '?')!r}: " + "; ".join(problems))
    if not 0 < quantile_alpha < 1:
        raise ValueError(f"quantile_alpha must be in (0, 1); got {quantile_alpha}")
    z = -norm_ppf(quantile_alpha / 2)  # the z of abcore.stats.quantile_ranks (same float)
    lookback = _hours_us(cuped_lookback_hours)
    offsets = _bound_offsets(metrics, cuped, lookback)
    ctes = _population_ctes(d, src, experiment, start, end, segment, offsets, d.narrow_shared_scan)
    selects: list[str] = []
    pre = "pre = 1"
    zero = d.double("0")
    null = d.double("NULL")
    refs = _metric_refs(d, metrics)
    segmented = segment is not None
    analysed = _analysed_names(metrics)
    one_scan = d.narrow_shared_scan and src.exposures is None and src.event_type is not None
    if one_scan:
        scan, exposures = _one_event_scan(d, src, experiment, analysed, start, end)
        ctes[:1] = [("event_scan", scan), ("exposures", exposures)]
    if d.shared_scan:
        ctes.append(("events_in", _events_in(d, src, experiment, analysed, end, offsets, segmented, one_scan)))
    if any(m.kind != "quantile" and getattr(m, "cap", None) is None for m in metrics):
        ctes.append(("pop_n", "SELECT variant, segment, COUNT(*) AS n FROM population GROUP BY variant, segment"))
    # Dialect.one_user_pass: every metric's per-user values in one GROUP BY over events_in (users_all, put here
    # once the loop has its columns); m<i>_eu is then that metric's columns of it.
    one_pass = d.one_user_pass and d.shared_scan
    user_cols: list[str] = []
    users_at = len(ctes)
    for i, m in enumerate(metrics):
        kind = m.kind
        names = [m.numerator, m.denominator] if kind == "ratio" else [m.name]
        with_pre = cuped and kind not in ("ratio", "quantile")
        ctes.append((f"m{i}_events", _metric_rows(d, src, experiment, names, refs, m, start, end, offsets,
                                                  -lookback if with_pre else None, segmented)))
        if kind == "quantile":
            ranked = (
                f"SELECT variant, segment, user_id, value, ROW_NUMBER() OVER"
                f" (PARTITION BY variant, segment ORDER BY value) AS rn,"
                # the same window as rn (one sort): the whole partition's count
                f" COUNT(*) OVER (PARTITION BY variant, segment ORDER BY value ROWS BETWEEN UNBOUNDED PRECEDING"
                f" AND UNBOUNDED FOLLOWING) AS cnt\n"
                f"  FROM m{i}_events WHERE post = 1 AND value IS NOT NULL"
            )
            ctes.append((f"m{i}_ranked", ranked))
            q = float(m.quantile)
            rank = d.ceil(f"{q!r} * cnt")
            half = f"{z!r} * SQRT(cnt * {q!r} * {1 - q!r})"  # the float order of quantile_ranks
            lo_rank = _clip_rank(d.floor(f"{q!r} * cnt - {half}"))
            hi_rank = _clip_rank(d.ceil(f"{q!r} * cnt + {half}"))
            selects.append(
                f"SELECT {literal(m.name)} AS metric, variant, segment, COUNT(DISTINCT user_id) AS n,"
                f" {null} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2, {null} AS sum_xy,"
                f" COUNT(*) AS q_n, MIN(CASE WHEN rn = {rank} THEN {d.double('value')} END) AS q_value,"
                f" MIN(CASE WHEN rn = {lo_rank} THEN {d.double('value')} END) AS q_lower,"
                f" MIN(CASE WHEN rn = {hi_rank} THEN {d.double('value')} END) AS q_upper\n"
                f"  FROM m{i}_ranked GROUP BY variant, segment"
            )
            continue
        if kind == "ratio":
            y = _per_user_value(d, "mean", refs[m.numerator], "post = 1")
            x = _per_user_value(d, "mean", refs[m.denominator], "post = 1")
            columns = ["y", "x"]
        else:
            y = _per_user_value(d, kind, None, "post = 1")
            x = _per_user_value(d, kind, None, pre) if with_pre else zero
            columns = ["y"]
        # Per user with events of the metric (users without any count 0 in every sum).
        # (binomial: also the day of the first qualifying event, for the daily series in the same pass)
        first = f", MIN(CASE WHEN post = 1 THEN {_Time(d, src).day('ts_key')} END) AS first_day" if kind == "binomial" else ""
        if one_pass:
            # The same values as below with m<i>_events' post / pre conditions written out; a user without
            # events of this metric gets y = x = 0 and no first_day (adding nothing to any sum).
            post, pre_cond = _post_pre(d, src, m, start, offsets, -lookback if with_pre else None)
            match = f"metric_name IN ({', '.join(refs[n] for n in names)})"
            if kind == "ratio":
                yi = _per_user_value(d, "mean", refs[m.numerator], post)
                xi = _per_user_value(d, "mean", refs[m.denominator], post)
            else:
                yi = _per_user_value(d, kind, None, f"{match} AND {post}")
                xi = _per_user_value(d, kind, None, f"{match} AND {pre_cond}") if with_pre else zero
            user_cols += [f"{yi} AS y{i}", f"{xi} AS x{i}"]
            fd = ""
            if kind == "binomial":
                user_cols.append(f"MIN(CASE WHEN {match} AND {post} THEN {_Time(d, src).day('ts_key')} END) AS fd{i}")
                fd = f", fd{i} AS first_day"
            ctes.append((f"m{i}_eu", f"SELECT user_id, variant, segment, y{i} AS y, x{i} AS x{fd} FROM users_all"))
        elif d.group_user_keys:  # the same rows: one variant and segment per user (Dialect.group_user_keys)
            ctes.append((f"m{i}_eu", f"SELECT user_id, variant, segment, {y} AS y, {x} AS x{first}"
                                     f" FROM m{i}_events GROUP BY user_id, variant, segment"))
        else:
            ctes.append((f"m{i}_eu", f"SELECT user_id, MIN(variant) AS variant, MIN(segment) AS segment, {y} AS y,"
                                     f" {x} AS x{first} FROM m{i}_events GROUP BY user_id"))
        has_x = kind == "ratio" or with_pre
        yd = d.double("y")
        xd = d.double("x")
        sums = (
            f"SUM({yd}) AS sum_y, SUM({yd} * {yd}) AS sum_y2,"
            + (f" SUM({xd}) AS sum_x, SUM({xd} * {xd}) AS sum_x2, SUM({xd} * {yd}) AS sum_xy"
               if has_x else f" {zero} AS sum_x, {zero} AS sum_x2, {zero} AS sum_xy")
        )
        tail = f"0 AS q_n, {null} AS q_value, {null} AS q_lower, {null} AS q_upper"
        if getattr(m, "cap", None) is None:
            sums_of = ", ".join(f"COALESCE(s.{c}, {zero}) AS {c}" for c in ("sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy"))
            selects.append(
                f"SELECT {literal(m.name)} AS metric, c.variant, c.segment, c.n, {sums_of}, {tail}\n"
                f"  FROM pop_n c LEFT JOIN (SELECT variant, segment, {sums} FROM m{i}_eu GROUP BY variant, segment) s"
                f" ON s.variant = c.variant AND s.segment = c.segment"
            )
            continue
        # Capped: every population user's value (0 without events) for the pooled bounds and the clip.
        ctes.append((f"m{i}_user", f"SELECT p.user_id, p.variant, p.segment, COALESCE(e.y, 0) AS y,"
                                   f" COALESCE(e.x, 0) AS x\n  FROM population p LEFT JOIN m{i}_eu e"
                                   f" ON e.user_id = p.user_id"))
        ctes.extend(_cap_ctes(d, i, m, columns))
        selects.append(
            f"SELECT {literal(m.name)} AS metric, variant, segment, COUNT(*) AS n, {sums}, {tail}\n"
            f"  FROM m{i}_capped GROUP BY variant, segment"
        )
    if user_cols:
        # Unsegmented, every user's segment is the constant '(all)': not a group key (one key less to hash).
        seg, keys = ("segment", ", segment") if segment is not None else (f"{literal('(all)')} AS segment", "")
        ctes.insert(users_at, ("users_all", f"SELECT user_id, variant, {seg}, {', '.join(user_cols)}\n"
                                            f"  FROM events_in GROUP BY user_id, variant{keys}"))
    return ctes, selects


def build_daily_query(
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """New population users per UTC day (of first exposure) and variant: columns ``day, variant, users``.

    ``day`` is the integer day number since 1970-01-01 (integer division of epoch microseconds).
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    ctes = _population_ctes(d, src, experiment, start, end, None)
    with_sql = ",\n".join(f"{name} AS (\n  {body}\n)" for name, body in ctes)
    day = d.day_number("first_us")  # per user: cheap
    return (
        f"WITH {with_sql}\nSELECT {day} AS day, variant, COUNT(*) AS users FROM population"
        f" GROUP BY {day}, variant ORDER BY day, variant"
    )


def build_kind_probe_query(
    name: str, *, experiment: Any, dialect: str | Dialect, source: QuerySource | None = None,
    end: datetime | None = None,
) -> str:
    """One row ``n`` (0 or 1): whether the event metric ``name`` has a stored value outside {0, 1}.

    It guesses the kind of a metric without a definition (``binomial`` when every value is 0, 1
    or NULL, else ``mean``); ``LIMIT 1`` stops at the first non-0/1 value (an index range scan
    on the store).
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    q = d.quote
    where = [f"{q(src.metric_name)} = {literal(name)}"]
    if src.experiment and src.exposures is None:
        where.insert(0, f"{q(src.experiment)} = {literal(experiment)}")
    if src.event_type:
        where.insert(1 if len(where) > 1 else 0, f"{q(src.event_type)} = {literal(src.conversion_type)}")
    if end is not None:
        t = _Time(d, src)
        where.append(f"{t.event_key(q(src.ts))} < {t.literal(end)}")
    where.append(f"{q(src.value)} IS NOT NULL AND {q(src.value)} NOT IN (0, 1)")
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM {src.events}\n  WHERE {' AND '.join(where)} LIMIT 1) t"
    )


def _daily_parts(d: Dialect, src: QuerySource, metrics: Sequence[Any]) -> tuple[list[tuple[str, str]], list[str]]:
    """CTEs and SELECTs (columns ``metric, variant, day, sum_y, sum_x``; ``day`` a :meth:`Dialect.key_day`
    value) of the daily increases of every non-quantile metric, on the CTEs of :func:`_stats_parts`
    (``m<i>_events``; ``m<i>_user`` and ``m<i>_cap`` for capped metrics; ``i`` the index in ``metrics``)."""
    t = _Time(d, src)
    zero = d.double("0")
    day = t.day("ts_key")
    refs = _metric_refs(d, metrics)
    ctes: list[tuple[str, str]] = []
    selects: list[str] = []
    for i, m in enumerate(metrics):
        kind = m.kind
        if kind == "quantile":
            continue
        head = f"SELECT {literal(m.name)} AS metric, "
        if kind == "binomial":  # users on the day of their first qualifying event (m<i>_eu has it)
            selects.append(head + f"variant, first_day AS day, {d.double('COUNT(*)')} AS sum_y, {zero} AS sum_x\n"
                           f"  FROM m{i}_eu WHERE first_day IS NOT NULL GROUP BY variant, first_day")
            continue
        if kind == "ratio":
            y = _per_user_value(d, "mean", refs[m.numerator], "post = 1")
            x = _per_user_value(d, "mean", refs[m.denominator], "post = 1")
            columns = ["y", "x"]
        else:
            y = _per_user_value(d, kind, None, "post = 1")
            x = zero
            columns = ["y"]
        if getattr(m, "cap", None) is None:
            # Uncapped: the day's qualifying events per variant (no per-user step needed).
            selects.append(head + f"variant, {day} AS day, {y} AS sum_y, {x} AS sum_x\n"
                           f"  FROM m{i}_events WHERE post = 1 GROUP BY variant, {day}")
            continue
        # Capped: each user's running total per day clipped to the pooled bounds of the whole analysis
        # (m<i>_cap), and its day-to-day increase; every user starts at the clipped empty total.
        ctes.append((f"m{i}_day", f"SELECT user_id, MIN(variant) AS variant, {day} AS day, {y} AS y, {x} AS x"
                                  f" FROM m{i}_events WHERE post = 1 GROUP BY user_id, {day}"))
        running = ", ".join(
            f"SUM({d.double(c)}) OVER (PARTITION BY user_id ORDER BY day ROWS UNBOUNDED PRECEDING) AS {c}"
            for c in ("y", "x")
        )
        ctes.append((f"m{i}_run", f"SELECT user_id, variant, day, {running} FROM m{i}_day"))
        clipped, base = [], []
        for c in ("y", "x"):
            if c in columns:
                expr = f"CASE WHEN b.{c}_hi IS NOT NULL AND r.{c} > b.{c}_hi THEN b.{c}_hi ELSE r.{c} END"
                expr = f"CASE WHEN b.{c}_lo IS NOT NULL AND r.{c} < b.{c}_lo THEN b.{c}_lo ELSE {expr} END"
                e0 = f"CASE WHEN b.{c}_hi IS NOT NULL AND 0 > b.{c}_hi THEN b.{c}_hi ELSE 0 END"
                e0 = f"CASE WHEN b.{c}_lo IS NOT NULL AND 0 < b.{c}_lo THEN b.{c}_lo ELSE {e0} END"
            else:
                expr, e0 = f"r.{c}", "0"
            clipped.append(f"{expr} AS {c}")
            base.append(d.double(e0))
        ctes.append((f"m{i}_clip", f"SELECT r.user_id, r.variant, r.day, {', '.join(clipped)}"
                                   f" FROM m{i}_run r CROSS JOIN m{i}_cap b"))
        inc = ", ".join(
            f"{c} - COALESCE(LAG({c}) OVER (PARTITION BY user_id ORDER BY day), {b0}) AS d{c}"
            for c, b0 in zip(("y", "x"), base, strict=True)
        )
        ctes.append((f"m{i}_inc", f"SELECT c.variant, c.day, {inc} FROM m{i}_clip c CROSS JOIN m{i}_cap b"))
        selects.append(head + f"variant, day, SUM({d.double('dy')}) AS sum_y, SUM({d.double('dx')}) AS sum_x\n"
                       f"  FROM m{i}_inc GROUP BY variant, day")
        first_day = t.day("p.first_key")
        selects.append(head + f"p.variant, {first_day} AS day, SUM({base[0]}) AS sum_y, SUM({base[1]}) AS sum_x\n"
                       f"  FROM population p CROSS JOIN m{i}_cap b GROUP BY p.variant, {first_day}")
    return ctes, selects


def build_daily_metric_query(
    metrics: Sequence[Any],
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """Per (metric, variant, UTC day) the increase of the metric's per-user sums on that day.

    Columns ``metric, variant, day, sum_y, sum_x`` (``day`` the day number since 1970-01-01). Summed
    over the days up to ``D`` they are the sums :func:`build_stats_query` gives with ``end`` at the
    end of day ``D`` (the same qualifying events: at or after first exposure + delay, inside the
    window): ``binomial`` counts users on the day of their first qualifying event, ``count`` /
    ``mean`` add the day's events (values), ``ratio`` the numerator (``sum_y``) and denominator
    (``sum_x``). A capped metric clips each user's running total with the pooled bounds of the
    whole analysis (so the last day equals the headline number) and reports the day-to-day
    increase of the clipped totals. ``quantile`` metrics have no daily series (left out).
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    if not [m for m in metrics if m.kind != "quantile"]:
        raise ValueError("no metrics with a daily series (quantile metrics have none)")
    ctes, _ = _stats_parts(d, src, metrics, experiment, start, end, None, False, 14 * 24, 0.05)
    more, selects = _daily_parts(d, src, metrics)
    t = _Time(d, src)
    return _assemble(d, ctes + more, selects, ("metric", "variant", f"{t.day_out('day')} AS day", "sum_y", "sum_x"),
                     "metric, variant, day")


#: Output columns of :func:`build_analysis_query`.
ANALYSIS_COLUMNS: tuple[str, ...] = (
    "part", "metric", "variant", "segment", "day", "n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy",
    "q_n", "q_value", "q_lower", "q_upper", "v_min", "v_max", "p50", "p95", "p99",
)


def build_analysis_query(
    metrics: Sequence[Any],
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cuped: bool = False,
    cuped_lookback_hours: float = 14 * 24,
    quantile_alpha: float = 0.05,
    daily: bool = True,
    percentiles: Sequence[str] = (),
    population_table: str | None = None,
) -> str:
    """Everything one analysis needs in one statement (one population, one pass per metric on SQLite).

    Columns :data:`ANALYSIS_COLUMNS`; ``part`` says what a row is:

    * ``stats``: a row of :func:`build_stats_query` (no segment: ``'(all)'``);
    * ``users``: new population users ``n`` per ``variant`` and ``day`` of first exposure;
    * ``daily`` (with ``daily``): a row of :func:`build_daily_metric_query` (``sum_y``, ``sum_x``);
    * ``percentile``: for each metric named in ``percentiles`` (count / mean / ratio numerator metrics
      of ``metrics``) and variant, over the qualifying event values (NULL left out): ``n`` values,
      ``sum_y`` their sum, ``v_min`` / ``v_max``, and nearest-rank ``p50`` / ``p95`` / ``p99`` (rank
      ``ceil(p N / 100)``, numpy ``method="inverted_cdf"``).

    ``day`` is the day number since 1970-01-01 (NULL for other parts). With ``population_table`` (a
    table with the rows of the ``population`` CTE, e.g. the TEMP table of
    :func:`build_analysis_statements`) the population is read from it instead of being derived.
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    src = source or QuerySource()
    t = _Time(d, src)
    ctes, stats_selects = _stats_parts(d, src, metrics, experiment, start, end, None, cuped, cuped_lookback_hours,
                                       quantile_alpha)
    if population_table is not None:
        assert [name for name, _ in ctes[:2]] == ["exposures", "population"]
        ctes[:2] = [("population", f"SELECT * FROM {population_table}")]
    null = d.double("NULL")
    nulls = f"{null} AS v_min, {null} AS v_max, {null} AS p50, {null} AS p95, {null} AS p99"
    int_null = "CAST(NULL AS BIGINT)" if d.name != "sqlite" else "NULL"
    text_null = d.text("NULL")
    selects = [
        f"SELECT 'stats' AS part, metric, variant, segment, {int_null} AS day, n, sum_y, sum_y2, sum_x, sum_x2,"
        f" sum_xy, q_n, q_value, q_lower, q_upper, {nulls}\n  FROM (\n{sel}\n  ) st"
        for sel in stats_selects
    ]
    day = d.day_number("first_us")
    selects.append(
        f"SELECT 'users' AS part, {text_null} AS metric, variant, {text_null} AS segment, {day} AS day, COUNT(*) AS n,"
        f" {null} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2, {null} AS sum_xy, 0 AS q_n,"
        f" {null} AS q_value, {null} AS q_lower, {null} AS q_upper, {nulls}\n"
        f"  FROM population GROUP BY variant, {day}"
    )
    if daily and any(m.kind != "quantile" for m in metrics):
        more, daily_selects = _daily_parts(d, src, metrics)
        ctes += more
        selects += [
            f"SELECT 'daily' AS part, metric, variant, {text_null} AS segment, {t.day_out('day')} AS day, 0 AS n,"
            f" sum_y, {null} AS sum_y2, sum_x, {null} AS sum_x2, {null} AS sum_xy, 0 AS q_n, {null} AS q_value,"
            f" {null} AS q_lower, {null} AS q_upper, {nulls}\n  FROM (\n{sel}\n  ) dl"
            for sel in daily_selects
        ]
    index = {m.name: i for i, m in enumerate(metrics)}
    for name in dict.fromkeys(percentiles):
        if name not in index or metrics[index[name]].kind not in ("count", "mean"):
            raise ValueError(f"percentiles are for count or mean metrics of this query; got {name!r}")
        i = index[name]
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
        ctes.append((f"m{i}_pct", ranked))
        picks = ", ".join(
            f"MIN(CASE WHEN {at} {d.int_div(f'(cnt * {p} + 99)', '100')} THEN {d.double('value')} END) AS p{p}"
            for p in (50, 95, 99)
        )
        selects.append(
            f"SELECT 'percentile' AS part, {literal(name)} AS metric, variant, {text_null} AS segment, {int_null} AS day,"
            f" {n_expr} AS n, {sum_expr} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2,"
            f" {null} AS sum_xy, 0 AS q_n, {null} AS q_value, {null} AS q_lower, {null} AS q_upper,"
            f" MIN({d.double('value')}) AS v_min, MAX({d.double('value')}) AS v_max, {picks}\n"
            f"  FROM m{i}_pct GROUP BY variant"
        )
    return _assemble(d, ctes, selects, ANALYSIS_COLUMNS, "part, metric, variant, segment, day",
                     ("population",) if population_table is not None else ())


@dataclass(frozen=True)
class AnalysisStatements:
    """The statements of one analysis, run in order on ONE connection: ``prelude``, then ``query``
    (whose rows are the result, as :func:`build_analysis_query`'s), then ``cleanup`` (always, also
    after an error)."""

    prelude: tuple[str, ...]
    query: str
    cleanup: tuple[str, ...]


def build_analysis_statements(
    metrics: Sequence[Any],
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    cuped: bool = False,
    cuped_lookback_hours: float = 14 * 24,
    quantile_alpha: float = 0.05,
    daily: bool = True,
    percentiles: Sequence[str] = (),
) -> AnalysisStatements:
    """:func:`build_analysis_query` (same arguments, same rows) with the prelude its dialect wants.

    Where :attr:`Dialect.temp_population` holds (SQLite), the prelude stores the ``population``
    CTE's rows once in a TEMP table keyed by ``user_id`` (a unique name per call) and the query
    reads it (``population_table``); cleanup drops it. Elsewhere prelude and cleanup are empty.
    """
    d = dialect if isinstance(dialect, Dialect) else get_dialect(dialect)
    options: dict[str, Any] = dict(
        experiment=experiment, dialect=d, source=source, start=start, end=end, cuped=cuped,
        cuped_lookback_hours=cuped_lookback_hours, quantile_alpha=quantile_alpha, daily=daily,
        percentiles=percentiles,
    )
    if not d.temp_population:
        return AnalysisStatements((), build_analysis_query(metrics, **options), ())
    from uuid import uuid4

    src = source or QuerySource()
    # The population CTEs exactly as build_analysis_query renders them (same validation first).
    ctes, _ = _stats_parts(d, src, metrics, experiment, start, end, None, cuped, cuped_lookback_hours, quantile_alpha)
    assert [name for name, _ in ctes[:2]] == ["exposures", "population"]
    offsets = _bound_offsets(metrics, cuped, _hours_us(cuped_lookback_hours))
    columns = ["user_id", "variant", "first_key", "first_us", "segment"] + [f"b{j}" for j in range(len(offsets))]
    name = f"abq_pop_{uuid4().hex[:12]}"
    # No declared types beyond the key: every value keeps the type the CTE gives it.
    ddl = f"CREATE TEMP TABLE {name} (user_id TEXT PRIMARY KEY, {', '.join(columns[1:])}) WITHOUT ROWID"
    with_sql = ",\n".join(f"{n} AS (\n  {body}\n)" for n, body in ctes[:2])
    fill = f"INSERT INTO {name} ({', '.join(columns)})\nWITH {with_sql}\nSELECT {', '.join(columns)} FROM population"
    query = build_analysis_query(metrics, population_table=name, **options)
    return AnalysisStatements((ddl, fill), query, (f"DROP TABLE IF EXISTS temp.{name}",))
