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

The CTE families are built in their own modules: :mod:`~abcore.analysis.sql.population` (1, 2 and the
event scan), :mod:`~abcore.analysis.sql.metric_values` (3, 4), :mod:`~abcore.analysis.sql.caps` (5),
:mod:`~abcore.analysis.sql.stats` (6, and the percentiles) and :mod:`~abcore.analysis.sql.daily` (the
daily series); this module puts them together into the public statements.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from abcore.analysis.sql.counts import COUNT_COLUMNS, HISTOGRAM_COLUMNS, count_parts, histogram_parts
from abcore.analysis.sql.daily import daily_parts
from abcore.analysis.sql.dialects import Dialect, get_dialect
from abcore.analysis.sql.population import population_ctes
from abcore.analysis.sql.source import QuerySource, literal
from abcore.analysis.sql.stats import STATS_COLUMNS, percentile_parts, stats_parts
from abcore.analysis.sql.time_keys import TimeKeys, bound_offsets, hours_us
from abcore.metrics import validate_metric

__all__ = [
    "QuerySource",
    "ANALYSIS_COLUMNS",
    "AnalysisStatements",
    "build_analysis_query",
    "build_analysis_statements",
    "build_daily_metric_query",
    "build_daily_query",
    "build_kind_probe_query",
    "build_metric_counts_query",
    "build_value_histogram_query",
    "build_stats_query",
    "literal",
]


def _dialect(dialect: str | Dialect) -> Dialect:
    return dialect if isinstance(dialect, Dialect) else get_dialect(dialect)


def _validated_parts(
    d: Dialect, src: QuerySource, metrics: Sequence[Any], experiment: Any, start: datetime | None,
    end: datetime | None, segment: str | None, cuped: bool, cuped_lookback_hours: float, quantile_alpha: float,
    epochs: Sequence[datetime] = (),
) -> tuple[list[tuple[str, str]], list[str]]:
    """:func:`abcore.analysis.sql.stats.stats_parts` after checking the definitions (``ValueError`` lists every
    problem of an invalid one) and ``quantile_alpha``."""
    if not metrics:
        raise ValueError("no metrics to analyse")
    _checked(metrics)
    if not 0 < quantile_alpha < 1:
        raise ValueError(f"quantile_alpha must be in (0, 1); got {quantile_alpha}")
    if list(epochs) != sorted(epochs):
        raise ValueError("epoch change times must be in ascending order")
    return stats_parts(d, src, metrics, experiment, start, end, segment, cuped, cuped_lookback_hours, quantile_alpha,
                       epochs)


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
    epochs: Sequence[datetime] = (),
) -> str:
    """The single SQL statement of per-variant sufficient statistics for ``metrics``.

    One row per (metric, variant, segment) with columns ``metric, variant, segment, n, sum_y,
    sum_y2, sum_x, sum_x2, sum_xy, q_n, q_value``: for ``ratio`` y is the numerator and x the
    denominator; with ``cuped`` x is the pre-exposure covariate of binomial/count/mean metrics;
    for ``quantile`` ``q_n`` is the number of non-NULL event values and ``q_value`` the exact
    nearest-rank quantile (``n`` is the exposed users, as for every metric), ``q_lower`` / ``q_upper``
    the order statistics at the ranks ``floor / ceil(N q -/+ z sqrt(N q (1 - q)))`` (clipped to
    ``[1, N]``, ``z`` the two-sided normal quantile of ``quantile_alpha``; the interval of
    :func:`abcore.stats.quantile_ranks`, Deng, Knoblich & Lu 2018). ``segment`` groups by an
    assignment attribute (``'(none)'`` when missing; ``'(all)'`` without a segment); ``epochs`` (the ascending
    times the split or traffic share changed) instead groups by the user's epoch, ``'0'``, ``'1'``, ... by
    assignment time (:func:`abcore.analysis.sql.population.epoch_label`).
    ``ValueError`` lists every problem of an invalid definition.
    """
    d = _dialect(dialect)
    src = source or QuerySource()
    ctes, selects = _validated_parts(d, src, metrics, experiment, start, end, segment, cuped, cuped_lookback_hours,
                                     quantile_alpha, epochs)
    return _assemble(d, ctes, selects, STATS_COLUMNS, "metric, variant, segment")


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
    d = _dialect(dialect)
    src = source or QuerySource()
    ctes = population_ctes(d, src, experiment, start, end, None)
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
    d = _dialect(dialect)
    src = source or QuerySource()
    q = d.quote
    where = [f"{q(src.metric_name)} = {literal(name, d)}"]
    if src.experiment:
        where.insert(0, f"{q(src.experiment)} = {literal(experiment, d)}")
    if src.event_type:
        where.insert(1 if len(where) > 1 else 0, f"{q(src.event_type)} = {literal(src.conversion_type, d)}")
    if end is not None:
        t = TimeKeys(d, src)
        where.append(f"{t.event_key(q(src.ts))} < {t.literal(end)}")
    where.append(f"{q(src.value)} IS NOT NULL AND {q(src.value)} NOT IN (0, 1)")
    return (
        f"SELECT COUNT(*) AS n FROM (SELECT 1 AS one FROM {src.events}\n  WHERE {' AND '.join(where)} LIMIT 1) t"
    )


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
    d = _dialect(dialect)
    src = source or QuerySource()
    if not [m for m in metrics if m.kind != "quantile"]:
        raise ValueError("no metrics with a daily series (quantile metrics have none)")
    ctes, _ = _validated_parts(d, src, metrics, experiment, start, end, None, False, 14 * 24, 0.05)
    more, selects = daily_parts(d, src, metrics)
    t = TimeKeys(d, src)
    return _assemble(d, ctes + more, selects, ("metric", "variant", f"{t.day_out('day')} AS day", "sum_y", "sum_x"),
                     "metric, variant, day")


def _checked(metrics: Sequence[Any]) -> None:
    """``ValueError`` listing every problem of an invalid definition among ``metrics``."""
    for m in metrics:
        problems = validate_metric(m)
        if problems:
            raise ValueError(f"invalid metric {getattr(m, 'name', '?')!r}: " + "; ".join(problems))


def build_metric_counts_query(
    metrics: Sequence[Any],
    *,
    experiment: Any,
    dialect: str | Dialect,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """Plain counts over the analysis population and each metric's qualifying events (no statistics).

    Columns ``metric, variant, n, events, users, converted, sum_value``: a row with ``metric`` NULL per
    variant whose ``n`` is the population (the users :func:`build_stats_query` counts); per metric (an
    event metric name; its ``window_hours`` / ``delay_hours`` apply, its kind does not) and population
    variant ``n`` again, ``events`` the qualifying events (at or after first exposure + delay, inside the
    window and ``[start, end)``: the events the analysis reads), ``users`` the users with one,
    ``converted`` the users with a qualifying value >= 1 and ``sum_value`` the sum of the qualifying
    values (an event's value is ``value``, or 1 when NULL; no cap).
    """
    d = _dialect(dialect)
    _checked(metrics)
    ctes, selects = count_parts(d, source or QuerySource(), metrics, experiment, start, end)
    return _assemble(d, ctes, selects, COUNT_COLUMNS, "metric, variant")


def build_value_histogram_query(
    metric: Any,
    *,
    experiment: Any,
    dialect: str | Dialect,
    bins: int,
    source: QuerySource | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> str:
    """The histogram of the event metric ``metric``'s qualifying non-NULL values per variant (the events of
    :func:`build_metric_counts_query`), on ``bins`` equal-width bins shared by the variants.

    Columns ``variant, bucket, n, lo, hi``: ``n`` values of the variant in ``bucket`` (``floor`` of the
    value's distance from ``lo`` in bin widths ``(hi - lo) / bins``; ``bins`` for the largest value,
    which belongs to the last bin; 0 when every value is equal), ``lo`` / ``hi`` the smallest and largest
    value of all variants. No rows without values.
    """
    if bins < 1:
        raise ValueError("bins must be at least 1")
    d = _dialect(dialect)
    _checked([metric])
    ctes, selects = histogram_parts(d, source or QuerySource(), metric, experiment, start, end, bins)
    return _assemble(d, ctes, selects, HISTOGRAM_COLUMNS, "variant, bucket")


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
    epochs: Sequence[datetime] = (),
) -> str:
    """Everything one analysis needs in one statement (one population, one pass per metric on SQLite).

    Columns :data:`ANALYSIS_COLUMNS`; ``part`` says what a row is:

    * ``stats``: a row of :func:`build_stats_query` (no segment: ``'(all)'``);
    * ``users``: new population users ``n`` per ``variant`` and ``day`` of first exposure;
    * ``daily`` (with ``daily``): a row of :func:`build_daily_metric_query` (``sum_y``, ``sum_x``);
    * ``percentile``: for each metric named in ``percentiles`` (count / mean / event_mean metrics
      of ``metrics``) and variant, over the qualifying event values (NULL left out): ``n`` values,
      ``sum_y`` their sum, ``v_min`` / ``v_max``, and nearest-rank ``p50`` / ``p95`` / ``p99`` (rank
      ``ceil(p N / 100)``, numpy ``method="inverted_cdf"``).

    ``day`` is the day number since 1970-01-01 (NULL for other parts). With ``population_table`` (a
    table with the rows of the ``population`` CTE, e.g. the TEMP table of
    :func:`build_analysis_statements`) the population is read from it instead of being derived. With ``epochs``
    (:func:`build_stats_query`) the ``stats`` and ``users`` rows are per epoch (``segment``).
    """
    d = _dialect(dialect)
    src = source or QuerySource()
    ctes, stats_selects = _validated_parts(d, src, metrics, experiment, start, end, None, cuped,
                                           cuped_lookback_hours, quantile_alpha, epochs)
    if population_table is not None:
        assert [name for name, _ in ctes[:2]] == ["exposures", "population"]
        ctes[:2] = [("population", f"SELECT * FROM {population_table}")]
    selects = _analysis_selects(d, stats_selects, bool(epochs))
    if daily and any(m.kind != "quantile" for m in metrics):
        more, daily_selects = daily_parts(d, src, metrics)
        ctes += more
        selects += _daily_part(d, src, daily_selects)
    index = {m.name: i for i, m in enumerate(metrics)}
    for name in dict.fromkeys(percentiles):
        if name not in index or metrics[index[name]].kind not in ("count", "mean", "event_mean"):
            raise ValueError(f"percentiles are for count, mean or event_mean metrics of this query; got {name!r}")
        cte, select = percentile_parts(d, index[name], name)
        ctes.append(cte)
        selects.append(select)
    return _assemble(d, ctes, selects, ANALYSIS_COLUMNS, "part, metric, variant, segment, day",
                     ("population",) if population_table is not None else ())


def _null_columns(d: Dialect) -> str:
    """The percentile columns (``v_min`` .. ``p99``) of a row that is not a percentile."""
    null = d.double("NULL")
    return f"{null} AS v_min, {null} AS v_max, {null} AS p50, {null} AS p95, {null} AS p99"


def _analysis_selects(d: Dialect, stats_selects: Sequence[str], by_epoch: bool = False) -> list[str]:
    """The ``stats`` rows (each of ``stats_selects``) and the ``users`` rows of :func:`build_analysis_query`
    (``by_epoch``: per epoch, the population's ``segment``)."""
    null, nulls = d.double("NULL"), _null_columns(d)
    int_null = "CAST(NULL AS BIGINT)" if d.name != "sqlite" else "NULL"
    text_null = d.text("NULL")
    selects = [
        f"SELECT 'stats' AS part, metric, variant, segment, {int_null} AS day, n, sum_y, sum_y2, sum_x, sum_x2,"
        f" sum_xy, q_n, q_value, q_lower, q_upper, {nulls}\n  FROM (\n{sel}\n  ) st"
        for sel in stats_selects
    ]
    day = d.day_number("first_us")
    segment, by = ("segment", "segment, ") if by_epoch else (text_null, "")
    selects.append(
        f"SELECT 'users' AS part, {text_null} AS metric, variant, {segment} AS segment, {day} AS day, COUNT(*) AS n,"
        f" {null} AS sum_y, {null} AS sum_y2, {null} AS sum_x, {null} AS sum_x2, {null} AS sum_xy, 0 AS q_n,"
        f" {null} AS q_value, {null} AS q_lower, {null} AS q_upper, {nulls}\n"
        f"  FROM population GROUP BY variant, {by}{day}"
    )
    return selects


def _daily_part(d: Dialect, src: QuerySource, daily_selects: Sequence[str]) -> list[str]:
    """The ``daily`` rows of :func:`build_analysis_query` (each of ``daily_selects``)."""
    null, nulls, text_null = d.double("NULL"), _null_columns(d), d.text("NULL")
    return [
        f"SELECT 'daily' AS part, metric, variant, {text_null} AS segment, {TimeKeys(d, src).day_out('day')} AS day,"
        f" 0 AS n, sum_y, {null} AS sum_y2, sum_x, {null} AS sum_x2, {null} AS sum_xy, 0 AS q_n, {null} AS q_value,"
        f" {null} AS q_lower, {null} AS q_upper, {nulls}\n  FROM (\n{sel}\n  ) dl"
        for sel in daily_selects
    ]


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
    epochs: Sequence[datetime] = (),
) -> AnalysisStatements:
    """:func:`build_analysis_query` (same arguments, same rows) with the prelude its dialect wants.

    Where :attr:`Dialect.temp_population` holds (SQLite), the prelude stores the ``population``
    CTE's rows once in a TEMP table keyed by ``user_id`` (a unique name per call) and the query
    reads it (``population_table``); cleanup drops it. Elsewhere prelude and cleanup are empty.
    """
    d = _dialect(dialect)
    options: dict[str, Any] = dict(
        experiment=experiment, dialect=d, source=source, start=start, end=end, cuped=cuped,
        cuped_lookback_hours=cuped_lookback_hours, quantile_alpha=quantile_alpha, daily=daily,
        percentiles=percentiles, epochs=epochs,
    )
    if not d.temp_population:
        return AnalysisStatements((), build_analysis_query(metrics, **options), ())
    from uuid import uuid4

    src = source or QuerySource()
    # The population CTEs exactly as build_analysis_query renders them (same validation first).
    ctes, _ = _validated_parts(d, src, metrics, experiment, start, end, None, cuped, cuped_lookback_hours,
                               quantile_alpha, epochs)
    assert [name for name, _ in ctes[:2]] == ["exposures", "population"]
    offsets = bound_offsets(metrics, cuped, hours_us(cuped_lookback_hours))
    columns = ["user_id", "variant", "first_key", "first_us", "segment"] + [f"b{j}" for j in range(len(offsets))]
    name = f"abq_pop_{uuid4().hex[:12]}"
    # No declared types beyond the key: every value keeps the type the CTE gives it.
    ddl = f"CREATE TEMP TABLE {name} (user_id TEXT PRIMARY KEY, {', '.join(columns[1:])}) WITHOUT ROWID"
    with_sql = ",\n".join(f"{n} AS (\n  {body}\n)" for n, body in ctes[:2])
    fill = f"INSERT INTO {name} ({', '.join(columns)})\nWITH {with_sql}\nSELECT {', '.join(columns)} FROM population"
    query = build_analysis_query(metrics, population_table=name, **options)
    return AnalysisStatements((ddl, fill), query, (f"DROP TABLE IF EXISTS temp.{name}",))
