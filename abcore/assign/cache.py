"""The decision: pure functions over cached experiment definitions (no I/O, no threads).

* the hash (version :data:`HASH_VERSION`, pinned by ``tests/data/golden_assignment.json``):
  ``bucket(user_id, salt)`` = MurmurHash3 x86 32-bit (seed 0, unsigned) of the UTF-8 bytes of
  ``f"{salt}:{user_id}"`` divided by 2**32, in [0, 1); ``choose_variant(bucket, cumulative_allocations(weights))``
  picks the variant; ``traffic_bucket`` (seed :data:`TRAFFIC_SEED`) decides the traffic share and the rollout
  of a shipped winner, independently, so raising either share only adds users;
* :class:`Router`, the DB-less router of seed 001;
* the cached definitions (:class:`ExperimentDef`, :class:`Definitions`) with prebuilt :class:`Assignment`
  answers, and :func:`decide`, the answer for one user from the definitions and the stored-row cache.

:mod:`abcore.assign` composes this with the store reads (:mod:`abcore.assign.reads`) and the write-behind
buffer (:mod:`abcore.assign.writer`).
"""

from __future__ import annotations

import json
import logging
import os
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mmh3
import numpy as np

from abcore.assign import prometheus as metrics
from abcore.store.tables import EventType, ExperimentStatus

logger = logging.getLogger("abcore.assign")

#: Version of the hashing scheme below; golden vectors pin it. Never change the functions for a version.
HASH_VERSION = 1
#: MurmurHash3 seed of the traffic-share / rollout hash (the variant hash uses seed 0).
TRAFFIC_SEED = 1
_TWO_32 = 4294967296.0

_RUNNING = ExperimentStatus.RUNNING.value
_PAUSED = ExperimentStatus.PAUSED.value
_COMPLETED = ExperimentStatus.COMPLETED.value
_TRACKABLE_EVENTS = frozenset({EventType.CONVERSION.value, EventType.FEEDBACK.value, EventType.ERROR.value})
_mmh3_hash = mmh3.hash


# --------------------------------------------------------------------------------------------
# Pure bucketing (shared by Router, Assigner and the demo data generator)
# --------------------------------------------------------------------------------------------


def bucket(user_id: str, salt: str) -> float:
    """The user's variant bucket in [0, 1): mmh3 32-bit unsigned of ``f"{salt}:{user_id}"`` / 2**32.

    Pure and stable across processes, machines and versions (golden vectors pin it).

    >>> bucket("user-42", "ranker_v2")  # doctest: +SKIP
    0.7011...
    """
    return _mmh3_hash(f"{salt}:{user_id}", 0, False) / _TWO_32


def traffic_bucket(user_id: str, salt: str) -> float:
    """The independent draw in [0, 1) that decides the traffic share and a winner's rollout.

    Same key as :func:`bucket`, MurmurHash3 seed :data:`TRAFFIC_SEED`; a user enters an experiment
    with traffic share ``s`` when ``traffic_bucket < s``, so raising ``s`` only adds users.
    """
    return _mmh3_hash(f"{salt}:{user_id}", TRAFFIC_SEED, False) / _TWO_32


def buckets(user_ids: Iterable[str], salt: str, *, seed: int = 0) -> np.ndarray:
    """:func:`bucket` (``seed=0``) or :func:`traffic_bucket` (``seed=TRAFFIC_SEED``) for many users, as float64."""
    prefix = f"{salt}:"
    hashes = np.fromiter((_mmh3_hash(prefix + u, seed, False) for u in user_ids), dtype=np.float64)
    hashes /= _TWO_32
    return hashes


def cumulative_allocations(weights: Sequence[float]) -> tuple[float, ...]:
    """Upper bucket bounds of each variant: running sums of ``weights`` normalised to 1.

    Weights may be percents (summing to 100) or any non-negative relative weights; the last bound
    is exactly 1.0 so every bucket in [0, 1) maps to a variant. Zero-weight variants get an empty range.
    Raises ValueError for no weights, a negative or non-finite weight, or a zero total.
    """
    values = [float(w) for w in weights]
    if not values:
        raise ValueError("at least one variant weight is needed")
    if any(not (w >= 0.0) or w == float("inf") for w in values):
        raise ValueError(f"variant weights must be finite and >= 0, got {list(weights)!r}")
    total = sum(values)
    if total <= 0.0:
        raise ValueError("variant weights must not all be zero")
    bounds: list[float] = []
    running = 0.0
    for w in values:
        running += w
        bounds.append(running / total)
    last_positive = max(i for i, w in enumerate(values) if w > 0.0)
    for i in range(last_positive, len(bounds)):
        bounds[i] = 1.0
    return tuple(bounds)


def choose_variant(bucket_value: float, cumulative: Sequence[float]) -> int:
    """Index of the variant whose range ``[cumulative[i-1], cumulative[i])`` holds ``bucket_value``."""
    index = bisect_right(cumulative, bucket_value)
    last = len(cumulative) - 1
    return index if index <= last else last


def choose_variants(bucket_values: np.ndarray, cumulative: Sequence[float]) -> np.ndarray:
    """Vectorised :func:`choose_variant`: variant index per bucket (int64 array)."""
    bounds = np.asarray(cumulative, dtype=np.float64)
    index = np.searchsorted(bounds, bucket_values, side="right")
    np.minimum(index, len(bounds) - 1, out=index)
    return index


# --------------------------------------------------------------------------------------------
# DB-less router (seed 001: gateways with a JSON config)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Router:
    """DB-less hash router: ``route(user_id)`` gives a variant name, same bucketing as :class:`Assigner`.

    Built from seed 001's JSON (``{"experiment_id", "salt", "variants": [{"name", "weight"}]}``);
    weights are relative and normalised. Without ``salt`` the experiment id is the salt.
    """

    experiment_id: str
    salt: str
    names: tuple[str, ...]
    weights: tuple[float, ...]
    cumulative: tuple[float, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("a router needs at least one variant")
        if len(self.names) != len(self.weights):
            raise ValueError("names and weights must have the same length")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"variant names must be unique, got {list(self.names)!r}")
        object.__setattr__(self, "cumulative", cumulative_allocations(self.weights))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> Router:
        """Router from a parsed config mapping (see class docstring); raises ValueError if malformed."""
        if not isinstance(config, Mapping):
            raise ValueError("router config must be a JSON object")
        experiment_id = config.get("experiment_id")
        if not isinstance(experiment_id, str) or not experiment_id:
            raise ValueError("router config needs a non-empty string 'experiment_id'")
        salt = config.get("salt") or experiment_id
        if not isinstance(salt, str):
            raise ValueError("router config 'salt' must be a string")
        variants = config.get("variants")
        if not isinstance(variants, list) or not variants:
            raise ValueError("router config needs a non-empty 'variants' list")
        names: list[str] = []
        weights: list[float] = []
        for item in variants:
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
                raise ValueError(f"each variant needs a string 'name' and a numeric 'weight', got {item!r}")
            weight = item.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, int | float):
                raise ValueError(f"variant {item['name']!r}: weight must be a number, got {weight!r}")
            names.append(item["name"])
            weights.append(float(weight))
        return cls(experiment_id=experiment_id, salt=salt, names=tuple(names), weights=tuple(weights))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Router:
        """Router from a JSON file such as ``artifacts/experiments/als_vs_pop.json``."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def route(self, user_id: str) -> str:
        """The variant name for ``user_id`` (deterministic: :func:`bucket` + :func:`choose_variant`)."""
        _check_user_id(user_id)
        return self.names[choose_variant(bucket(user_id, self.salt), self.cumulative)]

    def route_many(self, user_ids: Sequence[str]) -> list[str]:
        """:meth:`route` for many users (vectorised)."""
        index = choose_variants(buckets(user_ids, self.salt), self.cumulative)
        names = self.names
        return [names[i] for i in index.tolist()]

    @property
    def shares(self) -> dict[str, float]:
        """Normalised share of each variant (sums to 1)."""
        total = sum(self.weights)
        return {n: w / total for n, w in zip(self.names, self.weights, strict=True)}


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
    """The variant a user is served. ``config`` is read-only (shared).

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


@dataclass(frozen=True, slots=True)
class _VariantDef:
    id: int
    name: str
    allocation_pct: float
    model_id: int | None
    model_name: str | None
    config: FrozenConfig
    is_control: bool


@dataclass(frozen=True)
class _ExperimentDef:
    """An experiment as the assigner caches it, with prebuilt answers and pre-bound metric children."""

    id: int
    name: str
    status: str
    salt: str
    traffic: float
    targeting: tuple[dict[str, Any], ...]
    variants: tuple[_VariantDef, ...]
    cumulative: tuple[float, ...]
    winner_index: int | None
    rollout_pct: float
    started_at: Any
    #: True once the split or the traffic share was changed while running/paused (audit log): a stored row
    #: may then differ from the hash, so a user not in the cache is read before being answered.
    changed: bool = False
    index_of: dict[int, int] = field(init=False, repr=False)
    returning: tuple[Assignment, ...] = field(init=False, repr=False)
    new: tuple[Assignment, ...] = field(init=False, repr=False)
    requests: tuple[Any, ...] = field(init=False, repr=False)
    exposures: tuple[Any, ...] = field(init=False, repr=False)
    assignments: tuple[Any, ...] = field(init=False, repr=False)

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
                    )
                    for v in self.variants
                ),
            )
        for attr, counter in (
            ("requests", metrics.REQUESTS),
            ("exposures", metrics.EXPOSURES),
            ("assignments", metrics.ASSIGNMENTS),
        ):
            setter(self, attr, tuple(counter.labels(self.name, v.name) for v in self.variants))

    def proposal(self, user_id: str, attributes: Mapping[str, Any] | None) -> int | None:
        """Variant index a new user would get, or None when targeting or the traffic share keeps them out."""
        if self.targeting and not _targeting(list(self.targeting), user_id, dict(attributes or {})):
            return None
        if self.traffic < 1.0 and traffic_bucket(user_id, self.salt) >= self.traffic:
            return None
        return choose_variant(bucket(user_id, self.salt), self.cumulative)

    def winner_for(self, user_id: str, attributes: Mapping[str, Any] | None) -> Assignment | None:
        """Completed experiment: the shipped winner for ``rollout_pct`` % of (targeted) users, else None."""
        if self.winner_index is None:
            return None
        if self.targeting and not _targeting(list(self.targeting), user_id, dict(attributes or {})):
            return None
        if traffic_bucket(user_id, self.salt) >= self.rollout_pct / 100.0:
            return None
        return self.returning[self.winner_index]


_evaluate_targeting: Callable[..., bool] | None = None


def _targeting(rules: list[dict[str, Any]], user_id: str, attributes: dict[str, Any]) -> bool:
    """Delegates to the one implementation, :func:`abcore.experiments.lifecycle.evaluate_targeting` (imported once)."""
    global _evaluate_targeting
    if _evaluate_targeting is None:
        from abcore.experiments.lifecycle import evaluate_targeting

        _evaluate_targeting = evaluate_targeting
    return bool(_evaluate_targeting(rules, user_id, attributes))


@dataclass
class _Definitions:
    """Every experiment ``assign`` can answer for, by id and by name, loaded at ``loaded_at`` (monotonic)."""

    by_id: dict[int, _ExperimentDef]
    by_name: dict[str, _ExperimentDef]
    latest_running: _ExperimentDef | None
    loaded_at: float

    def find(self, experiment: str | int | None) -> _ExperimentDef | None:
        """The definition for a name, an id (or a string of digits), or None: the most recently started running one."""
        if experiment is None:
            return self.latest_running
        if type(experiment) is int:
            return self.by_id.get(experiment)
        found = self.by_name.get(experiment)  # type: ignore[arg-type]
        if found is None and isinstance(experiment, str) and experiment.isdigit():
            found = self.by_id.get(int(experiment))
        return found


def decide(
    d: _ExperimentDef,
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


def _check_user_id(user_id: Any) -> None:
    if type(user_id) is not str:
        if isinstance(user_id, str):
            return
        raise TypeError(f"user_id must be a str, got {type(user_id).__name__}")
    if not user_id:
        raise ValueError("user_id must be a non-empty string")


def _check_experiment_ref(experiment: Any) -> None:
    if experiment is None or type(experiment) is str or type(experiment) is int:
        if experiment == "":
            raise ValueError("experiment must be a non-empty name, an id or None")
        return
    if isinstance(experiment, bool) or not isinstance(experiment, str | int):
        raise TypeError(f"experiment must be a name (str), an id (int) or None, got {type(experiment).__name__}")


def _check_attributes(attributes: Any) -> None:
    if attributes is not None and not isinstance(attributes, Mapping):
        raise TypeError(f"attributes must be a mapping or None, got {type(attributes).__name__}")


def _jsonable(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    if not attributes:
        return {}
    try:
        json.dumps(attributes)
        return dict(attributes)
    except (TypeError, ValueError):
        return {str(k): v if isinstance(v, str | int | float | bool | type(None)) else str(v) for k, v in attributes.items()}

