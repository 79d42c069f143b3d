"""The request path: deterministic, sticky, fast assignment and event tracking.

What recommender code imports::

    from abcore.assign import assign, track, flush

    a = assign("user-42", "ranker_v2", attributes={"country": "DE"})   # Assignment | None
    track("user-42", "ranker_v2", "watch_completion", 1.0)             # True if recorded
    shown = interleave("user-42", "als_vs_pop", {"als": als, "pop": pop})  # Interleaving | None
    flush()                                                            # write buffered rows and events now

This package never imports pandas, scipy or :mod:`abcore.analysis` (an import contract checks it), so
importing it costs a request path nothing it does not use.
"""

from abcore.assign.assigner import Assigner
from abcore.assign.cache import Assignment, FrozenConfig
from abcore.assign.defaults import (
    assign,
    assign_layer,
    assign_many,
    assign_user_to_variant,
    configure,
    default_assigner,
    flush,
    interleave,
    track,
)
from abcore.assign.hashing import (
    HASH_VERSION,
    TRAFFIC_SEED,
    bucket,
    buckets,
    choose_variant,
    choose_variants,
    cumulative_allocations,
    traffic_bucket,
)
from abcore.assign.interleave import Interleaving
from abcore.assign.router import Router

__all__ = [
    "HASH_VERSION",
    "TRAFFIC_SEED",
    "Assigner",
    "Assignment",
    "FrozenConfig",
    "Interleaving",
    "Router",
    "assign",
    "assign_layer",
    "assign_many",
    "assign_user_to_variant",
    "bucket",
    "buckets",
    "choose_variant",
    "choose_variants",
    "configure",
    "cumulative_allocations",
    "default_assigner",
    "flush",
    "interleave",
    "track",
    "traffic_bucket",
]
