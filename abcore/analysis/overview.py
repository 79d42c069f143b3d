"""The simple reads of the store that the dashboard, the watcher, the CLI and the API show.

Participants, the experiment list, assignments per day, metric and attribute names, feedback counts,
event totals and the latest event id: every function takes the SQLModel ``Session`` as the keyword
``session`` and runs one SQLAlchemy Core statement on SQLite or PostgreSQL, returning small frozen
dataclasses or dicts. The analysis itself (population, metric values, statistics) is the SQL of
:mod:`abcore.analysis.sql`; counts over its population are :mod:`abcore.analysis.metric_counts`.
Naive datetimes are taken as UTC; ``start`` (inclusive) and ``end`` (exclusive) filter events by ``ts``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Date, and_, cast, func, literal, select
from sqlalchemy.sql import ColumnElement
from sqlmodel import Session

from abcore.store.tables import EventType, Experiment, ExperimentEvent, UserAssignment, Variant

__all__ = [
    "PERCENTILES",
    "SENTIMENTS",
    "AssignmentsPerDay",
    "DailyUsers",
    "ExperimentOverview",
    "PercentileStats",
    "VariantUsers",
    "as_utc",
    "assigned_variant",
    "assignments_per_day",
    "attribute_names",
    "event_total",
    "experiment_overview",
    "exposure_counts",
    "feedback_counts",
    "latest_event_id",
    "metric_names",
    "participants",
    "variant_users",
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


def _window(start: datetime | None, end: datetime | None, ts: Any = None) -> list[ColumnElement[bool]]:
    ts = EVENTS.c.ts if ts is None else ts
    conditions: list[ColumnElement[bool]] = []
    if start is not None:
        conditions.append(ts >= _bind_ts(start))
    if end is not None:
        conditions.append(ts < _bind_ts(end))
    return conditions


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


# --------------------------------------------------------------------------- analysis result rows


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


@dataclass(frozen=True)
class DailyUsers:
    """Population users whose first exposure (in the window) fell on ``day`` (UTC)."""

    day: date
    variant_id: int
    new_users: int


# --------------------------------------------------------------------------- HTTP API helpers


def assigned_variant(*, session: Session, experiment_id: int, user_id: str) -> int | None:
    """The variant id of ``user_id``'s stored assignment in the experiment, or None when it has none."""
    statement = select(ASSIGNMENTS.c.variant_id).where(
        ASSIGNMENTS.c.experiment_id == experiment_id, ASSIGNMENTS.c.user_id == user_id
    )
    value = _run(session, statement).scalar()
    return None if value is None else int(value)


def exposure_counts(
    *,
    session: Session,
    experiment_id: int,
    start: datetime | None = None,
    end: datetime | None = None,
) -> dict[int, int]:
    """Exposure *events* (not users) per variant in ``[start, end)``: ``{variant_id: n}``.

    The variant is the one of the user's stored assignment (events of users without one are left out,
    as in the analysis).
    """
    statement = (
        select(ASSIGNMENTS.c.variant_id, func.count())
        .select_from(
            EVENTS.join(
                ASSIGNMENTS,
                and_(ASSIGNMENTS.c.experiment_id == EVENTS.c.experiment_id, ASSIGNMENTS.c.user_id == EVENTS.c.user_id),
            )
        )
        .where(
            EVENTS.c.experiment_id == experiment_id,
            EVENTS.c.event_type == EventType.EXPOSURE.value,
            *_window(start, end),
        )
        .group_by(ASSIGNMENTS.c.variant_id)
    )
    return {int(v): int(n) for v, n in _run(session, statement)}


def event_total(*, session: Session, experiment_id: int) -> int:
    """The number of stored events of the experiment (every type; 0 when it has none).

    The dashboard's ``auto`` engine choice (:func:`abcore.config.choose_analysis_engine`) compares it
    with ``ABCORE_DUCKDB_MIN_EVENTS``; one index-only count on ``experiment_id``.
    """
    value = _run(session, select(func.count()).select_from(EVENTS).where(EVENTS.c.experiment_id == experiment_id)).scalar()
    return int(value or 0)
