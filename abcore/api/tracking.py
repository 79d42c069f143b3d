"""Assignment and events over HTTP: ``/api/v1/assign``, ``/api/v1/experiments/conversions``, ``/api/v1/events``.

Thin over :class:`abcore.assign.Assigner` (the same sticky assignment and buffered tracking that
Python recommenders use). When ``track`` declines an event, the reason is looked up so the caller
gets a clear 404 / 409 instead of a bare "not recorded"; a recorded event is flushed to the store
before the answer, so a 201 means it is stored.
"""

from __future__ import annotations

import json
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Request, Response

from abcore import experiments as ex
from abcore.analysis import overview
from abcore.api.deps import (
    DATA,
    TRACKER_ROLES,
    ApiState,
    PlainRoute,
    StateDep,
    Tracker,
    authorize,
    bearer_token,
    no_unknown_query,
    parse_body,
    store_session,
)
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
from abcore.assign.definitions import answers_at_once
from abcore.errors import AbcoreError
from abcore.store.tables import ExperimentStatus

router = APIRouter(prefix="/api/v1", tags=["assignment and events"])

ASSIGN_IN_SCHEMA = AssignIn.model_json_schema()

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


async def assign_one(state: ApiState, body: AssignIn) -> Assignment | None:
    """``Assigner.assign`` for ``body``: on the event loop when it answers from memory (the common case:
    microseconds, rows written behind), else on a worker thread (it may wait for a reload or a store read);
    404 when it answered None for an experiment that does not exist."""
    assigner = state.assigner
    options = {"attributes": body.attributes, "expose": body.expose, "request_id": body.request_id}
    if answers_at_once(assigner, body.user_id, body.experiment, body.attributes):
        answer = assigner.assign(body.user_id, body.experiment, **options)  # type: ignore[arg-type]
    else:
        answer = await anyio.to_thread.run_sync(lambda: assigner.assign(body.user_id, body.experiment, **options))  # type: ignore[arg-type]
    if answer is None and body.experiment is not None:
        await anyio.to_thread.run_sync(_check_experiment, state, body.experiment)
    return answer


async def assign(request: Request) -> Response:
    """The user's variant of ``experiment`` (id, name, or omitted: the most recently started running one).

    ``assigned: false`` means: serve your default (draft, cancelled, paused for a new user, excluded by
    targeting or traffic share, completed without a winner). An experiment that does not exist is 404.
    """
    state: ApiState = request.app.state.abcore
    await no_unknown_query(request)
    await authorize(state, bearer_token(request), TRACKER_ROLES, DATA)
    body = parse_body(AssignIn, await request.body(), request.headers.get("content-type"))
    answer = await assign_one(state, body)
    return Response(assignment_json(body.user_id, answer), media_type="application/json")


_ENCODED: dict[int, tuple[Assignment, bytes]] = {}


def assignment_json(user_id: str, a: Assignment | None) -> bytes:
    """``assignment_out(user_id, a)`` as compact JSON: the part after ``user_id`` is encoded once per answer
    object of the assigner's cache (it holds a few per variant), so a request encodes only its user id."""
    if a is None:
        return b'{"user_id":' + json.dumps(user_id).encode() + b',"assigned":false}'
    cached = _ENCODED.get(id(a))
    if cached is None or cached[0] is not a:  # the entry holds the object: its id cannot be reused meanwhile
        if len(_ENCODED) > 4096:
            _ENCODED.clear()
        out = assignment_out("", a)
        del out["user_id"]
        cached = _ENCODED[id(a)] = (a, json.dumps(out, separators=(",", ":")).encode()[1:])
    return b'{"user_id":' + json.dumps(user_id).encode() + b"," + cached[1]


# A PlainRoute: the endpoint reads the body and the key itself (no dependency machinery on the data plane's
# hottest path); the schema, the answers and the key requirement are declared here for the OpenAPI document.
# The app answers this route before its router (abcore.api.data_plane.DataPlane) with this same endpoint.
router.add_api_route(
    "/assign",
    assign,
    methods=["POST"],
    route_class_override=PlainRoute,
    response_model=AssignmentOut,
    responses=responses(401, 403, 404, 413, 422, 429),
    summary="Assign a user (sticky) and record an exposure",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": ASSIGN_IN_SCHEMA}}},
        "security": [{"HTTPBearer": []}],
    },
)


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
    ref = event.experiment
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
    with store_session(state) as session:
        exp = ex.get_experiment(session=session, ref=body.experiment)
    return {"recorded": True, "experiment_id": exp.id, "experiment": exp.name, "user_id": body.user_id,
            "metric_name": body.metric_name}


@router.post(
    "/events",
    status_code=201,
    response_model=EventsOut,
    responses={200: {"model": EventsOut, "description": "Nothing recorded: every event is listed in `rejected`"},
               **responses(401, 403, 413, 422, 429)},
    summary="Record many events (conversions, feedback, errors)",
)
def events(body: EventsIn, key: Tracker, state: StateDep, response: Response) -> dict[str, Any]:
    """Up to 1000 events (each with an optional ``timestamp``, as in ``/experiments/conversions``); each is
    recorded or listed in ``rejected`` with its index, status and reason.

    201 when at least one event was recorded (they are in the store), 200 when none was."""
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
    if not recorded:
        response.status_code = 200
    return {"recorded": recorded, "rejected": rejected}
