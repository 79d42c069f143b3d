"""Shared code of the layer property tests (``tests/assign/test_layer_properties.py``) and their benchmark.

Rows are built as the store holds them and handed to :func:`abcore.assign.layers.plan`, the function the
assigner builds its gates with; counts over many users use the vectorised hash (:func:`layer_units`,
:func:`abcore.assign.hashing.buckets`), which the tests check against the scalar one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from scipy import stats

from abcore.assign.hashing import TRAFFIC_SEED, buckets
from abcore.assign.layers import layer_units

T = datetime(2026, 1, 1, tzinfo=UTC)


def experiment_row(
    exp_id: int,
    *,
    layer_id: int | None = None,
    ranges: list[list[int]] | None = None,
    status: str = "running",
    kind: str = "ab",
    winner: int | None = None,
    covers: list[int] | None = None,
    salt: str | None = None,
    updated: int = 0,
) -> dict[str, Any]:
    """An ``ab_experiments`` row as :func:`~abcore.assign.layers.plan` reads it."""
    return {
        "id": exp_id, "kind": kind, "status": status, "salt": salt or f"exp-{exp_id}", "layer_id": layer_id,
        "layer_ranges": ranges or [], "winner_variant_id": winner, "holdout_layers": covers,
        "updated_at": T.replace(second=updated),
    }


def holdout_variants(percent: float) -> list[dict[str, Any]]:
    """The variant rows of a holdout keeping ``percent`` % out."""
    return [{"name": "holdout", "allocation_pct": percent}, {"name": "exposed", "allocation_pct": 100.0 - percent}]


def independence_pvalues(salts: int, users: int, seed: int = 0) -> np.ndarray:
    """Chi-square p-values of the 2x2 table of arms of two 50/50 experiments in two layers (each holding 50 %),
    over the users both hold.

    Each layer's membership comes from its layer hash, each arm from its experiment's variant hash
    (:func:`abcore.assign.hashing.buckets`); across layers both are independent, so the p-values are uniform.
    The p-values come from :func:`scipy.stats.chi2_contingency` (no continuity correction).
    """
    rng = np.random.default_rng(seed)
    ids = [f"user-{i}" for i in range(users)]
    out = np.empty(salts)
    for k in range(salts):
        tag = rng.integers(1 << 62)
        in_one = layer_units(ids, f"L1-{tag}") < 5_000  # the experiment of layer 1 holds [0, 5000)
        in_two = layer_units(ids, f"L2-{tag}") >= 5_000  # the one of layer 2 holds [5000, 10000)
        arm_one = buckets(ids, f"E1-{tag}") < 0.5
        arm_two = buckets(ids, f"E2-{tag}") < 0.5
        both = in_one & in_two
        table = np.array(
            [[np.sum(arm_one[both] & arm_two[both]), np.sum(arm_one[both] & ~arm_two[both])],
             [np.sum(~arm_one[both] & arm_two[both]), np.sum(~arm_one[both] & ~arm_two[both])]]
        )
        out[k] = stats.chi2_contingency(table, correction=False).pvalue
    return out


def traffic_mask(ids: list[str], salt: str, traffic: float) -> np.ndarray:
    """Users the traffic share ``traffic`` of the experiment with ``salt`` lets in (the traffic hash)."""
    return buckets(ids, salt, seed=TRAFFIC_SEED) < traffic
