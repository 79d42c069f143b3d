"""The DB-less router: a variant name per user from a JSON split config, with the hash of :mod:`abcore.assign.hashing`.

For gateways that route without a store: ``Router.from_json(path).route(user_id)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abcore.assign.cache import check_user_id
from abcore.assign.hashing import bucket, buckets, choose_variant, choose_variants, cumulative_allocations


@dataclass(frozen=True)
class Router:
    """DB-less hash router: ``route(user_id)`` gives a variant name, same bucketing as :class:`Assigner`.

    Built from a JSON split config (``{"experiment_id", "salt", "variants": [{"name", "weight"}]}``);
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
        check_user_id(user_id)
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
