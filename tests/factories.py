"""Test data shared by every test folder: experiments, assignments and events.

* :func:`make_experiment` creates an experiment the way a user does (through
  :mod:`abcore.experiments.lifecycle`, so validation, salt and audit log apply) and moves it to
  the status the test needs.
* :func:`insert_experiment` writes the rows directly, for tests that need states or
  timestamps the lifecycle does not produce (a completed experiment that started on a given day).
* :func:`add_data` bulk-inserts assignments and events; :func:`add_assignments` only assignments.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.store.db import make_engine
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant

T0 = datetime(2026, 1, 1, tzinfo=UTC)
"""The default moment of inserted rows: assignments at ``T0``, events an hour later."""

# The lifecycle actions that lead from a new draft to each status.
_STEPS: dict[str, tuple[str, ...]] = {
    "draft": (),
    "running": ("start",),
    "paused": ("start", "pause"),
    "completed": ("start", "stop"),
    "cancelled": ("cancel",),
}

VariantSpec = str | tuple[str, float] | ex.VariantCreate
"""An arm: a name (the split is equal), ``(name, allocation_pct)``, or a full ``VariantCreate``."""


@contextmanager
def open_session(db: Session | Engine | str) -> Iterator[Session]:
    """A session on ``db``: the session itself, a new one on an engine, or on a new engine for a URL (disposed after)."""
    if isinstance(db, Session):
        yield db
        return
    engine = make_engine(db) if isinstance(db, str) else db
    try:
        with Session(engine, expire_on_commit=False) as session:
            yield session
    finally:
        if isinstance(db, str):
            engine.dispose()


def variant_creates(variants: Sequence[VariantSpec]) -> list[ex.VariantCreate]:
    """``VariantCreate`` objects for ``variants``; bare names share 100 % equally (the first takes the rounding)."""
    share = round(100 / len(variants), 6)
    equal = [100 - sum([share] * (len(variants) - 1))] + [share] * (len(variants) - 1)
    arms: list[ex.VariantCreate] = []
    for i, spec in enumerate(variants):
        if isinstance(spec, ex.VariantCreate):
            arms.append(spec)
        elif isinstance(spec, str):
            arms.append(ex.VariantCreate(name=spec, allocation_pct=equal[i]))
        else:
            arms.append(ex.VariantCreate(name=spec[0], allocation_pct=spec[1]))
    return arms


def make_experiment(
    db: Session | Engine | str,
    name: str = "exp",
    variants: Sequence[VariantSpec] = ("control", "treatment"),
    *,
    status: str = "running",
    actor: str = "",
    **fields: Any,
) -> Experiment:
    """Create an experiment through the lifecycle and bring it to ``status``.

    ``db`` is a session (used and committed), an engine or a URL. ``fields`` are any other
    :class:`~abcore.experiments.schemas.ExperimentCreate` fields (``salt``, ``targeting``,
    ``primary_metric`` ...). ``status`` is one of draft, running (default), paused, completed or
    cancelled, reached by the same actions a user takes, each recorded with ``actor``.
    Returns the stored experiment (its attributes stay readable after the session closes).
    """
    steps = _STEPS[status]
    data = ex.ExperimentCreate(name=name, variants=variant_creates(variants), **fields)
    with open_session(db) as session:
        experiment = ex.create_experiment(session=session, data=data, actor=actor)
        for action in steps:
            experiment = getattr(ex, f"{action}_experiment")(session=session, ref=experiment.id, actor=actor)
        return experiment


def variant_ids(session: Session, experiment_id: int) -> dict[str, int]:
    """The ids of the experiment's variants by name, in position order."""
    return {v.name: int(v.id) for v in ex.get_variants(session=session, experiment_id=experiment_id)}


def insert_experiment(
    session: Session,
    variants: Iterable[tuple[str, float] | tuple[str, float, dict[str, Any]]] = (("A", 50.0), ("B", 50.0)),
    **fields: Any,
) -> tuple[Experiment, dict[str, Variant]]:
    """Write an experiment row with ``fields`` and its variants (first = control, optional config) as given.

    No lifecycle rule applies: any status and timestamps can be stored. Returns the experiment and
    its variants by name.
    """
    experiment = Experiment(**fields)
    session.add(experiment)
    session.commit()
    arms: dict[str, Variant] = {}
    for position, (name, pct, *config) in enumerate(variants):
        arms[name] = Variant(
            experiment_id=experiment.id, name=name, allocation_pct=pct, is_control=position == 0, position=position,
            **({"config": config[0]} if config else {}),
        )
        session.add(arms[name])
    session.commit()
    return experiment, arms


def completed_experiment(
    session: Session, *, variants: Iterable[tuple[str, float]] = (("A", 50.0), ("B", 50.0)), **fields: Any
) -> tuple[Experiment, dict[str, Variant]]:
    """Rows of a completed two-week experiment from ``T0`` with arms A and B and primary metric ``click``.

    ``fields`` override any column (``status``, ``started_at``, ``primary_metric`` ...).
    """
    defaults: dict[str, Any] = {"name": "exp", "salt": "salt", "status": "completed", "started_at": T0,
                                "stopped_at": T0 + timedelta(days=14), "primary_metric": "click"}
    return insert_experiment(session, variants, **{**defaults, **fields})


def exposure(user: str, ts: datetime | None = None) -> dict[str, Any]:
    """An exposure event of ``user`` for :func:`add_data` (default time ``T0 + 1 h``)."""
    return {"user_id": user, "event_type": "exposure", "ts": ts or T0 + timedelta(hours=1)}


def conversion(user: str, metric: str, value: float | None, ts: datetime | None = None, **kw: Any) -> dict[str, Any]:
    """A conversion event of ``user`` on ``metric`` for :func:`add_data` (default ``T0 + 2 h``; ``kw`` adds columns)."""
    return {"user_id": user, "event_type": "conversion", "metric_name": metric, "value": value,
            "ts": ts or T0 + timedelta(hours=2), **kw}


def add_assignments(session: Session, experiment_id: int, users: Iterable[tuple[str, int]]) -> None:
    """Store one assignment per ``(user_id, variant_id)`` (assigned now), then commit."""
    session.add_all(
        [UserAssignment(user_id=user, experiment_id=experiment_id, variant_id=variant) for user, variant in users]
    )
    session.commit()


def add_data(
    session: Session,
    exp: Experiment,
    assignments: Iterable[tuple[str, Variant, dict[str, Any]]],
    events: Iterable[dict[str, Any]],
) -> None:
    """Bulk-insert assignments ``(user, variant, attributes)`` at ``T0`` and event dicts, then commit.

    An event dict needs ``user_id`` and ``event_type``; the rest defaults to no variant, metric,
    value or properties at ``T0 + 1 h``. On PostgreSQL the tables are analysed afterwards.
    """
    rows = [
        {"user_id": u, "experiment_id": exp.id, "variant_id": v.id, "attributes": attrs, "assigned_at": T0}
        for u, v, attrs in assignments
    ]
    if rows:
        session.connection().execute(insert(UserAssignment.__table__), rows)  # type: ignore[attr-defined]
    event_rows = []
    for e in events:
        row = {"experiment_id": exp.id, "variant_id": None, "metric_name": None, "value": None, "properties": {},
               "ts": T0 + timedelta(hours=1), "request_id": None, "event_key": None}
        row.update(e)
        event_rows.append(row)
    if event_rows:
        session.connection().execute(insert(ExperimentEvent.__table__), event_rows)  # type: ignore[attr-defined]
    session.commit()
    if session.get_bind().dialect.name == "postgresql":
        # What autovacuum does shortly after a bulk load in production: without statistics the
        # planner takes the fresh tables for empty and picks quadratic nested loops.
        session.connection().exec_driver_sql("ANALYZE ab_experiment_results, ab_user_assignments")
        session.commit()
