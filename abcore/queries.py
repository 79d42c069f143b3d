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

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, Float, Integer, and_, cast, func, literal, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from abcore.models import EventType, Experiment, ExperimentEvent, UserAssignment, Variant

__all__ = [
    "PERCENTILES",
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


def _window(start: datetime | None, end: datetime | None) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(EVENTS.c.ts >= _bind_ts(start))
    if end is not None:
        conditions.append(EVENTS.c.ts < _bind_ts(end))
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
    sentiment = EVENTS.c.properties["sentiment"].as_string().label("sentiment")
    statement = (
        select(ASSIGNMENTS.c.variant_id, sentiment, func.count())
        .select_from(
            EVENTS.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == EVENTS.c.experiment_id, ASSIGNMENTS.c.user_id == EVENTS.c.user_id),
            )
        )
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type == EventType.FEEDBACK.value,
            EVENTS.c.properties["sentiment"].as_string().in_(SENTIMENTS),
            *_window(start, end),
        )
        .group_by(ASSIGNMENTS.c.variant_id, sentiment)
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
