"""The cached answer: experiment definitions as the assigner holds them, and :func:`decide` (pure: no I/O, no threads).

* :class:`Assignment`, the answer a caller gets (its ``config`` a read-only :class:`FrozenConfig`);
* the cached definitions (:class:`ExperimentDef`, :class:`Definitions`) with prebuilt :class:`Assignment`
  answers, and :func:`decide`, the answer for one user from the definitions and the stored-row cache;
* the argument checks of the public functions (caller errors raise; database errors never do).

:mod:`abcore.assign.assigner` composes this with the store reads (:mod:`abcore.assign.reads`) and the
write-behind buffer (:mod:`abcore.assign.writer`); the hash is :mod:`abcore.assign.hashing`, targeting
:mod:`abcore.assign.targeting`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from abcore.assign import prometheus
from abcore.assign.hashing import bucket, choose_variant, traffic_bucket
from abcore.assign.layers import Gate, LayerDef
from abcore.assign.targeting import evaluate_targeting
from abcore.store.tables import EventType, ExperimentStatus
from abcore.store.values import UnstorableValue, id_of, is_id_text, is_plain_json_object, json_value_problem

_RUNNING = ExperimentStatus.RUNNING.value
_PAUSED = ExperimentStatus.PAUSED.value
_COMPLETED = ExperimentStatus.COMPLETED.value
TRACKABLE_EVENTS = frozenset({EventType.CONVERSION.value, EventType.FEEDBACK.value, EventType.ERROR.value})


# --------------------------------------------------------------------------------------------
# Assignment result and cached experiment definitions
# --------------------------------------------------------------------------------------------


class FrozenConfig(dict):  # type: ignore[type-arg]
    """A read-only dict: variant configs are shared between all callers, so they cannot be mutated."""

    __slots__ = ()

    def _readonly(self, *_args: Any, **_kwargs: Any) -> Any:
        raise TypeError("Assignment.config is read-only; copy it first (dict(a.config))")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _readonly  # type: ignore[assignment]

    def __reduce__(self) -> Any:
        return (FrozenConfig, (dict(self),))


@dataclass(frozen=True, slots=True)
class Assignment:
    """The variant a user is served, and the model it serves (``model_id``, ``model_name``, ``model_version``,
    ``model_config``: None and empty without a model). ``config`` and ``model_config`` are read-only (shared).

    ``is_new`` is True when this process knew of no stored assignment for the user: it served the hash
    and hands the row to the write-behind buffer (``INSERT ... ON CONFLICT DO NOTHING``: a row stored
    meanwhile, or earlier by another process with the same variant, is kept as it is). Where no store read
    is needed (see :func:`decide`) a user stored by another process with the same variant is also
    ``is_new=True`` on its first call here; ``experiment_assignments_total`` counts only rows inserted.
    With ``assign_many(..., persist=False)`` it means: would be stored.
    """

    experiment_id: int
    experiment_name: str
    variant_id: int
    variant_name: str
    model_id: int | None
    model_name: str | None
    config: dict[str, Any]
    is_control: bool
    is_new: bool
    #: The registered version of the variant's model (``ab_models.version``), None without a model.
    model_version: str | None = None
    #: The model's registered config (``ab_models.config``), read-only; empty without a model. abcore does not
    #: merge it with ``config`` (the variant's own); where both apply, the variant's keys win:
    #: ``{**a.model_config, **a.config}``.
    model_config: dict[str, Any] = field(default_factory=lambda: EMPTY_CONFIG)


#: The ``model_config`` of a variant that serves no model (shared, read-only).
EMPTY_CONFIG = FrozenConfig()


@dataclass(frozen=True, slots=True)
class VariantDef:
    """A variant as the assigner caches it, with its model's name, version and config read at load time."""

    id: int
    name: str
    allocation_pct: float
    model_id: int | None
    model_name: str | None
    config: FrozenConfig
    is_control: bool
    model_version: str | None = None
    model_config: FrozenConfig = field(default_factory=lambda: EMPTY_CONFIG)


@dataclass(frozen=True)
class ExperimentDef:
    """An experiment as the assigner caches it, with prebuilt answers and pre-bound metric children."""

    id: int
    name: str
    status: str
    salt: str
    traffic: float
    targeting: tuple[dict[str, Any], ...]
    variants: tuple[VariantDef, ...]
    cumulative: tuple[float, ...]
    winner_index: int | None
    rollout_pct: float
    started_at: Any
    #: True once the split or the traffic share was changed while running/paused (audit log): a stored row
    #: may then differ from the hash, so a user not in the cache is read before being answered.
    changed: bool = False
    #: ``ab``, ``interleaving`` or ``holdout`` (abcore.experiments.schemas.EXPERIMENT_KINDS), and the method
    #: merging the rankers of an interleaving experiment (abcore.assign.interleaving).
    kind: str = "ab"
    interleaving_method: str | None = None
    #: Layer ranges and holdouts a new user must pass (:mod:`abcore.assign.layers`); None: nothing to pass.
    gate: Gate | None = None
    index_of: dict[int, int] = field(init=False, repr=False)
    returning: tuple[Assignment, ...] = field(init=False, repr=False)
    new: tuple[Assignment, ...] = field(init=False, repr=False)
    requests: tuple[Any, ...] = field(init=False, repr=False)
    exposures: tuple[Any, ...] = field(init=False, repr=False)
    assignments: tuple[Any, ...] = field(init=False, repr=False)
    #: Interleaving only (else None and empty): the ``experiment_interleaved_requests_total`` child, the
    #: ``experiment_interleaved_positions_total`` children (one per variant, then ``ranker="none"`` last) and
    #: the ranker name of each owner index ``merge`` returns (None: no one).
    interleaved: Any = field(init=False, repr=False)
    positions: tuple[Any, ...] = field(init=False, repr=False)
    ranker_of: dict[int | None, str | None] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        setter = object.__setattr__
        setter(self, "index_of", {v.id: i for i, v in enumerate(self.variants)})
        for attr, is_new in (("returning", False), ("new", True)):
            setter(
                self,
                attr,
                tuple(
                    Assignment(
                        experiment_id=self.id,
                        experiment_name=self.name,
                        variant_id=v.id,
                        variant_name=v.name,
                        model_id=v.model_id,
                        model_name=v.model_name,
                        config=v.config,
                        is_control=v.is_control,
                        is_new=is_new,
                        model_version=v.model_version,
                        model_config=v.model_config,
                    )
                    for v in self.variants
                ),
            )
        for attr, counter in (
            ("requests", prometheus.REQUESTS),
            ("exposures", prometheus.EXPOSURES),
            ("assignments", prometheus.ASSIGNMENTS),
        ):
            setter(self, attr, tuple(counter.labels(self.name, v.name) for v in self.variants))
        interleaving = self.kind == "interleaving"
        rankers = [v.name for v in self.variants] + [prometheus.NO_RANKER] if interleaving else []
        setter(self, "interleaved", prometheus.INTERLEAVED_REQUESTS.labels(self.name) if interleaving else None)
        setter(self, "positions", tuple(prometheus.INTERLEAVED_POSITIONS.labels(self.name, r) for r in rankers))
        setter(self, "ranker_of", {None: None, **{i: v.name for i, v in enumerate(self.variants)}})

    def proposal(self, user_id: str, attributes: Mapping[str, Any] | None) -> int | None:
        """Variant index a new user would get, or None when the layer, a holdout, targeting or the traffic share
        keeps them out."""
        if self.gate is not None and not self.gate.admits(user_id):
            return None
        if self.targeting and not evaluate_targeting(self.targeting, user_id, attributes):
            return None
        if self.traffic < 1.0 and traffic_bucket(user_id, self.salt) >= self.traffic:
            return None
        return choose_variant(bucket(user_id, self.salt), self.cumulative)

    def winner_for(self, user_id: str, attributes: Mapping[str, Any] | None) -> Assignment | None:
        """Completed experiment: the shipped winner for ``rollout_pct`` % of (targeted) users, else None.

        In a layer the winner is the layer default: it serves only users outside the ranges of the layer's
        running experiments, and no user a running holdout covering it keeps out."""
        if self.winner_index is None:
            return None
        if self.gate is not None and not self.gate.admits(user_id):
            return None
        if self.targeting and not evaluate_targeting(self.targeting, user_id, attributes):
            return None
        if traffic_bucket(user_id, self.salt) >= self.rollout_pct / 100.0:
            return None
        return self.returning[self.winner_index]


@dataclass
class Definitions:
    """Every experiment ``assign`` can answer for, by id and by name, loaded at ``loaded_at`` (monotonic)."""

    by_id: dict[int, ExperimentDef]
    by_name: dict[str, ExperimentDef]
    latest_running: ExperimentDef | None
    loaded_at: float
    #: The layers by name (:class:`~abcore.assign.layers.LayerDef`).
    layers: dict[str, LayerDef] = field(default_factory=dict)

    def find(self, experiment: str | int | None) -> ExperimentDef | None:
        """The definition for a name, an id (an int, or a string of ASCII digits: always an id, never a name), or
        None: the most recently started running one."""
        if experiment is None:
            return self.latest_running
        if type(experiment) is int:
            return self.by_id.get(experiment)
        if isinstance(experiment, str) and is_id_text(experiment):
            number = id_of(experiment)
            return None if number is None else self.by_id.get(number)
        return self.by_name.get(experiment)  # type: ignore[arg-type]


def decide(
    d: ExperimentDef,
    stored_variant_id: int | None,
    user_id: str,
    attributes: Mapping[str, Any] | None,
    *,
    verified: bool,
    read_first: bool = False,
) -> tuple[Assignment | None, bool]:
    """The answer for one user from the cached definition ``d``: ``(answer, needs_read)``. Pure.

    ``stored_variant_id`` is the user's stored variant as far as the caller knows (its cache), or None.
    ``verified=True`` says the store itself was asked (None then means: no stored row) or cannot be
    asked (store trouble: the hash is the answer, *fail open*). With ``verified=False`` and no known row,
    ``needs_read`` is True where a stored row could change the answer: a paused experiment, a user the
    targeting or the traffic share keeps out (a stored row still wins), or an experiment whose split or
    traffic share was changed (``d.changed``) or where this process saw a stored row differ from the
    hash (``read_first``). Otherwise the hash decides and the answer is ``is_new=True``.
    """
    status = d.status
    if status == _COMPLETED:
        return d.winner_for(user_id, attributes), False
    if status != _RUNNING and status != _PAUSED:
        return None, False
    if stored_variant_id is not None:
        index = d.index_of.get(stored_variant_id)
        if index is not None:
            return d.returning[index], False
    proposal = d.proposal(user_id, attributes) if status == _RUNNING else None
    if not verified and (proposal is None or d.changed or read_first):
        return None, True
    if proposal is None:
        return None, False
    return d.new[proposal], False


# --------------------------------------------------------------------------------------------
# Argument checks (caller errors raise; database errors never do)
# --------------------------------------------------------------------------------------------


def check_user_id(user_id: Any) -> None:
    """Raise TypeError unless ``user_id`` is a str, ValueError when it is empty."""
    if type(user_id) is not str:
        if isinstance(user_id, str):
            return
        raise TypeError(f"user_id must be a str, got {type(user_id).__name__}")
    if not user_id:
        raise ValueError("user_id must be a non-empty string")


def check_experiment_ref(experiment: Any) -> None:
    """Raise unless ``experiment`` is a non-empty name, an int id or None (TypeError for other types)."""
    if experiment is None or type(experiment) is str or type(experiment) is int:
        if experiment == "":
            raise ValueError("experiment must be a non-empty name, an id or None")
        return
    if isinstance(experiment, bool) or not isinstance(experiment, str | int):
        raise TypeError(f"experiment must be a name (str), an id (int) or None, got {type(experiment).__name__}")


def check_attributes(attributes: Any, label: str = "attributes object") -> None:
    """Raise TypeError unless ``attributes`` is a mapping or None, and :class:`~abcore.store.values.UnstorableValue`
    (a ValueError) when the store cannot hold it as it would be written (:func:`jsonable`): NaN or infinite
    numbers, lone surrogates, non-text keys, integers beyond 64 bits, nesting deeper than 32 levels
    (:func:`~abcore.store.values.json_value_problem`)."""
    if attributes is None:
        return
    if not isinstance(attributes, Mapping):
        raise TypeError(f"{label.split()[0]} must be a mapping or None, got {type(attributes).__name__}")
    if attributes and not is_plain_json_object(attributes):
        problem = json_value_problem(label, jsonable(attributes))
        if problem is not None:
            raise UnstorableValue(problem)


def jsonable(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``attributes`` that ``json.dumps`` accepts (values it cannot encode become their ``str``)."""
    if not attributes:
        return {}
    try:
        json.dumps(attributes)
        return dict(attributes)
    except (TypeError, ValueError):
        return {str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in attributes.items()}

