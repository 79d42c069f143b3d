"""``/api/v1/layers``: create and read layers (mutually exclusive experiments on one surface), and
``POST /api/v1/assign/layer``: the user's one assignment on a surface.

Thin over :mod:`abcore.experiments.layers` and :meth:`abcore.assign.Assigner.assign_layer`; nothing is computed here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from abcore import experiments as ex
from abcore.api.deps import Editor, Reader, SessionDep, StateDep, Tracker, store_session
from abcore.api.errors import responses
from abcore.api.schemas import AssignmentOut, Name, RequestId, UserId
from abcore.api.tracking import assignment_out

router = APIRouter(prefix="/api/v1", tags=["layers"])


class LayerIn(BaseModel):
    name: Name
    description: str = ""


class LayerExperiment(BaseModel):
    id: int
    name: str
    status: str
    layer_share: float
    ranges: list[list[int]] = Field(description="[start, end) units of the layer hash held (units of 1/units)")


class LayerOut(BaseModel):
    """A layer, the running or paused experiments holding its ranges, and its free share."""

    name: str
    description: str
    free_pct: float
    units: int
    experiments: list[LayerExperiment]


class AssignLayerIn(BaseModel):
    user_id: UserId
    layer: Name
    attributes: dict[str, Any] | None = None
    expose: bool = True
    request_id: RequestId | None = None


@router.post("/layers", status_code=201, response_model=LayerOut, responses=responses(401, 403, 413, 422, 429),
             summary="Create a layer")
def create(body: LayerIn, key: Editor, session: SessionDep) -> dict[str, Any]:
    """A new layer with a salt fixed now; 422 when the name is taken or invalid."""
    layer = ex.create_layer(body.name, session=session, description=body.description, actor=key.name)
    return ex.layer_usage(session=session, ref=layer).to_dict()


@router.get("/layers", response_model=list[LayerOut], responses=responses(401, 403, 422, 429), summary="List layers")
def list_all(key: Reader, session: SessionDep) -> list[dict[str, Any]]:
    """Every layer with who holds which ranges and the free share."""
    return [ex.layer_usage(session=session, ref=layer).to_dict() for layer in ex.list_layers(session=session)]


@router.get("/layers/{ref}", response_model=LayerOut, responses=responses(401, 403, 404, 422, 429), summary="Read a layer")
def read(ref: str, key: Reader, session: SessionDep) -> dict[str, Any]:
    """One layer (by id or name) with its holders and free share."""
    return ex.layer_usage(session=session, ref=ref).to_dict()


@router.post(
    "/assign/layer",
    response_model=AssignmentOut,
    responses=responses(401, 403, 404, 413, 422, 429),
    summary="The user's one assignment on a surface (layer), with an exposure",
)
def assign_layer(body: AssignLayerIn, key: Tracker, state: StateDep) -> dict[str, Any]:
    """Which experiment and variant serve ``user_id`` on ``layer``; ``assigned: false`` means: serve your default
    (no experiment of the layer holds the user and no winner was shipped there, or a holdout keeps them out).
    A layer that does not exist is 404."""
    answer = state.assigner.assign_layer(
        body.user_id, body.layer, attributes=body.attributes, expose=body.expose, request_id=body.request_id
    )
    if answer is None:
        with store_session(state) as session:
            ex.get_layer(session=session, ref=body.layer)
    return assignment_out(body.user_id, answer)
