"""All aggregation SQL of abcore, returning small frozen dataclasses.

Every function takes the SQLModel ``Session`` as the keyword ``session`` and runs the
same SQLAlchemy Core statement on SQLite (>= 3.25, for window functions) and
PostgreSQL. Raw events never travel to Python: the database aggregates per user
first, then per variant (and metric, day or segment), and Python receives a few
rows of sufficient statistics.

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

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, Float, Integer, and_, case, cast, exists, func, literal, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from abcore.models import EventType, Experiment, ExperimentEvent, UserAssignment, Variant
from abcore.stats import BinarySummary, CovariateSummary, MeanSummary

__all__ = [
    "PERCENTILES",
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
    "assignments_per_day",
    "experiment_overview",
    "feedback_counts",
    "latest_event_id",
    "metric_names",
    "participants",
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
    return date.fromisoformat(str(value)[:10])


def _day(column: Any, dialect: str) -> ColumnElement[Any]:
    """The UTC calendar day of a timestamp column (text ``YYYY-MM-DD`` on SQLite, ``date`` on Postgres)."""
    if dialect == "sqlite":
        return func.substr(column, 1, 10)
    return cast(func.timezone("UTC", column), Date)


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


def segment_expression(segment: str) -> ColumnElement[str]:
    """The assignment attribute ``segment`` as text (JSON path; ``'(none)'`` when missing)."""
    return func.coalesce(ASSIGNMENTS.c.attributes[segment].as_string(), literal("(none)"))


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


# --------------------------------------------------------------------------- analysis queries


_EXPOSURES = EVENTS.alias("expo")


def _exposed(experiment_id: int, user_id: Any, start: datetime | None, end: datetime | None) -> ColumnElement[bool]:
    """``user_id`` has at least one exposure event in the window (an index seek per user)."""
    return exists(
        select(literal(1)).where(
            _EXPOSURES.c.experiment_id == experiment_id,
            _EXPOSURES.c.event_type == EventType.EXPOSURE.value,
            _EXPOSURES.c.user_id == user_id,
            *_window(start, end, _EXPOSURES.c.ts),
        )
    )


def _population(
    source: Any, user_id: Any, experiment_id: int, start: datetime | None, end: datetime | None
) -> tuple[Any, ColumnElement[bool]]:
    """Join ``source`` to its user's assignment and the condition that the user was exposed.

    The result's ``ASSIGNMENTS.c.variant_id`` is the user's variant.
    """
    joined = source.join(
        ASSIGNMENTS, and_(ASSIGNMENTS.c.experiment_id == experiment_id, ASSIGNMENTS.c.user_id == user_id)
    )
    return joined, _exposed(experiment_id, user_id, start, end)


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
    the count comes from :func:`daily_users` (one streaming pass over the exposures).
    """
    if segment is None:
        totals: dict[tuple[int, str | None], int] = {}
        for row in daily_users(session=session, experiment_id=experiment_id, start=start, end=end):
            totals[(row.variant_id, None)] = totals.get((row.variant_id, None), 0) + row.new_users
        return totals
    keys: list[Any] = [ASSIGNMENTS.c.variant_id] + (
        [segment_expression(segment).label("segment")] if segment is not None else []
    )
    statement = (
        select(*keys, func.count())
        .where(
            ASSIGNMENTS.c.experiment_id == experiment_id,
            _exposed(experiment_id, ASSIGNMENTS.c.user_id, start, end),
        )
        .group_by(*keys)
    )
    out: dict[tuple[int, str | None], int] = {}
    for row in _run(session, statement):
        seg = str(row[1]) if segment is not None else None
        out[(int(row[0]), seg)] = int(row[-1])
    return out


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
    value = _metric_value()
    per_user = (
        select(
            EVENTS.c.metric_name.label("metric"),
            EVENTS.c.user_id.label("user_id"),
            func.sum(value).label("v"),
            func.max(value).label("vmax"),
            func.sum(case((value.in_([0.0, 1.0]), 0), else_=1)).label("nb"),
        )
        .where(*_conversion_filter(experiment_id, metrics), *_window(start, end))
        .group_by(EVENTS.c.metric_name, EVENTS.c.user_id)
        .subquery("pu")
    )
    joined, exposed = _population(per_user, per_user.c.user_id, experiment_id, start, end)
    keys: list[Any] = [ASSIGNMENTS.c.variant_id, per_user.c.metric] + (
        [segment_expression(segment).label("segment")] if segment is not None else []
    )
    statement = (
        select(
            *keys,
            func.count(),
            func.sum(per_user.c.v),
            func.sum(per_user.c.v * per_user.c.v),
            func.sum(case((per_user.c.vmax >= 1, 1), else_=0)),
            func.sum(per_user.c.nb),
        )
        .select_from(joined)
        .where(exposed)
        .group_by(*keys)
    )
    found: dict[tuple[int, str, str | None], tuple[Any, ...]] = {}
    for row in _run(session, statement):
        seg = str(row[2]) if segment is not None else None
        found[(int(row[0]), str(row[1]), seg)] = tuple(row[len(keys) :])
    if users is None:
        users = exposed_users(session=session, experiment_id=experiment_id, start=start, end=end, segment=segment)
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
    value = _metric_value()
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
        .where(*_conversion_filter(experiment_id, [metric]), *_window(None, end))
        .group_by(EVENTS.c.user_id)
        .subquery("pu")
    )
    joined, exposed = _population(per_user, per_user.c.user_id, experiment_id, start, end)
    statement = (
        select(
            ASSIGNMENTS.c.variant_id,
            func.sum(per_user.c.y),
            func.sum(per_user.c.y * per_user.c.y),
            func.sum(per_user.c.x),
            func.sum(per_user.c.x * per_user.c.x),
            func.sum(per_user.c.x * per_user.c.y),
        )
        .select_from(joined)
        .where(exposed)
        .group_by(ASSIGNMENTS.c.variant_id)
    )
    sums = {int(r[0]): [float(v or 0.0) for v in r[1:]] for r in _run(session, statement)}
    if users is None:
        users = exposed_users(session=session, experiment_id=experiment_id, start=start, end=end)
    out: dict[int, CovariateSummary] = {}
    for (variant_id, _seg), n in sorted(users.items()):
        sy, sy2, sx, sx2, sxy = sums.get(variant_id, [0.0] * 5)
        out[variant_id] = CovariateSummary(n=n, sum_y=sy, sum_y2=sy2, sum_x=sx, sum_x2=sx2, sum_xy=sxy)
    return out


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
    """Nearest-rank percentiles of event values per variant and metric, by window functions in SQL.

    ``row_number()`` and ``count()`` over ``(variant, metric)`` rank the values; the database
    keeps only the rows at the wanted ranks. Events with a NULL value are ignored.
    """
    if not metrics:
        return []
    joined, exposed = _population(EVENTS, EVENTS.c.user_id, experiment_id, start, end)
    values = (
        select(
            ASSIGNMENTS.c.variant_id.label("variant_id"),
            EVENTS.c.metric_name.label("metric"),
            EVENTS.c.value.label("value"),
        )
        .select_from(joined)
        .where(
            *_conversion_filter(experiment_id, metrics), EVENTS.c.value.is_not(None), *_window(start, end), exposed
        )
        .subquery("vals")
    )
    partition = [values.c.variant_id, values.c.metric]
    ranked = select(
        values.c.variant_id,
        values.c.metric,
        values.c.value,
        func.row_number().over(partition_by=partition, order_by=values.c.value).label("rn"),
        func.count().over(partition_by=partition).label("cnt"),
    ).subquery("ranked")
    wanted = [
        func.max(case((ranked.c.rn == (ranked.c.cnt * int(p) + 99) // 100, ranked.c.value))).label(f"p{p}")
        for p in percentiles
    ]
    statement = (
        select(
            ranked.c.variant_id,
            ranked.c.metric,
            func.count(),
            func.min(ranked.c.value),
            func.max(ranked.c.value),
            func.avg(ranked.c.value),
            *wanted,
        )
        .group_by(ranked.c.variant_id, ranked.c.metric)
        .order_by(ranked.c.metric, ranked.c.variant_id)
    )
    return [
        PercentileStats(
            variant_id=int(r[0]),
            metric=str(r[1]),
            count=int(r[2]),
            min=float(r[3]),
            max=float(r[4]),
            mean=float(r[5]),
            percentiles={int(p): float(v) for p, v in zip(percentiles, r[6:], strict=True)},
        )
        for r in _run(session, statement)
    ]


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
    first = (
        select(EVENTS.c.user_id.label("user_id"), func.min(EVENTS.c.ts).label("first_ts"))
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type == EventType.EXPOSURE.value,
            *_window(start, end),
        )
        .group_by(EVENTS.c.user_id)
        .subquery("fe")
    )
    day = _day(first.c.first_ts, _dialect(session)).label("day")
    statement = (
        select(day, ASSIGNMENTS.c.variant_id, func.count())
        .select_from(
            first.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == experiment_id, ASSIGNMENTS.c.user_id == first.c.user_id),
            )
        )
        .group_by(day, ASSIGNMENTS.c.variant_id)
        .order_by(day, ASSIGNMENTS.c.variant_id)
    )
    return [DailyUsers(_as_date(d), int(v), int(n)) for d, v, n in _run(session, statement)]


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
    dialect = _dialect(session)
    value = _metric_value()
    out: list[DailyMetric] = []
    if sum_metrics:
        day = _day(EVENTS.c.ts, dialect).label("day")
        joined, exposed = _population(EVENTS, EVENTS.c.user_id, experiment_id, start, end)
        statement = (
            select(day, ASSIGNMENTS.c.variant_id, EVENTS.c.metric_name, func.sum(value))
            .select_from(joined)
            .where(*_conversion_filter(experiment_id, sum_metrics), *_window(start, end), exposed)
            .group_by(day, ASSIGNMENTS.c.variant_id, EVENTS.c.metric_name)
        )
        out += [DailyMetric(_as_date(d), int(v), str(m), float(x or 0.0)) for d, v, m, x in _run(session, statement)]
    if binary_metrics:
        first = (
            select(
                EVENTS.c.metric_name.label("metric"),
                EVENTS.c.user_id.label("user_id"),
                func.min(case((value >= 1, EVENTS.c.ts))).label("first_ts"),
            )
            .where(*_conversion_filter(experiment_id, binary_metrics), *_window(start, end))
            .group_by(EVENTS.c.metric_name, EVENTS.c.user_id)
            .subquery("fc")
        )
        day = _day(first.c.first_ts, dialect).label("day")
        joined, exposed = _population(first, first.c.user_id, experiment_id, start, end)
        statement = (
            select(day, ASSIGNMENTS.c.variant_id, first.c.metric, func.count())
            .select_from(joined)
            .where(first.c.first_ts.is_not(None), exposed)
            .group_by(day, ASSIGNMENTS.c.variant_id, first.c.metric)
        )
        out += [DailyMetric(_as_date(d), int(v), str(m), float(n)) for d, v, m, n in _run(session, statement)]
    out.sort(key=lambda r: (r.day, r.metric, r.variant_id))
    return out


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
) -> ValueDistribution:
    """Histogram counts per variant computed in SQL (min/max first, then ``floor`` bucketing), plus
    nearest-rank percentiles. A metric without values gives empty ``edges`` and ``counts``."""
    if bins < 1:
        raise ValueError("bins must be at least 1")
    stats = percentile_stats(session=session, experiment_id=experiment_id, metrics=[metric], start=start, end=end)
    if not stats:
        return ValueDistribution(metric=metric, edges=(), counts={}, percentiles={})
    lo = min(s.min for s in stats)
    hi = max(s.max for s in stats)
    width = (hi - lo) / bins if hi > lo else 1.0
    joined, exposed = _population(EVENTS, EVENTS.c.user_id, experiment_id, start, end)
    raw_bucket = _floor((EVENTS.c.value - literal(lo, Float)) / literal(width, Float), _dialect(session))
    bucket = case((raw_bucket >= bins, bins - 1), else_=raw_bucket).label("bucket")
    statement = (
        select(ASSIGNMENTS.c.variant_id, bucket, func.count())
        .select_from(joined)
        .where(
            *_conversion_filter(experiment_id, [metric]), EVENTS.c.value.is_not(None), *_window(start, end), exposed
        )
        .group_by(ASSIGNMENTS.c.variant_id, bucket)
    )
    counts: dict[int, list[int]] = {s.variant_id: [0] * bins for s in stats}
    for variant_id, b, n in _run(session, statement):
        counts.setdefault(int(variant_id), [0] * bins)[min(max(int(b), 0), bins - 1)] += int(n)
    edges = tuple(lo + i * width for i in range(bins + 1))
    return ValueDistribution(
        metric=metric,
        edges=edges,
        counts={k: tuple(v) for k, v in counts.items()},
        percentiles={s.variant_id: s for s in stats},
    )
