"""Helpers for the assignment tests: experiments built through abcore.experiments.lifecycle."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore import experiments as ex
from abcore.assign import Assigner
from abcore.store.tables import ExperimentEvent, UserAssignment
from tests.factories import make_experiment


def new_experiment(
    engine: Engine,
    name: str = "ranker_v2",
    allocations: tuple[float, ...] = (50.0, 50.0),
    *,
    start: bool = True,
    salt: str | None = None,
    traffic: float = 1.0,
    targeting: list[dict] | None = None,
) -> int:
    """Create (and by default start) an experiment with variants v0, v1, ... (v0 = control); returns its id.

    Variant ``vi`` has config ``{"arm": i}``; the salt is ``"<name>-salt"`` unless given.
    """
    arms = [ex.VariantCreate(name=f"v{i}", allocation_pct=pct, config={"arm": i}) for i, pct in enumerate(allocations)]
    experiment = make_experiment(
        engine, name, arms, status="running" if start else "draft",
        salt=salt or f"{name}-salt", traffic_allocation=traffic, targeting=targeting or [],
    )
    return int(experiment.id)


def lifecycle(engine: Engine, action: str, ref: int | str, **kwargs: object) -> None:
    """Run ``abcore.experiments.lifecycle.<action>_experiment`` (or ship_winner / update_allocations / set_traffic_allocation)."""
    fn = getattr(ex, action) if action in ("ship_winner", "update_allocations", "set_traffic_allocation") else getattr(
        ex, f"{action}_experiment"
    )
    with Session(engine, expire_on_commit=False) as session:
        fn(session=session, ref=ref, **kwargs)


def count_assignments(engine: Engine, experiment_id: int, user_id: str | None = None) -> int:
    query = select(func.count()).select_from(UserAssignment).where(UserAssignment.experiment_id == experiment_id)
    if user_id is not None:
        query = query.where(UserAssignment.user_id == user_id)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def count_events(engine: Engine, experiment_id: int, event_type: str, user_id: str | None = None) -> int:
    query = (
        select(func.count())
        .select_from(ExperimentEvent)
        .where(ExperimentEvent.experiment_id == experiment_id, ExperimentEvent.event_type == event_type)
    )
    if user_id is not None:
        query = query.where(ExperimentEvent.user_id == user_id)
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


@pytest.fixture
def assigner(engine: Engine) -> Iterator[Assigner]:
    """An assigner on the test database; definitions reload on every call (cache_ttl=0) unless a test says otherwise."""
    client = Assigner(engine, cache_ttl=0.0, timeout=2.0)
    yield client
    client.close()
