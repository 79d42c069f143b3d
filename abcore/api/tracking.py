"""Assignment and events over HTTP: ``/api/v1/assign``, ``/api/v1/experiments/conversions``, ``/api/v1/events``.

Thin over :class:`abcore.assign.Assigner` (the same sticky assignment and buffered tracking that
Python recommenders use). When ``track`` declines an event, the reason is looked up so the caller
gets a clear 404 / 409 instead of a bare "not recorded"; a recorded event is flushed to the store
before the answer, so a 201 means it is stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from abcore import experiments as ex
from abcore.analysis import overview
from abcore.api.deps import ApiState, StateDep, Tracker, store_session
from abcore.api.errors import responses, status_of
from abcore.api.schemas import (
    AssignBatchIn,
    AssignBatchOut,
    AssignIn,
    AssignmentOut,
    ConversionIn,
    EventsIn,
    EventsOut,
    Recorded,
)
from abcore.assign import Assignment
from abcore.errors import AbcoreError
from abcore.store.tables import ExperimentStatus

router = APIRouter(prefix="/api/v1", tags=["assignment and events"])

_TRACKABLE = (ExperimentStatus.RUNNING.value, ExperimentStatus.PAUSED.value)


def assignment_out(user_id: str, a: Assignment | None) -> dict[str, Any]:
    if a is None:
        return {"user_id": user_id, "assigned": False}
    return {
        "user_id": user_id,
        "assigned": True,
        "experiment_id": a.experiment_id,
        "experiment": a.experiment_name,
        "variant_id": a.variant_id,
        "variant": a.variant_name,
        "config": dict(a.config),
        "is_control": a.is_control,
        "is_new": a.is_new,
        "model_id": a.model_id,
        "model_name": a.model_name,
        "model_version": a.model_version,
        "model_config": dict(a.model_config),
    }


def _check_experiment(state: ApiState, ref: int | str | None) -> None:
    """404 for an experiment that does not exist (only asked when the assigner answered None)."""
    if ref is not None:
        with store_session(state) as session:
            ex.get_experiment(session=session, ref=ref)


@router.post(
    "/assign",
    response_model=AssignmentOut,
    responses=responses(401, 403, 404, 413, 422, 429),
    summary="Assign a user (sticky) and record an exposure",
)
def assign(body: AssignIn, key: Tracker, state: StateDep) -> dict[str, Any]:
    """The user's variant of ``experiment`` (id, name, or omitted: the most recently started running one).

    ``assigned: false`` means: serve your default (draft, cancelled, paused for a new user, excluded by
    targeting or traffic share, completed without a winner). An experiment that does not exist is 404.
    """
    answer = state.assigner.assign(
        body.user_id, body.experiment, attributes=body.attributes, expose=body.expose, request_id=body.request_id
    )
    if answer is None:
        _check_experiment(state, body.experiment)
    return assignment_out(body.user_id, answer)


@router.post(
    "/assign/batch",
    response_model=AssignBatchOut,
    responses=responses(401, 403, 404, 413, 422, 429),
    summary="Assign many users of one experiment at once",
)
def assign_batch(body: AssignBatchIn, key: Tracker, state: StateDep) -> dict[str, Any]:
    """``assign`` for up to 1000 users (same answers, in order); ``attributes`` is one object for all or one per user."""
    answers = state.assigner.assign_many(
        body.user_ids, body.experiment, attributes=body.attributes, expose=body.expose, request_id=body.request_id
    )
    if all(a is None for a in answers):
        _check_experiment(state, body.experiment)
    state.assigner.flush()  # a batch is rare and large: store its events now
    return {"assignments": [assignment_out(u, a) for u, a in zip(body.user_ids, answers, strict=True)]}


def _track(state: ApiState, event: Any, event_type: str) -> None:
    """Record one event or raise the HTTPException saying why it cannot be recorded."""
    ref = event.experiment_id
    args = (event.user_id, ref, event.metric_name, event.value)
    options = {"properties": event.properties, "event_type": event_type, "request_id": event.request_id,
               "timestamp": event.timestamp}
    if state.assigner.track(*args, **options):  # type: ignore[arg-type]
        return
    with store_session(state) as session:
        exp = ex.get_experiment(session=session, ref=ref)  # 404 when unknown
        if exp.status not in _TRACKABLE:
            raise HTTPException(
                409, f"Experiment {exp.name!r} is {exp.status}: events are recorded only while it is running or paused."
            )
        if overview.assigned_variant(session=session, experiment_id=exp.id, user_id=event.user_id) is None:  # type: ignore[arg-type]
            raise HTTPException(
                409,
                f"User {event.user_id!r} has no assignment in {exp.name!r}: assign the user first (POST /api/v1/assign).",
            )
    state.assigner.refresh()  # the assigner's cached status may be older than the store's
    if not state.assigner.track(*args, **options):  # type: ignore[arg-type]
        raise HTTPException(503, "The store did not accept the event in time; retry.", headers={"Retry-After": "1"})


@router.post(
    "/experiments/conversions",
    status_code=201,
    response_model=Recorded,
    responses=responses(401, 403, 404, 409, 413, 422, 429),
    summary="Record a conversion: a metric value for an assigned user",
)
def conversion(body: ConversionIn, key: Tracker, state: StateDep) -> dict[str, Any]:
    """A metric value for an assigned user (``value`` defaults to 1; ``timestamp``, when it happened, defaults
    to now: ISO-8601 or epoch seconds, as the event import takes them). 404: unknown experiment; 409: the
    experiment is not running or paused, or the user was never assigned."""
    _track(state, body, "conversion")
    state.assigner.flush()
    experiment_id = body.experiment_id
    if not isinstance(experiment_id, int):
        with store_session(state) as session:
            experiment_id = ex.get_experiment(session=session, ref=experiment_id).id  # type: ignore[assignment]
    return {"recorded": True, "experiment_id": experiment_id, "user_id": body.user_id, "metric_name": body.metric_name}


@router.post(
    "/events",
    response_model=EventsOut,
    responses=responses(401, 403, 413, 422, 429),
    summary="Record many events (conversions, feedback, errors)",
)
def events(body: EventsIn, key: Tracker, state: StateDep) -> dict[str, Any]:
    """Up to 1000 events (each with an optional ``timestamp``, as in ``/experiments/conversions``); each is
    recorded or listed in ``rejected`` with its index, status and reason."""
    recorded = 0
    rejected = []
    for index, event in enumerate(body.events):
        try:
            _track(state, event, event.event_type)
            recorded += 1
        except HTTPException as exc:
            rejected.append({"index": index, "status": exc.status_code, "detail": str(exc.detail)})
        except AbcoreError as exc:
            rejected.append({"index": index, "status": status_of(exc), "detail": str(exc)})
    state.assigner.flush()
    return {"recorded": recorded, "rejected": rejected}
