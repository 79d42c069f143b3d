"""Layers (mutually exclusive experiments on one surface) and holdouts, as managed: create, read, reserve, release.

* :func:`create_layer` stores a layer with a salt fixed at creation; :func:`get_layer`, :func:`list_layers`.
* An experiment joins a layer at creation (``ExperimentCreate.layer`` / ``.layer_share``). When it **starts**,
  :func:`transition_values` reserves the lowest free ranges of the layer holding ``layer_share`` percent (one
  conditional update of the layer's ``version`` in the start's transaction, so two starts at once never take
  the same range: the later one fails with :class:`LayerConflict` and nothing is written). When it **stops** or
  is **cancelled** its ranges are released (the audit row keeps them). Pausing and resuming keep them. Ranges
  never move while an experiment runs, so starting, ramping (its traffic share) or ending one experiment
  never moves a user of another (:mod:`abcore.assign.layers` explains the hash).
* :func:`layer_usage`: who holds which ranges and the free share (the create form's bar).
* :func:`create_holdout`: an experiment of kind ``holdout`` with variants ``holdout`` and ``exposed``.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from abcore.assign.hashing import buckets
from abcore.assign.layers import (
    HOLDOUT_KIND,
    HOLDOUT_VARIANTS,
    LAYER_UNITS,
    holdout_range,
    normalized,
    reserve,
    share_units,
    units_of,
)
from abcore.experiments.errors import ExperimentError, ExperimentNotFound, InvalidTransition
from abcore.experiments.records import get_experiment, get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.experiments.validation import check_actor, name_problems, text_problems
from abcore.store.db import commit_unique
from abcore.store.tables import Experiment, ExperimentStatus, Layer, UserAssignment
from abcore.store.values import id_of, is_id_text, is_number

_LIVE = (ExperimentStatus.RUNNING.value, ExperimentStatus.PAUSED.value)


class LayerNotFound(ExperimentNotFound):
    """No layer has that name or id."""


class LayerConflict(InvalidTransition):
    """The layer has too little free share for the experiment, or another start took the ranges just now."""


@dataclass(frozen=True)
class LayerHolder:
    """One running or paused experiment of a layer and the ranges ``[start, end)`` (units) it holds."""

    experiment_id: int
    name: str
    status: str
    layer_share: float
    ranges: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class LayerUsage:
    """A layer's occupancy: its holders and the free share in percent."""

    layer: Layer
    holders: tuple[LayerHolder, ...]
    free_pct: float

    def to_dict(self) -> dict[str, Any]:
        """The usage as JSON (the HTTP API and the CLI print this)."""
        return {
            "name": self.layer.name,
            "description": self.layer.description,
            "free_pct": self.free_pct,
            "units": LAYER_UNITS,
            "experiments": [
                {"id": h.experiment_id, "name": h.name, "status": h.status, "layer_share": h.layer_share,
                 "ranges": [list(r) for r in h.ranges]}
                for h in self.holders
            ],
        }


def create_layer(name: str, *, session: Session, description: str = "", actor: str = "") -> Layer:
    """Store a new layer ``name`` (unique) with a salt fixed now; raises :class:`ExperimentError` naming every problem."""
    check_actor(actor)
    clean = name.strip() if isinstance(name, str) else ""
    problems = name_problems("layer name", clean) if clean else ["The layer needs a name."]
    if not isinstance(description, str):
        problems.append("The layer description must be text.")
    else:
        problems += text_problems("layer description", description, None)
    if clean and is_id_text(clean):
        problems.append(f"The layer name {clean!r} is all digits: add a letter (a reference made of digits is an id).")
    if not problems and session.exec(select(Layer.id).where(Layer.name == clean)).first() is not None:
        problems.append(f"A layer named {clean!r} already exists.")
    if problems:
        raise ExperimentError("The layer cannot be saved: " + " ".join(problems), problems)
    layer = Layer(name=clean, description=description, salt=f"layer-{clean[:80]}-{secrets.token_hex(4)}", created_by=actor)
    session.add(layer)
    return commit_unique(session, layer, ExperimentError(f"A layer named {clean!r} already exists."))


def get_layer(*, session: Session, ref: int | str) -> Layer:
    """The layer with id or name ``ref`` (a string of digits is an id); :class:`LayerNotFound` otherwise."""
    layer: Layer | None = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        layer = session.get(Layer, ref)
    elif isinstance(ref, str) and is_id_text(ref.strip()):
        number = id_of(ref.strip())
        layer = None if number is None else session.get(Layer, number)
    elif isinstance(ref, str):
        layer = session.exec(select(Layer).where(Layer.name == ref.strip())).first()
    if layer is None:
        raise LayerNotFound(f"No layer with id or name {ref!r}.")
    return layer


def list_layers(*, session: Session) -> list[Layer]:
    """Every layer, by name."""
    return list(session.exec(select(Layer).order_by(col(Layer.name))).all())


def layer_usage(*, session: Session, ref: int | str | Layer) -> LayerUsage:
    """Who holds which ranges of the layer now (running and paused experiments) and the free share in percent."""
    layer = ref if isinstance(ref, Layer) else get_layer(session=session, ref=ref)
    rows = session.exec(
        select(Experiment)
        .where(col(Experiment.layer_id) == layer.id, col(Experiment.status).in_(_LIVE))
        .order_by(col(Experiment.started_at), col(Experiment.id))
    ).all()
    holders = tuple(
        LayerHolder(e.id, e.name, e.status, float(e.layer_share or 0.0), tuple(normalized(e.layer_ranges or ())))  # type: ignore[arg-type]
        for e in rows
    )
    taken = units_of(r for h in holders for r in h.ranges)
    return LayerUsage(layer, holders, round(100.0 * (LAYER_UNITS - taken) / LAYER_UNITS, 2))


def transition_values(session: Session, experiment: Experiment, action: str) -> dict[str, Any]:
    """The layer columns a lifecycle ``action`` changes (written by the caller in the same transaction).

    ``start`` of an experiment in a layer reserves its ranges (and bumps the layer's version, conditionally:
    :class:`LayerConflict` when the layer is too full or another start won the race; the session is rolled
    back). ``stop`` and ``cancel`` release them. Other actions, and experiments outside any layer: ``{}``.
    """
    if experiment.layer_id is None:
        return {}
    if action in ("stop", "cancel"):
        return {"layer_ranges": []} if experiment.layer_ranges else {}
    if action != "start":
        return {}
    layer = session.get(Layer, experiment.layer_id)
    if layer is None:
        raise LayerNotFound(f"The layer of {experiment.name!r} no longer exists.")
    session.refresh(layer)
    usage = layer_usage(session=session, ref=layer)
    wanted = share_units(experiment.layer_share or 0.0)
    ranges = reserve((r for h in usage.holders if h.experiment_id != experiment.id for r in h.ranges), wanted)
    if ranges is None:
        session.rollback()
        raise LayerConflict(
            f"Cannot start {experiment.name!r}: it claims {experiment.layer_share:g} % of layer {layer.name!r},"
            f" which has {usage.free_pct:g} % free."
        )
    bumped = session.execute(
        update(Layer).where(col(Layer.id) == layer.id, col(Layer.version) == layer.version).values(version=layer.version + 1)
    )
    if bumped.rowcount != 1:  # type: ignore[attr-defined]
        session.rollback()
        raise LayerConflict(f"Cannot start {experiment.name!r}: another experiment of layer {layer.name!r} started just now; try again.")
    return {"layer_ranges": [list(r) for r in ranges]}


def layer_columns(data: ExperimentCreate, session: Session) -> dict[str, Any]:
    """``layer_id``, ``layer_share`` and ``holdout_layers`` (ids) of a validated ``data``, as stored."""
    values: dict[str, Any] = {"layer_id": None, "layer_share": None, "holdout_layers": None}
    if data.layer is not None:
        values["layer_id"] = get_layer(session=session, ref=data.layer.strip()).id
        values["layer_share"] = float(data.layer_share)  # type: ignore[arg-type]
    if data.holdout_layers is not None:
        values["holdout_layers"] = sorted(get_layer(session=session, ref=n).id for n in data.holdout_layers)  # type: ignore[misc]
    return values


def layer_names(session: Session, experiment: Experiment) -> tuple[str | None, list[str] | None]:
    """``(layer name, covered layer names)`` of a stored experiment, as entered (for exports and clones)."""
    layer = session.get(Layer, experiment.layer_id) if experiment.layer_id is not None else None
    covered = None
    if experiment.holdout_layers is not None:
        rows = session.exec(select(Layer.name).where(col(Layer.id).in_(experiment.holdout_layers))).all()
        covered = sorted(rows)
    return (layer.name if layer is not None else None), covered


def create_holdout(
    name: str,
    percent: float,
    *,
    session: Session,
    layers: Sequence[str] | None = None,
    primary_metric: str = "conversion",
    secondary_metrics: Sequence[str] = (),
    description: str = "",
    actor: str = "",
) -> Experiment:
    """A draft holdout keeping ``percent`` % of all users out of the experiments of ``layers`` (None: of every
    experiment) and of shipped winners there, once started; analysed like any experiment (``holdout`` vs ``exposed``)."""
    from abcore.experiments.lifecycle import create_experiment

    if not is_number(percent) or not 0 < percent < 100:
        raise ExperimentError("The holdout percent must be more than 0 and less than 100.")
    data = ExperimentCreate(
        name=name,
        kind=HOLDOUT_KIND,
        description=description,
        variants=[
            VariantCreate(name=HOLDOUT_VARIANTS[0], allocation_pct=float(percent), is_control=True),
            VariantCreate(name=HOLDOUT_VARIANTS[1], allocation_pct=100.0 - float(percent)),
        ],
        primary_metric=primary_metric,
        secondary_metrics=list(secondary_metrics),
        holdout_layers=None if layers is None else list(layers),
    )
    return create_experiment(session=session, data=data, actor=actor)


def refuse_holdout_split_change(experiment: Experiment, what: str) -> None:
    """A holdout's split and traffic are fixed (its users are recognised by the hash): raise when asked to change them."""
    if experiment.kind == HOLDOUT_KIND:
        raise InvalidTransition(f"Cannot change the {what} of holdout {experiment.name!r}: a holdout's split is fixed.")



@dataclass(frozen=True)
class HoldoutOverlap:
    """Users a holdout could not keep out: assigned to a covered experiment before the holdout started.

    ``assigned_before`` counts the distinct users with such a row, ``held_before`` those of them the holdout's
    hash puts in its ``holdout`` arm (they keep their variant: a stored row always wins). Report the holdout's
    analysis with and without the ``held_before`` users when it is not 0.
    """

    assigned_before: int
    held_before: int
    held_user_ids: tuple[str, ...]


def holdout_overlap(*, session: Session, ref: int | str | Experiment) -> HoldoutOverlap:
    """The users assigned to an experiment the holdout ``ref`` covers before it started (see :class:`HoldoutOverlap`)."""
    holdout = ref if isinstance(ref, Experiment) else get_experiment(session=session, ref=ref)
    if holdout.kind != HOLDOUT_KIND:
        raise ExperimentError(f"{holdout.name!r} is not a holdout.")
    if holdout.started_at is None:
        return HoldoutOverlap(0, 0, ())
    covered = select(Experiment.id).where(col(Experiment.kind) != HOLDOUT_KIND, col(Experiment.id) != holdout.id)
    if holdout.holdout_layers is not None:
        covered = covered.where(col(Experiment.layer_id).in_(holdout.holdout_layers))
    users = sorted(set(session.exec(
        select(UserAssignment.user_id).where(
            col(UserAssignment.experiment_id).in_(covered), col(UserAssignment.assigned_at) < holdout.started_at
        )
    ).all()))
    bounds = holdout_range([{"name": v.name, "allocation_pct": v.allocation_pct} for v in get_variants(session=session, experiment_id=holdout.id)])  # type: ignore[arg-type]
    if not users or bounds is None:
        return HoldoutOverlap(len(users), 0, ())
    b = buckets(users, holdout.salt)
    held = tuple(u for u, x in zip(users, ((b >= bounds[0]) & (b < bounds[1])).tolist(), strict=True) if x)
    return HoldoutOverlap(len(users), len(held), held)
