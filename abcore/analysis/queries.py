"""All aggregation SQL of abcore, returning small frozen dataclasses.

Every function takes the SQLModel ``Session`` as the keyword ``session`` and runs
SQLAlchemy Core statements on SQLite (>= 3.25, for window functions) and PostgreSQL.
Raw events never travel to Python: the database aggregates per user first, then per
variant (and metric, day or segment), and Python receives a few rows of sufficient
statistics.

How the analysis queries scale (10 million events in seconds): :class:`AnalysisScope`
computes the population once into a temporary table keyed by user, every other query
joins it by primary key, each metric is read in one index-ordered pass (per user
first), and on SQLite the groups are folded into small integer-keyed temporary tables
(:func:`_aggregate`) because SQLite's ``GROUP BY`` sorts every input row. Where the
backends differ (that folding, a few cheaper per-row expressions, the population
build) the results are the same; the tests run on both.

Conventions shared by the analysis queries
------------------------------------------
* **Population**: users with a stored assignment (``ab_user_assignments``) *and* at
  least one ``exposure`` event in the window. The assignment row decides the
  variant; the ``variant_id`` written on events is ignored.
* **Window**: ``start`` (inclusive) and ``end`` (exclusive) filter events by ``ts``.
  Naive datetimes are taken as UTC.
* **Metric value of an event**: ``value``, or 1 when ``value`` is NULL (a bare
  conversion event counts as one conversion).
* **Per-user value**: the sum of the user's metric values in the window (0 for
  exposed users without events); a user *converted* when one of their values is >= 1.
* **Metric kind**: a metric is ``binary`` (conversion) when every analysed event
  value is 0 or 1; otherwise it is a ``mean`` metric. The rule is evaluated in SQL
  by counting values outside {0, 1}.
* **Percentiles**: nearest-rank on event values: the p-th percentile of ``N`` sorted
  values is the value at rank ``ceil(p * N / 100)`` (numpy ``method="inverted_cdf"``).
"""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, Float, Integer, String, and_, case, cast, func, literal, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ColumnElement
from sqlalchemy.sql.elements import BindParameter
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.selectable import Join
from sqlmodel import Session

from abcore.stats import BinarySummary, CovariateSummary, MeanSummary
from abcore.store.tables import EventType, Experiment, ExperimentEvent, UserAssignment, Variant

__all__ = [
    "PERCENTILES",
    "PERCENTILE_BINS",
    "AnalysisScope",
    "DailyMetric",
    "DailyUsers",
    "MetricStats",
    "PercentileStats",
    "ValueDistribution",
    "covariate_stats",
    "daily_metric",
    "daily_users",
    "exposed_users",
    "metric_stats",
    "percentile_stats",
    "segment_expression",
    "value_distribution",
    "SENTIMENTS",
    "AssignmentsPerDay",
    "ExperimentOverview",
    "VariantUsers",
    "assignments_per_day",
    "experiment_overview",
    "feedback_counts",
    "latest_event_id",
    "metric_names",
    "participants",
    "variant_users",
    "assigned_variant",
    "event_counts",
    "event_total",
]

EVENTS = ExperimentEvent.__table__  # type: ignore[attr-defined]
ASSIGNMENTS = UserAssignment.__table__  # type: ignore[attr-defined]
VARIANTS = Variant.__table__  # type: ignore[attr-defined]
EXPERIMENTS = Experiment.__table__  # type: ignore[attr-defined]

SENTIMENTS: tuple[str, ...] = ("positive", "neutral", "negative")
PERCENTILES: tuple[int, ...] = (50, 95, 99)


# --------------------------------------------------------------------------- helpers


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name


def _run(session: Session, statement: Any) -> Any:
    """Execute a Core statement inside the session's transaction."""
    return session.connection().execute(statement)


def as_utc(value: datetime | None) -> datetime | None:
    """An aware UTC datetime (naive values are taken as UTC); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):  # SQLite aggregates may come back as text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _bind_ts(value: datetime | None) -> datetime | None:
    """A datetime ready to bind against ``ts``: converted to UTC (SQLite stores UTC wall-clock text)."""
    return as_utc(value)


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int):  # a Julian day number from _day_number
        return date.fromordinal(value - _JDN_OFFSET)
    return date.fromisoformat(str(value)[:10])


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column (text ``YYYY-MM-DD`` on SQLite, ``date`` on Postgres)."""
    if dialect == "sqlite":
        return func.substr(column, 1, 10)
    return cast(func.timezone("UTC", column), Date)


def _day_number(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC day of a timestamp column as its Julian day number on SQLite (a cheap integer key:
    ``julianday`` of the ``YYYY-MM-DD`` prefix is ``n - 0.5`` exactly); the ``date`` on Postgres."""
    if dialect == "sqlite":
        return cast(func.julianday(func.substr(column, 1, 10)) + literal(0.5, Float), Integer)
    return _day(column, dialect)


#: Julian day number minus :meth:`date.toordinal` (JDN 2461042 is 2026-01-01).
_JDN_OFFSET = 1_721_425
#: Radix of a packed Julian day number (see :func:`_aggregate`); covers dates up to the year 22,666.
DAY_RADIX = 10_000_000


def _floor(expr: Any, dialect: str) -> ColumnElement[Any]:
    """``floor(expr)`` for a non-negative expression, as an integer on both backends."""
    if dialect == "sqlite":
        return cast(expr, Integer)  # truncation == floor for x >= 0
    return cast(func.floor(expr), Integer)


def _window(start: datetime | None, end: datetime | None, ts: Any = None) -> list[ColumnElement[bool]]:
    ts = EVENTS.c.ts if ts is None else ts
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(ts >= _bind_ts(start))
    if end is not None:
        conditions.append(ts < _bind_ts(end))
    return conditions


def _metric_value() -> ColumnElement[float]:
    """An event's metric value: ``value``, or 1 for a bare conversion event."""
    return func.coalesce(EVENTS.c.value, literal(1.0, Float))


class _json_key_text(FunctionElement[str]):
    """Text of the value under one top-level key of a JSON column, the same on every backend.

    PostgreSQL's ``->>``: booleans ``true``/``false``, numbers as written, strings unquoted, NULL for
    a missing key or JSON null. SQLite is made to agree (see the SQLite compilation below).
    """

    type = String()
    inherit_cache = True
    name = "abcore_json_key_text"


@compiles(_json_key_text)
def _json_key_text_default(element: _json_key_text, compiler: Any, **kw: Any) -> str:
    column, key = list(element.clauses)
    return f"({compiler.process(column, **kw)} ->> {compiler.process(key, **kw)})"


@compiles(_json_key_text, "sqlite")
def _json_key_text_sqlite(element: _json_key_text, compiler: Any, **kw: Any) -> str:
    # json_extract gives 1/0 for true/false (so `true` and 1 would merge): json_type tells them apart.
    # SQLite's JSON paths cannot name a key holding `"` or `\`; such keys are looked up with json_each.
    column, key = list(element.clauses)
    col = compiler.process(column, **kw)
    name = key.value if isinstance(key, BindParameter) else None
    if isinstance(name, str) and '"' not in name and "\\" not in name:
        path = compiler.process(literal(f'$."{name}"'), **kw)
        return (f"(CASE json_type({col}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
                f"ELSE CAST(json_extract({col}, {path}) AS TEXT) END)")
    return (f"(SELECT CASE j.type WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN NULL "
            f"ELSE CAST(j.value AS TEXT) END FROM json_each({col}) AS j "
            f"WHERE j.type IS NOT NULL AND j.key = {compiler.process(key, **kw)} LIMIT 1)")


def segment_expression(segment: str) -> ColumnElement[str]:
    """The assignment attribute ``segment`` as text (``'(none)'`` when missing or null).

    Identical labels on SQLite and PostgreSQL: booleans are ``'true'``/``'false'`` (never merged with
    1/0), numbers as written, and any attribute name works (quotes and backslashes included).
    """
    return func.coalesce(_json_key_text(ASSIGNMENTS.c.attributes, literal(segment, String())), literal("(none)"))


# --------------------------------------------------------------------------- simple queries


def participants(*, session: Session, experiment_id: int) -> dict[int, int]:
    """Assigned users per variant: ``{variant_id: users}`` for every variant of the experiment (0 included)."""
    counts = (
        select(ASSIGNMENTS.c.variant_id, func.count().label("users"))
        .where(ASSIGNMENTS.c.experiment_id == experiment_id)
        .group_by(ASSIGNMENTS.c.variant_id)
        .subquery()
    )
    statement = (
        select(VARIANTS.c.id, func.coalesce(counts.c.users, 0))
        .select_from(VARIANTS.outerjoin(counts, counts.c.variant_id == VARIANTS.c.id))
        .where(VARIANTS.c.experiment_id == experiment_id)
        .order_by(VARIANTS.c.position, VARIANTS.c.id)
    )
    result = {int(v): int(n) for v, n in _run(session, statement)}
    # Assignments to a variant row that no longer belongs to the experiment are still counted.
    extra = select(ASSIGNMENTS.c.variant_id, func.count()).where(
        ASSIGNMENTS.c.experiment_id == experiment_id,
        ASSIGNMENTS.c.variant_id.not_in(select(VARIANTS.c.id).where(VARIANTS.c.experiment_id == experiment_id)),
    ).group_by(ASSIGNMENTS.c.variant_id)
    for v, n in _run(session, extra):
        result[int(v)] = int(n)
    return result


def latest_event_id(*, session: Session, experiment_id: int) -> int:
    """The largest event id of the experiment in ``ab_experiment_results`` (0 when it has none).

    It grows whenever an event is recorded, so the dashboard uses it as its cache key.
    """
    value = _run(
        session, select(func.max(EVENTS.c.id)).where(EVENTS.c.experiment_id == experiment_id)
    ).scalar()
    return int(value or 0)


@dataclass(frozen=True)
class AssignmentsPerDay:
    """Users assigned to ``variant_id`` on the UTC calendar ``day``."""

    day: date
    variant_id: int
    count: int


def assignments_per_day(*, session: Session, experiment_id: int) -> list[AssignmentsPerDay]:
    """New assignments per UTC day and variant, ordered by day then variant (days without any are absent)."""
    day = _day(ASSIGNMENTS.c.assigned_at, _dialect(session)).label("day")
    statement = (
        select(day, ASSIGNMENTS.c.variant_id, func.count())
        .where(ASSIGNMENTS.c.experiment_id == experiment_id)
        .group_by(day, ASSIGNMENTS.c.variant_id)
        .order_by(day, ASSIGNMENTS.c.variant_id)
    )
    return [AssignmentsPerDay(_as_date(d), int(v), int(n)) for d, v, n in _run(session, statement)]


def feedback_counts(
    *,
    session: Session,
    experiment_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[int, dict[str, int]]:
    """Feedback events per variant and sentiment: ``{variant_id: {"positive": n, "neutral": n, "negative": n}}``.

    Counts events (not users) of type ``feedback`` whose ``properties.sentiment`` is one of
    :data:`SENTIMENTS`, attributed to the variant of the user's stored assignment; users without
    an assignment are left out. Every sentiment key is present (0 when absent).
    """
    sentiment = EVENTS.c.properties["sentiment"].as_string()
    per_user = (
        select(EVENTS.c.user_id.label("user_id"), sentiment.label("sentiment"), func.count().label("n"))
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type == EventType.FEEDBACK.value,
            sentiment.in_(SENTIMENTS),
            *_window(start, end),
        )
        .group_by(EVENTS.c.user_id, sentiment)
        .subquery("fb")
    )
    statement = (
        select(ASSIGNMENTS.c.variant_id, per_user.c.sentiment, func.sum(per_user.c.n))
        .select_from(
            per_user.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == experiment_id, ASSIGNMENTS.c.user_id == per_user.c.user_id),
            )
        )
        .group_by(ASSIGNMENTS.c.variant_id, per_user.c.sentiment)
    )
    out: dict[int, dict[str, int]] = {}
    for variant_id, label, count in _run(session, statement):
        out.setdefault(int(variant_id), dict.fromkeys(SENTIMENTS, 0))[str(label)] = int(count)
    return out


def metric_names(*, session: Session, experiment_id: int) -> list[str]:
    """Distinct ``metric_name`` values of the experiment's ``conversion`` events, sorted."""
    statement = (
        select(EVENTS.c.metric_name)
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type == EventType.CONVERSION.value,
            EVENTS.c.metric_name.is_not(None),
        )
        .distinct()
        .order_by(EVENTS.c.metric_name)
    )
    return [str(name) for (name,) in _run(session, statement)]


ATTRIBUTE_SAMPLE = 10_000


def attribute_names(*, session: Session, experiment_id: int, sample: int = ATTRIBUTE_SAMPLE) -> list[str]:
    """Attribute names passed at assignment time (the segments one can break results down by), sorted.

    Read from the JSON keys of the experiment's first ``sample`` assignments (callers pass
    the same attributes on every call, so a sample finds them without scanning millions of rows).
    """
    first = (
        select(ASSIGNMENTS.c.attributes)
        .where(ASSIGNMENTS.c.experiment_id == experiment_id)
        .order_by(ASSIGNMENTS.c.id)
        .limit(sample)
        .subquery("first_assignments")
    )
    # One row per JSON key: the set-returning json_object_keys on PostgreSQL, table-valued json_each on SQLite.
    if session.get_bind().dialect.name == "postgresql":
        statement = select(func.json_object_keys(first.c.attributes)).select_from(first)
    else:
        keys = func.json_each(first.c.attributes).table_valued("key")
        statement = select(keys.c.key).select_from(first).join(keys, literal(True))
    return sorted(str(key) for (key,) in _run(session, statement.distinct()))


@dataclass(frozen=True)
class ExperimentOverview:
    """One line of the experiment list: assigned users and the first/last event time (``None`` without events)."""

    experiment_id: int
    participants: int
    first_event_at: datetime | None
    last_event_at: datetime | None
    events: int = 0


def experiment_overview(*, session: Session) -> dict[int, ExperimentOverview]:
    """Participants and event time range of every experiment, in one query: ``{experiment_id: overview}``.

    Experiments without assignments or events are included with 0 and ``None``.
    """
    assigned = (
        select(ASSIGNMENTS.c.experiment_id, func.count().label("users"))
        .group_by(ASSIGNMENTS.c.experiment_id)
        .subquery()
    )
    events = (
        select(
            EVENTS.c.experiment_id,
            func.min(EVENTS.c.ts).label("first_ts"),
            func.max(EVENTS.c.ts).label("last_ts"),
            func.count().label("events"),
        )
        .group_by(EVENTS.c.experiment_id)
        .subquery()
    )
    statement = (
        select(
            EXPERIMENTS.c.id,
            func.coalesce(assigned.c.users, 0),
            events.c.first_ts,
            events.c.last_ts,
            func.coalesce(events.c.events, 0),
        )
        .select_from(
            EXPERIMENTS.outerjoin(assigned, assigned.c.experiment_id == EXPERIMENTS.c.id).outerjoin(
                events, events.c.experiment_id == EXPERIMENTS.c.id
            )
        )
        .order_by(EXPERIMENTS.c.id)
    )
    return {
        int(eid): ExperimentOverview(int(eid), int(users), as_utc(first), as_utc(last), int(n))
        for eid, users, first, last, n in _run(session, statement)
    }


@dataclass(frozen=True)
class VariantUsers:
    """One variant of the experiment list with its assigned users (0 when nobody is assigned yet)."""

    experiment_id: int
    variant_id: int
    name: str
    allocation_pct: float
    is_control: bool
    position: int
    users: int


def variant_users(*, session: Session) -> dict[int, list[VariantUsers]]:
    """Every variant of every experiment with its assigned users, in one query.

    ``{experiment_id: [VariantUsers, ...]}`` in form order (position, then id); experiments
    without variants are absent. Counts come from ``ab_user_assignments`` grouped by variant, so
    they equal :func:`participants` for the variants an experiment still has.
    """
    counts = (
        select(ASSIGNMENTS.c.variant_id, func.count().label("users"))
        .group_by(ASSIGNMENTS.c.variant_id)
        .subquery()
    )
    statement = (
        select(
            VARIANTS.c.experiment_id,
            VARIANTS.c.id,
            VARIANTS.c.name,
            VARIANTS.c.allocation_pct,
            VARIANTS.c.is_control,
            VARIANTS.c.position,
            func.coalesce(counts.c.users, 0),
        )
        .select_from(VARIANTS.outerjoin(counts, counts.c.variant_id == VARIANTS.c.id))
        .order_by(VARIANTS.c.experiment_id, VARIANTS.c.position, VARIANTS.c.id)
    )
    out: dict[int, list[VariantUsers]] = {}
    for eid, vid, name, pct, control, position, users in _run(session, statement):
        out.setdefault(int(eid), []).append(
            VariantUsers(int(eid), int(vid), str(name), float(pct), bool(control), int(position or 0), int(users))
        )
    return out


# --------------------------------------------------------------------------- analysis queries


_EXPOSURES = EVENTS.alias("expo")


def _conversion_filter(experiment_id: int, metrics: Sequence[str]) -> list[ColumnElement[bool]]:
    return [
        EVENTS.c.experiment_id == experiment_id,
        EVENTS.c.event_type == EventType.CONVERSION.value,
        EVENTS.c.metric_name.in_(list(metrics)),
    ]


def exposed_users(
    *,
    session: Session,
    experiment_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
    segment: str | None = None,
) -> dict[tuple[int, str | None], int]:
    """Users of the analysis population per variant (and segment): ``{(variant_id, segment): users}``.

    ``segment`` is ``None`` in the keys unless a segment attribute is given. Without a segment
    the count comes from the population of an :class:`AnalysisScope` (one pass over the exposures).
    """
    with AnalysisScope(session, experiment_id, start, end) as scope:
        return scope.exposed_users() if segment is None else scope.segment_users(segment)


@dataclass(frozen=True)
class MetricStats:
    """Sufficient statistics of one metric in one variant (and segment), users first.

    ``users`` is the number of exposed users (the denominator; users without events count
    as 0); ``converted`` counts users with a value >= 1; ``sum``/``sum_squares`` are over the
    per-user sums; ``non_binary_values`` counts analysed event values outside {0, 1}.
    """

    variant_id: int
    metric: str
    users: int
    users_with_events: int
    converted: int
    sum: float
    sum_squares: float
    non_binary_values: int
    segment: str | None = None

    @property
    def binary(self) -> BinarySummary:
        """The metric as a conversion: converted users out of exposed users."""
        return BinarySummary(n=self.users, conversions=self.converted)

    @property
    def summary(self) -> MeanSummary:
        """The metric as a per-user mean (zeros included)."""
        return MeanSummary(n=self.users, sum=self.sum, sum_squares=self.sum_squares)


def metric_stats(
    *,
    session: Session,
    experiment_id: int,
    metrics: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    segment: str | None = None,
    users: dict[tuple[int, str | None], int] | None = None,
) -> list[MetricStats]:
    """Per variant (and segment) and metric sufficient statistics, aggregated per user first, in SQL.

    One row per (variant, segment) of the population and metric in ``metrics`` (zeros when a
    variant has no events of a metric), ordered by segment, metric, variant. ``users`` may pass
    the result of :func:`exposed_users` for the same arguments to save its query.
    """
    if not metrics:
        return []
    if segment is None:
        with AnalysisScope(session, experiment_id, start, end) as scope:
            if users is None:
                return scope.metric_stats(metrics)
            found: dict[tuple[int, str, str | None], list[Any]] = {}
            for r in scope._user_metrics(metrics):
                acc = found.setdefault((r.variant_id, r.metric, None), [0, 0.0, 0.0, 0, 0])
                for i, x in enumerate((r.users, r.sum, r.sum_squares, r.converted, r.non_binary)):
                    acc[i] += x
            return _assemble_metric_stats(metrics, users, found)
    with AnalysisScope(session, experiment_id, start, end) as scope:
        sums = scope._segment_sums(metrics, segment)
        return _assemble_metric_stats(metrics, scope.segment_users(segment) if users is None else users, sums)


def covariate_stats(
    *,
    session: Session,
    experiment_id: int,
    metric: str,
    started_at: datetime,
    binary: bool,
    start: datetime | None = None,
    end: datetime | None = None,
    users: dict[tuple[int, str | None], int] | None = None,
) -> dict[int, CovariateSummary]:
    """CUPED sums per variant: ``y`` = the metric from ``max(started_at, start)`` to ``end``,
    ``x`` = the same metric before ``started_at`` (pre-experiment), per user first.

    Per-user values are sums (mean metrics) or 0/1 conversion indicators (``binary``);
    users without events count as 0 in both. ``n`` is the population size of the variant.
    """
    with AnalysisScope(session, experiment_id, start, end) as scope:
        return scope.covariate_stats(metric, started_at, binary, users=users)


@dataclass(frozen=True)
class PercentileStats:
    """Event-value distribution of one metric in one variant (population users, window applied).

    ``percentiles`` maps p (e.g. 95) to the nearest-rank percentile (rank ``ceil(p N / 100)``).
    """

    variant_id: int
    metric: str
    count: int
    min: float
    max: float
    mean: float
    percentiles: dict[int, float]


def percentile_stats(
    *,
    session: Session,
    experiment_id: int,
    metrics: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
    percentiles: Sequence[int] = PERCENTILES,
) -> list[PercentileStats]:
    """Nearest-rank percentiles of event values per variant and metric, ordered by metric and variant.

    Exact (rank ``ceil(p N / 100)`` of the sorted values, numpy ``inverted_cdf``); events with a
    NULL value are ignored; variants without values are absent. Computed by
    :meth:`AnalysisScope.percentile_stats` (binned counts, then only the bins holding a wanted rank).
    """
    if not metrics:
        return []
    with AnalysisScope(session, experiment_id, start, end) as scope:
        return scope.percentile_stats(metrics, percentiles)


@dataclass(frozen=True)
class DailyUsers:
    """Population users whose first exposure (in the window) fell on ``day`` (UTC)."""

    day: date
    variant_id: int
    new_users: int


def daily_users(
    *, session: Session, experiment_id: int, start: datetime | None = None, end: datetime | None = None
) -> list[DailyUsers]:
    """New exposed users per UTC day and variant (by first exposure), ordered by day and variant."""
    with AnalysisScope(session, experiment_id, start, end) as scope:
        return scope.daily_users()


@dataclass(frozen=True)
class DailyMetric:
    """Per UTC day, variant and metric: the sum of values (mean metrics) or the users converting
    for the first time that day (binary metrics), over population users."""

    day: date
    variant_id: int
    metric: str
    value: float


def daily_metric(
    *,
    session: Session,
    experiment_id: int,
    sum_metrics: Sequence[str] = (),
    binary_metrics: Sequence[str] = (),
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[DailyMetric]:
    """Daily aggregates for cumulative charts, ordered by day, metric, variant.

    ``sum_metrics``: sum of metric values per day; ``binary_metrics``: number of users whose
    first value >= 1 happened that day. Cumulating these in Python over the few day rows gives
    the running mean / conversion rate.
    """
    if not sum_metrics and not binary_metrics:
        return []
    with AnalysisScope(session, experiment_id, start, end) as scope:
        return scope.daily_metric(sum_metrics, binary_metrics)


@dataclass(frozen=True)
class ValueDistribution:
    """Histogram of a metric's event values per variant on shared bins.

    ``edges`` has ``bins + 1`` increasing values; ``counts[variant_id][i]`` counts values in
    ``[edges[i], edges[i + 1])`` (the last bin includes its right edge).
    """

    metric: str
    edges: tuple[float, ...]
    counts: dict[int, tuple[int, ...]]
    percentiles: dict[int, PercentileStats]


def value_distribution(
    *,
    session: Session,
    experiment_id: int,
    metric: str,
    bins: int = 30,
    start: datetime | None = None,
    end: datetime | None = None,
    percentiles: bool = True,
) -> ValueDistribution:
    """Histogram counts per variant computed in SQL (min/max first, then ``floor`` bucketing), plus
    nearest-rank percentiles (``percentiles=False``: none, and one pass fewer, for a chart that only
    draws the bins), on one :class:`AnalysisScope`. A metric without values gives empty ``edges`` and
    ``counts``."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    with AnalysisScope(session, experiment_id, start, end) as scope:
        stats = scope.percentile_stats([metric]) if percentiles else []
        ranges = {s.variant_id: (s.min, s.max) for s in stats} if percentiles else scope._value_ranges(metric)
        if not ranges:
            return ValueDistribution(metric=metric, edges=(), counts={}, percentiles={})
        lo = min(r[0] for r in ranges.values())
        hi = max(r[1] for r in ranges.values())
        width = (hi - lo) / bins if hi > lo else 1.0
        pop = scope.table
        raw_bucket = _floor((EVENTS.c.value - literal(lo, Float)) / literal(width, Float), scope.dialect)
        rows = (
            select(
                pop.c.variant_id.label("variant_id"),
                case((raw_bucket >= bins, bins - 1), else_=raw_bucket).label("bucket"),
                literal(1).label("n"),
            )
            .select_from(_OuterFirstJoin(EVENTS, pop, pop.c.user_id == EVENTS.c.user_id))
            .where(*_conversion_filter(experiment_id, [metric]), EVENTS.c.value.is_not(None), *_window(start, end))
        )
        found = _aggregate(
            session, rows, ["variant_id", "bucket"], {"n": "sum"}, radix=[scope.variant_radix, bins]
        )
    counts: dict[int, list[int]] = {variant_id: [0] * bins for variant_id in ranges}
    for variant_id, b, n in found:
        counts.setdefault(int(variant_id), [0] * bins)[min(max(int(b), 0), bins - 1)] += int(n)
    edges = tuple(lo + i * width for i in range(bins + 1))
    return ValueDistribution(
        metric=metric,
        edges=edges,
        counts={k: tuple(v) for k, v in counts.items()},
        percentiles={s.variant_id: s for s in stats},
    )


# --------------------------------------------------------------------------- analysis scope (one population per analysis)

#: Equal-width bins of the first percentile pass; the exact values are then read from the few bins holding a wanted rank.
PERCENTILE_BINS = 256


class _OuterFirstJoin(Join):
    """An inner join whose left side SQLite must scan first (``CROSS JOIN``: SQLite keeps the written order).

    The analysis queries scan the event index range once and look every row's user up in the
    population table by primary key; left to itself, SQLite's planner (without statistics for the
    temporary table) may instead seek the events once per population user, or materialize the
    per-user subquery before joining. Other backends get a plain ``JOIN``.
    """

    inherit_cache = True


@compiles(_OuterFirstJoin, "sqlite")
def _compile_outer_first_join(element: _OuterFirstJoin, compiler: Any, **kw: Any) -> str:
    kw["asfrom"] = True
    left = compiler.process(element.left, **kw)
    right = compiler.process(element.right, **kw)
    kw.pop("asfrom")
    return f"{left} CROSS JOIN {right} ON {compiler.process(element.onclause, **kw)}"


def _aggregate(
    session: Session,
    rows: Any,
    keys: Sequence[str],
    aggs: dict[str, str],
    radix: Sequence[int] | None = None,
) -> list[tuple[Any, ...]]:
    """Group the labelled columns of the ``rows`` select by ``keys`` and combine ``aggs`` (``sum``/``min``/``max``).

    Returns ``(*keys, *aggs)`` tuples in no particular order. PostgreSQL runs a plain ``GROUP BY``
    (hash aggregate). SQLite has no hash aggregate: its ``GROUP BY`` sorts every input row, which
    costs seconds on millions of rows, so the rows are folded into a temporary table keyed by
    the group (``INSERT ... ON CONFLICT DO UPDATE``: one lookup in a small B-tree per row). With
    ``radix`` (one bound per key; every key value an integer in ``[0, bound)``) the keys are packed
    into one integer, the table's rowid, which is several times faster than a composite key.
    Aggregated values must not be NULL except for ``min``/``max``; key values must not be NULL.
    """
    sub = rows.subquery("agg_in")
    if _dialect(session) != "sqlite":
        fns = {"sum": func.sum, "min": func.min, "max": func.max}
        statement = select(
            *[sub.c[k] for k in keys], *[fns[how](sub.c[name]).label(name) for name, how in aggs.items()]
        ).group_by(*[sub.c[k] for k in keys])
        return [tuple(r) for r in _run(session, statement)]
    from sqlalchemy import Column, MetaData, Table, text
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert
    from sqlalchemy.types import NullType

    packed = radix is not None and math.prod(radix) < 2**62
    name = f"abq_agg_{uuid.uuid4().hex[:12]}"
    columns = ["k", *aggs] if packed else [*keys, *aggs]
    quoted = ", ".join(f'"{c}"' for c in aggs)
    if packed:
        ddl = f'CREATE TEMP TABLE "{name}" (k INTEGER PRIMARY KEY, {quoted})'
        key: Any = sub.c[keys[0]]
        for k, bound in zip(keys[1:], radix[1:], strict=True):  # type: ignore[index]
            key = key * bound + sub.c[k]
        selected = [key.label("k"), *[sub.c[c] for c in aggs]]
    else:
        pk = ", ".join(f'"{k}"' for k in keys)
        ddl = f'CREATE TEMP TABLE "{name}" ({pk}, {quoted}, PRIMARY KEY ({pk})) WITHOUT ROWID'
        selected = [sub.c[c] for c in columns]
    connection = session.connection()
    connection.execute(text(ddl))
    try:
        table = Table(name, MetaData(), *[Column(c, NullType()) for c in columns])
        insert = sqlite_insert(table).from_select(columns, select(*selected).where(literal(1) == 1))
        updates: dict[str, Any] = {}
        for col, how in aggs.items():
            old, new = table.c[col], insert.excluded[col]
            if how == "sum":
                updates[col] = old + new
            else:
                pick = func.min if how == "min" else func.max
                updates[col] = pick(func.coalesce(old, new), func.coalesce(new, old))
        target = ["k"] if packed else list(keys)
        connection.execute(insert.on_conflict_do_update(index_elements=target, set_=updates))
        found = [tuple(r) for r in connection.execute(select(table))]
    except BaseException:
        with contextlib.suppress(Exception):
            connection.execute(text(f'DROP TABLE IF EXISTS temp."{name}"'))
        raise
    connection.execute(text(f'DROP TABLE IF EXISTS temp."{name}"'))
    if not packed:
        return found
    out: list[tuple[Any, ...]] = []
    for k, *values in found:
        parts: list[int] = []
        for bound in reversed(radix[1:]):  # type: ignore[index]
            k, part = divmod(int(k), bound)
            parts.append(part)
        out.append((k, *reversed(parts), *values))
    return out


@dataclass(frozen=True)
class _UserMetricRow:
    variant_id: int
    metric: str
    first_day: Any  # the UTC day of the user's first value >= 1 ('' / None when never)
    users: int
    sum: float
    sum_squares: float
    converted: int
    non_binary: int
    value_min: float | None  # of the non-NULL event values
    value_max: float | None


class AnalysisScope:
    """The analysis population of one experiment and window, computed once and shared by the analysis queries.

    On entry it fills a temporary table (unique name, dropped on exit, same connection) with one
    row per population user: ``user_id`` (primary key), ``variant_id`` (from the stored
    assignment) and the UTC day of the first exposure in the window, by one pass over the
    exposure events. The methods then join the metric events to it by primary key instead of
    checking the exposure per event, and fold events per user in one pass per metric set.
    Results are identical to the standalone functions (:func:`daily_users`, :func:`metric_stats`,
    :func:`daily_metric`, :func:`percentile_stats`), which use a scope themselves.

    Use as a context manager inside a session: ``with AnalysisScope(session, exp_id, start, end) as s:``.
    """

    def __init__(self, session: Session, experiment_id: int, start: datetime | None, end: datetime | None) -> None:
        self.session = session
        self.experiment_id = experiment_id
        self.start = start
        self.end = end
        self.dialect = _dialect(session)
        self.name = f"abq_pop_{uuid.uuid4().hex[:12]}"
        self._user_rows: dict[tuple[str, ...], list[_UserMetricRow]] = {}
        self._event_rows: dict[tuple[tuple[str, ...], bool, bool], Any] = {}
        self._daily_users: list[DailyUsers] | None = None
        self._mode: dict[str, str] = {}  # metric -> "mean" | "binary": what its per-user pass computed
        self._ranges: dict[str, dict[int, tuple[float, float]]] = {}
        self._created = False

    # -- lifecycle
    def __enter__(self) -> AnalysisScope:
        from sqlalchemy import Column, MetaData, String, Table

        day_type: Any = Integer() if self.dialect == "sqlite" else Date()  # YYYYMMDD on SQLite
        self.table = Table(
            self.name,
            MetaData(),
            Column("user_id", String(255), primary_key=True),
            Column("variant_id", Integer, nullable=False),
            Column("first_day", day_type, nullable=False),
            prefixes=["TEMPORARY"],
            sqlite_with_rowid=False,
        )
        connection = self.session.connection()
        self.table.create(connection)
        self._created = True
        first = (
            select(EVENTS.c.user_id.label("user_id"), func.min(EVENTS.c.ts).label("first_ts"))
            .where(
                EVENTS.c.experiment_id == self.experiment_id,
                EVENTS.c.event_type == EventType.EXPOSURE.value,
                *_window(self.start, self.end),
            )
            .group_by(EVENTS.c.user_id)
            .subquery("fe")
        )
        rows = select(
            ASSIGNMENTS.c.user_id, ASSIGNMENTS.c.variant_id, _day_number(first.c.first_ts, self.dialect)
        ).select_from(
            first.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == self.experiment_id, ASSIGNMENTS.c.user_id == first.c.user_id),
            )
        )
        if self.dialect == "sqlite":
            # Per assignment, the first exposure is one index seek (min/max optimisation on
            # (experiment_id, event_type, user_id, ts)) instead of grouping every exposure event;
            # users without one get a NULL day, which INSERT OR IGNORE skips (NOT NULL column).
            first_ts = (
                select(func.min(_EXPOSURES.c.ts))
                .where(
                    _EXPOSURES.c.experiment_id == self.experiment_id,
                    _EXPOSURES.c.event_type == EventType.EXPOSURE.value,
                    _EXPOSURES.c.user_id == ASSIGNMENTS.c.user_id,
                    *_window(self.start, self.end, _EXPOSURES.c.ts),
                )
                .scalar_subquery()
            )
            rows = select(
                ASSIGNMENTS.c.user_id, ASSIGNMENTS.c.variant_id, _day_number(first_ts, self.dialect)
            ).where(ASSIGNMENTS.c.experiment_id == self.experiment_id)
            insert = self.table.insert().prefix_with("OR IGNORE")
        else:
            insert = self.table.insert()
        connection.execute(insert.from_select(["user_id", "variant_id", "first_day"], rows))
        if self.dialect == "postgresql":
            from sqlalchemy import text

            connection.execute(text(f'ANALYZE "{self.name}"'))  # temp tables get no autovacuum statistics
        top = connection.execute(select(func.max(self.table.c.variant_id))).scalar()
        self.variant_radix = max(int(top or 0), 0) + 1  # variant ids are positive integers
        return self

    def __exit__(self, *exc: object) -> None:
        if self._created:
            self._created = False
            try:
                self.table.drop(self.session.connection())
            except Exception:  # noqa: BLE001 - a failed transaction drops it on rollback anyway
                if exc[0] is None:
                    raise

    # -- queries
    def daily_users(self) -> list[DailyUsers]:
        """New exposed users per UTC day and variant (by first exposure), ordered by day and variant."""
        if self._daily_users is None:
            pop = self.table
            rows = select(pop.c.first_day.label("day"), pop.c.variant_id.label("variant_id"),
                          literal(1).label("n"))
            found = _aggregate(
                self.session, rows, ["day", "variant_id"], {"n": "sum"}, radix=[DAY_RADIX, self.variant_radix]
            )
            self._daily_users = sorted(
                (DailyUsers(_as_date(d), int(v), int(n)) for d, v, n in found), key=lambda r: (r.day, r.variant_id)
            )
        return list(self._daily_users)

    def exposed_users(self) -> dict[tuple[int, str | None], int]:
        """Population users per variant: ``{(variant_id, None): users}``."""
        totals: dict[tuple[int, str | None], int] = {}
        for row in self.daily_users():
            totals[(row.variant_id, None)] = totals.get((row.variant_id, None), 0) + row.new_users
        return totals

    def _user_metrics(self, metrics: Sequence[str]) -> list[_UserMetricRow]:
        """One pass over the metric events: per user first, then per (variant, metric, first conversion day)."""
        key = tuple(sorted(set(metrics)))
        if not key:
            return []
        for cached, rows in self._user_rows.items():
            if set(key) <= set(cached):
                return rows if cached == key else [r for r in rows if r.metric in key]
        out: list[_UserMetricRow] = []
        for metric in key:  # one index range per metric: the per-user groups stream in index order
            out += self._user_metric_pass(metric)
        self._user_rows[key] = out
        return out

    def _looks_non_binary(self, metric: str, sample: int = 10_000) -> bool:
        """Whether one of the first ``sample`` event values of ``metric`` in the window (index order)
        is outside {0, 1} (NULL counts as 1): a cheap guess of the metric's kind. The guess only
        decides which aggregates the per-user pass computes; results are exact either way."""
        head = (
            select(EVENTS.c.value.label("value"))
            .where(*_conversion_filter(self.experiment_id, [metric]), *_window(self.start, self.end))
            .limit(sample)
            .subquery("head")
        )
        probe = select(literal(1)).where(head.c.value.not_in([0.0, 1.0])).limit(1)
        return _run(self.session, probe).first() is not None

    def _user_metric_pass(self, metric: str) -> list[_UserMetricRow]:
        """Per user first (an index-ordered stream), then per (variant, first conversion day).

        Aggregates are costly per event, so the pass computes what the metric's kind (as guessed
        by :meth:`_looks_non_binary`) needs besides the sums and the non-0/1 count: a mean metric
        gets the value range for percentile bins and no first-conversion day; a 0/1 metric gets the
        first-conversion day (the daily chart) and no range. Whatever the other kind would need is
        computed on demand by a separate query (:meth:`_first_days`, :meth:`_value_ranges`)."""
        mean = self._looks_non_binary(metric)
        self._mode[metric] = "mean" if mean else "binary"
        value = _metric_value()
        if self.dialect == "sqlite":  # fewer per-row expressions: NULL (= 1) is binary, sum() skips it
            non_binary: Any = func.coalesce(func.sum(EVENTS.c.value.not_in([0.0, 1.0])), 0)
        else:
            non_binary = func.sum(case((value.in_([0.0, 1.0]), 0), else_=1))
        columns: list[Any] = [
            EVENTS.c.user_id.label("user_id"), func.sum(value).label("v"), non_binary.label("nb")
        ]
        if mean:
            columns += [
                func.max(value).label("vmax"),
                func.min(EVENTS.c.value).label("rmin"),
                func.max(EVENTS.c.value).label("rmax"),
            ]
        else:
            # NULL counts as 1: "value < 1" is NULL then, so the ELSE branch keeps the timestamp.
            columns.append(func.min(case((EVENTS.c.value < 1, None), else_=EVENTS.c.ts)).label("first_ts"))
        per_user = (
            select(*columns)
            .where(*_conversion_filter(self.experiment_id, [metric]), *_window(self.start, self.end))
            .group_by(EVENTS.c.user_id)
            .subquery("pu")
        )
        pop = self.table
        if mean:
            first_day: Any = literal(0)  # not computed (see _first_days)
            converted: Any = case((per_user.c.vmax >= 1, 1), else_=0)
            extra = [per_user.c.rmin.label("rmin"), per_user.c.rmax.label("rmax")]
            extra_aggs = {"rmin": "min", "rmax": "max"}
        else:
            first_day = _day_number(per_user.c.first_ts, self.dialect)
            if self.dialect == "sqlite":
                first_day = func.coalesce(first_day, literal(0))
            converted = case((per_user.c.first_ts.is_not(None), 1), else_=0)
            extra, extra_aggs = [], {}
        rows = select(
            pop.c.variant_id.label("variant_id"),
            first_day.label("first_day"),
            literal(1).label("users"),
            per_user.c.v.label("s"),
            (per_user.c.v * per_user.c.v).label("ss"),
            converted.label("conv"),
            per_user.c.nb.label("nb"),
            *extra,
        ).select_from(_OuterFirstJoin(per_user, pop, pop.c.user_id == per_user.c.user_id))
        aggs = {"users": "sum", "s": "sum", "ss": "sum", "conv": "sum", "nb": "sum", **extra_aggs}
        found = _aggregate(
            self.session, rows, ["variant_id", "first_day"], aggs, radix=[self.variant_radix, DAY_RADIX]
        )
        out = []
        for row in found:
            v, d, n, s, ss, conv, nb = row[:7]
            lo, hi = row[7:] if mean else (None, None)
            out.append(
                _UserMetricRow(
                    variant_id=int(v), metric=metric, first_day=d, users=int(n), sum=float(s or 0.0),
                    sum_squares=float(ss or 0.0), converted=int(conv or 0), non_binary=int(nb or 0),
                    value_min=None if lo is None else float(lo), value_max=None if hi is None else float(hi),
                )
            )
        return out

    def _first_days(self, metric: str) -> dict[tuple[Any, int], int]:
        """``{(first conversion day, variant_id): users}`` of ``metric`` (users with a value >= 1 only)."""
        self._user_metrics([metric])
        if self._mode.get(metric) == "binary":
            counts: dict[tuple[Any, int], int] = {}
            for r in self._user_metrics([metric]):
                if r.first_day not in (None, 0):
                    counts[(r.first_day, r.variant_id)] = counts.get((r.first_day, r.variant_id), 0) + r.users
            return counts
        per_user = (
            select(
                EVENTS.c.user_id.label("user_id"),
                func.min(case((EVENTS.c.value < 1, None), else_=EVENTS.c.ts)).label("first_ts"),
            )
            .where(*_conversion_filter(self.experiment_id, [metric]), *_window(self.start, self.end))
            .group_by(EVENTS.c.user_id)
            .subquery("pu")
        )
        pop = self.table
        rows = (
            select(
                _day_number(per_user.c.first_ts, self.dialect).label("first_day"),
                pop.c.variant_id.label("variant_id"),
                literal(1).label("users"),
            )
            .select_from(_OuterFirstJoin(per_user, pop, pop.c.user_id == per_user.c.user_id))
            .where(per_user.c.first_ts.is_not(None))
        )
        found = _aggregate(
            self.session, rows, ["first_day", "variant_id"], {"users": "sum"}, radix=[DAY_RADIX, self.variant_radix]
        )
        return {(d, int(v)): int(n) for d, v, n in found}

    def _segment_join(self, source: Any, user_id: Any) -> Any:
        pop = self.table
        return _OuterFirstJoin(source, pop, pop.c.user_id == user_id).join(
            ASSIGNMENTS,
            and_(ASSIGNMENTS.c.experiment_id == self.experiment_id, ASSIGNMENTS.c.user_id == pop.c.user_id),
        )

    def segment_users(self, segment: str) -> dict[tuple[int, str | None], int]:
        """Population users per variant and value of the assignment attribute ``segment``."""
        rows = select(
            self.table.c.variant_id.label("variant_id"),
            segment_expression(segment).label("segment"),
            literal(1).label("n"),
        ).select_from(
            self.table.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == self.experiment_id, ASSIGNMENTS.c.user_id == self.table.c.user_id),
            )
        )
        found = _aggregate(self.session, rows, ["variant_id", "segment"], {"n": "sum"})
        return {(int(v), str(seg)): int(n) for v, seg, n in found}

    def segment_metric_stats(self, metrics: Sequence[str], segment: str) -> list[MetricStats]:
        """As :func:`metric_stats` with a segment, on this scope's population (one pass per metric)."""
        return _assemble_metric_stats(metrics, self.segment_users(segment), self._segment_sums(metrics, segment))

    def _segment_sums(self, metrics: Sequence[str], segment: str) -> dict[tuple[int, str, str | None], Any]:
        value = _metric_value()
        found: dict[tuple[int, str, str | None], tuple[Any, ...]] = {}
        for metric in dict.fromkeys(metrics):
            per_user = (
                select(
                    EVENTS.c.user_id.label("user_id"),
                    func.sum(value).label("v"),
                    func.max(value).label("vmax"),
                    func.sum(case((value.in_([0.0, 1.0]), 0), else_=1)).label("nb"),
                )
                .where(*_conversion_filter(self.experiment_id, [metric]), *_window(self.start, self.end))
                .group_by(EVENTS.c.user_id)
                .subquery("pu")
            )
            rows = select(
                self.table.c.variant_id.label("variant_id"),
                segment_expression(segment).label("segment"),
                literal(1).label("users"),
                per_user.c.v.label("s"),
                (per_user.c.v * per_user.c.v).label("ss"),
                case((per_user.c.vmax >= 1, 1), else_=0).label("conv"),
                per_user.c.nb.label("nb"),
            ).select_from(self._segment_join(per_user, per_user.c.user_id))
            aggs = {"users": "sum", "s": "sum", "ss": "sum", "conv": "sum", "nb": "sum"}
            for v, seg, *sums in _aggregate(self.session, rows, ["variant_id", "segment"], aggs):
                found[(int(v), metric, str(seg))] = tuple(sums)
        return found

    def covariate_stats(
        self,
        metric: str,
        started_at: datetime,
        binary: bool,
        users: dict[tuple[int, str | None], int] | None = None,
    ) -> dict[int, CovariateSummary]:
        """As :func:`covariate_stats`, on this scope's population (its ``start``/``end``)."""
        value = _metric_value()
        start, end = self.start, self.end
        y_start = max(as_utc(started_at), as_utc(start)) if start is not None else as_utc(started_at)  # type: ignore[type-var]
        in_y = and_(*_window(y_start, end))
        in_x = EVENTS.c.ts < _bind_ts(started_at)
        if binary:
            y = func.max(case((and_(in_y, value >= 1), 1.0), else_=0.0))
            x = func.max(case((and_(in_x, value >= 1), 1.0), else_=0.0))
        else:
            y = func.sum(case((in_y, value), else_=0.0))
            x = func.sum(case((in_x, value), else_=0.0))
        per_user = (
            select(EVENTS.c.user_id.label("user_id"), y.label("y"), x.label("x"))
            .where(*_conversion_filter(self.experiment_id, [metric]), *_window(None, end))
            .group_by(EVENTS.c.user_id)
            .subquery("pu")
        )
        pop = self.table
        rows = select(
            pop.c.variant_id.label("variant_id"),
            per_user.c.y.label("sy"),
            (per_user.c.y * per_user.c.y).label("sy2"),
            per_user.c.x.label("sx"),
            (per_user.c.x * per_user.c.x).label("sx2"),
            (per_user.c.x * per_user.c.y).label("sxy"),
        ).select_from(_OuterFirstJoin(per_user, pop, pop.c.user_id == per_user.c.user_id))
        aggs = dict.fromkeys(["sy", "sy2", "sx", "sx2", "sxy"], "sum")
        found = _aggregate(self.session, rows, ["variant_id"], aggs, radix=[self.variant_radix])
        sums = {int(r[0]): [float(v or 0.0) for v in r[1:]] for r in found}
        out: dict[int, CovariateSummary] = {}
        for (variant_id, _seg), n in sorted((self.exposed_users() if users is None else users).items()):
            sy, sy2, sx, sx2, sxy = sums.get(variant_id, [0.0] * 5)
            out[variant_id] = CovariateSummary(n=n, sum_y=sy, sum_y2=sy2, sum_x=sx, sum_x2=sx2, sum_xy=sxy)
        return out

    def metric_stats(self, metrics: Sequence[str]) -> list[MetricStats]:
        """As :func:`metric_stats` without a segment, on this scope's population."""
        if not metrics:
            return []
        found: dict[tuple[int, str, str | None], list[Any]] = {}
        for r in self._user_metrics(metrics):
            acc = found.setdefault((r.variant_id, r.metric, None), [0, 0.0, 0.0, 0, 0])
            acc[0] += r.users
            acc[1] += r.sum
            acc[2] += r.sum_squares
            acc[3] += r.converted
            acc[4] += r.non_binary
        return _assemble_metric_stats(metrics, self.exposed_users(), found)

    def _value_ranges(self, metric: str) -> dict[int, tuple[float, float]]:
        """``{variant_id: (min, max)}`` of the non-NULL event values of ``metric`` (variants with values)."""
        self._user_metrics([metric])
        if self._mode.get(metric) == "binary":  # the per-user pass skipped the range: one query for it
            if metric not in self._ranges:
                pop = self.table
                rows = (
                    select(
                        pop.c.variant_id.label("variant_id"),
                        EVENTS.c.value.label("lo"),
                        EVENTS.c.value.label("hi"),
                    )
                    .select_from(_OuterFirstJoin(EVENTS, pop, pop.c.user_id == EVENTS.c.user_id))
                    .where(
                        *_conversion_filter(self.experiment_id, [metric]),
                        *_window(self.start, self.end),
                        EVENTS.c.value.is_not(None),
                    )
                )
                found = _aggregate(
                    self.session, rows, ["variant_id"], {"lo": "min", "hi": "max"}, radix=[self.variant_radix]
                )
                self._ranges[metric] = {int(v): (float(lo), float(hi)) for v, lo, hi in found}
            return dict(self._ranges[metric])
        out: dict[int, tuple[float, float]] = {}
        for r in self._user_metrics([metric]):
            if r.metric != metric or r.value_min is None or r.value_max is None:
                continue
            lo, hi = out.get(r.variant_id, (r.value_min, r.value_max))
            out[r.variant_id] = (min(lo, r.value_min), max(hi, r.value_max))
        return out

    def _bin(self, metric: str) -> tuple[ColumnElement[Any], float, float] | None:
        """The percentile bin of an event value of ``metric`` (0 .. PERCENTILE_BINS - 1), with the range used."""
        ranges = self._value_ranges(metric)
        if not ranges:
            return None
        lo = min(r[0] for r in ranges.values())
        hi = max(r[1] for r in ranges.values())
        if hi <= lo:
            return literal(0), lo, hi
        width = (hi - lo) / PERCENTILE_BINS
        raw = _floor((EVENTS.c.value - literal(lo, Float)) / literal(width, Float), self.dialect)
        if self.dialect == "sqlite":  # scalar min(): one evaluation of the division per row; NULL stays NULL
            return func.min(raw, PERCENTILE_BINS - 1), lo, hi
        return case((raw >= PERCENTILE_BINS, PERCENTILE_BINS - 1), else_=raw), lo, hi

    def _event_pass(self, metric: str, by_day: bool, by_bin: bool) -> list[tuple[Any, int, int, int, float]]:
        """One pass over the events of ``metric``: ``(day, variant_id, bin, events, value sum)`` rows.

        ``bin`` is -1 for NULL values (summed as 1) and the percentile bin otherwise; ``day`` is
        constant unless ``by_day``, ``bin`` is 0 for every non-NULL value unless ``by_bin``.
        """
        cache_key = ((metric,), by_day, by_bin)
        if cache_key in self._event_rows:
            return self._event_rows[cache_key]
        binned = self._bin(metric) if by_bin else None
        bin_expr: Any = binned[0] if binned is not None else literal(0)
        pop = self.table
        day: Any = _day_number(EVENTS.c.ts, self.dialect) if by_day else literal(0)
        if self.dialect == "sqlite" and binned is not None and binned[2] > binned[1]:  # NULL value -> NULL bin -> 0
            code: Any = func.coalesce(bin_expr + 1, 0)
        else:
            code = case((EVENTS.c.value.is_(None), 0), else_=bin_expr + 1)
        rows = (
            select(
                day.label("day"),
                pop.c.variant_id.label("variant_id"),
                code.label("bin"),  # shifted: keys >= 0
                literal(1).label("n"),
                _metric_value().label("s"),
            )
            .select_from(_OuterFirstJoin(EVENTS, pop, pop.c.user_id == EVENTS.c.user_id))
            .where(*_conversion_filter(self.experiment_id, [metric]), *_window(self.start, self.end))
        )
        radix = [DAY_RADIX, self.variant_radix, PERCENTILE_BINS + 1]
        found = [
            (d, int(v), int(b) - 1, int(n), float(s or 0.0))
            for d, v, b, n, s in _aggregate(
                self.session, rows, ["day", "variant_id", "bin"], {"n": "sum", "s": "sum"}, radix=radix
            )
        ]
        self._event_rows[cache_key] = found
        return found

    def daily_metric(
        self, sum_metrics: Sequence[str] = (), binary_metrics: Sequence[str] = (), *, with_bins: bool = False
    ) -> list[DailyMetric]:
        """As :func:`daily_metric`, on this scope's population (``with_bins``: share the pass with percentiles)."""
        out: list[DailyMetric] = []
        for metric in dict.fromkeys(sum_metrics):
            sums: dict[tuple[Any, int], float] = {}
            for d, v, _b, _n, s in self._event_pass(metric, True, with_bins):
                sums[(d, v)] = sums.get((d, v), 0.0) + s
            out += [DailyMetric(_as_date(d), v, metric, x) for (d, v), x in sums.items()]
        if binary_metrics:
            self._user_metrics(binary_metrics)
            for metric in dict.fromkeys(binary_metrics):
                out += [
                    DailyMetric(_as_date(d), v, metric, float(n)) for (d, v), n in self._first_days(metric).items()
                ]
        out.sort(key=lambda r: (r.day, r.metric, r.variant_id))
        return out

    def percentile_stats(
        self, metrics: Sequence[str], percentiles: Sequence[int] = PERCENTILES, *, by_day: bool = False
    ) -> list[PercentileStats]:
        """As :func:`percentile_stats`, on this scope's population.

        Exact nearest-rank values without sorting every event: a first pass counts the values
        per variant in :data:`PERCENTILE_BINS` equal-width bins over [min, max]; the bin holding
        rank ``ceil(p N / 100)`` and the rank inside it follow from the cumulative counts; a second
        pass reads only the values of those bins and ranks them (``row_number()``) in SQL.
        ``by_day`` shares the first pass with :meth:`daily_metric` (same rows, grouped by day too).
        """
        out: list[PercentileStats] = []
        self._user_metrics(metrics)  # one per-user pass for all of them (or the one metric_stats made)
        for metric in dict.fromkeys(metrics):
            ranges = self._value_ranges(metric)
            if not ranges:
                continue
            binned = self._bin(metric)
            assert binned is not None
            counts: dict[tuple[int, int], int] = {}
            per_variant: dict[int, list[Any]] = {v: [0, 0.0, lo, hi] for v, (lo, hi) in ranges.items()}
            for _d, v, b, n, s in self._event_pass(metric, by_day, True):
                if b >= 0:  # non-NULL values: count and sum per variant, counts per bin
                    counts[(v, b)] = counts.get((v, b), 0) + n
                    per_variant[v][0] += n
                    per_variant[v][1] += s
            # (variant, bin, rank within the bin) of every wanted percentile
            wanted: dict[tuple[int, int], tuple[int, int, int]] = {}
            for v, (n, _sum, _lo, _hi) in per_variant.items():
                bins = sorted((b, c) for (vv, b), c in counts.items() if vv == v)
                for p in percentiles:
                    rank = max(1, (n * int(p) + 99) // 100)
                    seen = 0
                    for b, c in bins:
                        if seen + c >= rank:
                            wanted[(v, int(p))] = (v, b, rank - seen)
                            break
                        seen += c
            values = self._values_at(metric, binned, wanted.values())
            for v in sorted(per_variant):
                n, total, lo, hi = per_variant[v]
                out.append(
                    PercentileStats(
                        variant_id=v, metric=metric, count=n, min=lo, max=hi, mean=total / n,
                        percentiles={int(p): values[wanted[(v, int(p))]] for p in percentiles},
                    )
                )
        out.sort(key=lambda s: (s.metric, s.variant_id))
        return out

    def _values_at(
        self, metric: str, binned: tuple[ColumnElement[Any], float, float], wanted: Any
    ) -> dict[tuple[int, int, int], float]:
        """The value at rank ``r`` (1-based, ascending) inside bin ``b`` of variant ``v``, for each ``(v, b, r)``.

        ``binned`` is :meth:`_bin`'s ``(expression, min, max)``; the exact bin test is the same
        expression as in the counting pass. A cheaper range test on the value (each bin's edges
        widened by a margin far above rounding error, so a superset) runs first.
        """
        from sqlalchemy import or_

        wanted = set(wanted)
        if not wanted:
            return {}
        bin_expr, lo, hi = binned
        pop = self.table
        bins = sorted({b for _v, b, _r in wanted})
        prefilter: list[ColumnElement[bool]] = []
        if hi > lo:
            width = (hi - lo) / PERCENTILE_BINS
            margin = width * 1e-3
            prefilter.append(
                or_(*[EVENTS.c.value.between(lo + b * width - margin, lo + (b + 1) * width + margin) for b in bins])
            )
        inner = (
            select(pop.c.variant_id.label("variant_id"), bin_expr.label("bin"), EVENTS.c.value.label("value"))
            .select_from(_OuterFirstJoin(EVENTS, pop, pop.c.user_id == EVENTS.c.user_id))
            .where(
                *_conversion_filter(self.experiment_id, [metric]),
                EVENTS.c.value.is_not(None),
                *prefilter,
                *_window(self.start, self.end),
                bin_expr.in_(bins),
            )
            .subquery("inbin")
        )
        ranked = select(
            inner.c.variant_id,
            inner.c.bin,
            inner.c.value,
            func.row_number()
            .over(partition_by=[inner.c.variant_id, inner.c.bin], order_by=inner.c.value)
            .label("rn"),
        ).subquery("ranked")
        condition = or_(
            *[and_(ranked.c.variant_id == v, ranked.c.bin == b, ranked.c.rn == r) for v, b, r in sorted(wanted)]
        )
        statement = select(ranked.c.variant_id, ranked.c.bin, ranked.c.rn, ranked.c.value).where(condition)
        return {(int(v), int(b), int(r)): float(x) for v, b, r, x in _run(self.session, statement)}


def _assemble_metric_stats(
    metrics: Sequence[str],
    users: dict[tuple[int, str | None], int],
    found: dict[tuple[int, str, str | None], Any],
) -> list[MetricStats]:
    out: list[MetricStats] = []
    for (variant_id, seg), n in sorted(users.items(), key=lambda kv: (kv[0][1] or "", kv[0][0])):
        for metric in metrics:
            with_events, total, total_sq, converted, non_binary = found.get((variant_id, metric, seg), (0, 0, 0, 0, 0))
            out.append(
                MetricStats(
                    variant_id=variant_id,
                    metric=metric,
                    users=n,
                    users_with_events=int(with_events or 0),
                    converted=int(converted or 0),
                    sum=float(total or 0.0),
                    sum_squares=float(total_sq or 0.0),
                    non_binary_values=int(non_binary or 0),
                    segment=seg,
                )
            )
    out.sort(key=lambda m: (m.segment or "", m.metric, m.variant_id))
    return out


# --------------------------------------------------------------------------- HTTP API helpers


def assigned_variant(*, session: Session, experiment_id: int, user_id: str) -> int | None:
    """The variant id of ``user_id``'s stored assignment in the experiment, or None when it has none."""
    statement = select(ASSIGNMENTS.c.variant_id).where(
        ASSIGNMENTS.c.experiment_id == experiment_id, ASSIGNMENTS.c.user_id == user_id
    )
    value = _run(session, statement).scalar()
    return None if value is None else int(value)


def event_counts(
    *,
    session: Session,
    experiment_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[tuple[int, str, str | None], int]:
    """Exposure and conversion *events* (not users) per variant: ``{(variant_id, event_type, metric_name): n}``.

    The variant is the one of the user's stored assignment (events of users without one are left
    out, as in the analysis); ``metric_name`` is None for exposures. Events are filtered by
    ``[start, end)`` like the analysis queries.
    """
    metric = case((EVENTS.c.event_type == EventType.EXPOSURE.value, literal(None)), else_=EVENTS.c.metric_name)
    statement = (
        select(ASSIGNMENTS.c.variant_id, EVENTS.c.event_type, metric.label("metric"), func.count())
        .select_from(
            EVENTS.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == EVENTS.c.experiment_id, ASSIGNMENTS.c.user_id == EVENTS.c.user_id),
            )
        )
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type.in_([EventType.EXPOSURE.value, EventType.CONVERSION.value]),
            *_window(start, end),
        )
        .group_by(ASSIGNMENTS.c.variant_id, EVENTS.c.event_type, metric)
    )
    return {
        (int(v), str(kind), None if name is None else str(name)): int(n) for v, kind, name, n in _run(session, statement)
    }


def event_total(*, session: Session, experiment_id: int) -> int:
    """The number of stored events of the experiment (every type; 0 when it has none).

    The dashboard's ``auto`` engine choice (:func:`abcore.config.choose_analysis_engine`) compares it
    with ``ABCORE_DUCKDB_MIN_EVENTS``; one index-only count on ``experiment_id``.
    """
    value = _run(session, select(func.count()).select_from(EVENTS).where(EVENTS.c.experiment_id == experiment_id)).scalar()
    return int(value or 0)
