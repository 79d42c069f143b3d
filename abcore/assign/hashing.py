"""The hash behind every assignment (version :data:`HASH_VERSION`, pinned by ``tests/data/golden_assignment.json``).

``bucket(user_id, salt)`` = MurmurHash3 x86 32-bit (seed 0, unsigned) of the UTF-8 bytes of
``f"{salt}:{user_id}"`` divided by 2**32, in [0, 1); ``choose_variant(bucket, cumulative_allocations(weights))``
picks the variant; ``traffic_bucket`` (seed :data:`TRAFFIC_SEED`) decides the traffic share and the rollout
of a shipped winner, independently, so raising either share only adds users.

Pure functions, shared by :class:`~abcore.assign.router.Router`, :class:`~abcore.assign.assigner.Assigner`
and the demo data generator.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence

import mmh3
import numpy as np

#: Version of the hashing scheme below; golden vectors pin it. Never change the functions for a version.
HASH_VERSION = 1
#: MurmurHash3 seed of the traffic-share / rollout hash (the variant hash uses seed 0).
TRAFFIC_SEED = 1
_TWO_32 = 4294967296.0
_mmh3_hash = mmh3.hash


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
