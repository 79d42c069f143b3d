"""Prometheus metrics for recommender services that use :mod:`abcore.assign`.

abcore counts, per experiment and variant, every request ``assign`` answered with a
variant (``experiment_reco_requests_total``), every first-time assignment
(``experiment_assignments_total``) and every exposure recorded
(``experiment_exposures_total``). A merged list of an interleaving experiment is served by all its rankers at
once, so ``interleave`` counts it apart, per experiment: one request in
``experiment_interleaved_requests_total`` for every merged list returned, and the positions of the lists
served in ``experiment_interleaved_positions_total``, per ranker credited (``ranker="none"``: positions the
tie rule credits to no one); it counts nothing in ``experiment_reco_requests_total``. The caller reports its own latency with
:func:`observe_latency` (``experiment_reco_latency_ms`` histogram). All live in
:data:`REGISTRY`, which the caller exposes on its own ``/metrics`` endpoint::

    from prometheus_client import generate_latest
    from abcore.assign.prometheus import REGISTRY, observe_latency

    observe_latency("ranker_v2", "treatment", 12.5)
    body = generate_latest(REGISTRY)          # bytes in the Prometheus text format

Label values are experiment, variant and ranker *names* (bounded cardinality). The
counters are pre-bound per (experiment, variant) by :mod:`abcore.assign`, so
counting costs one lock-protected increment on the request path (``interleave``: one for the request and one
per ranker credited in the list).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

#: Latency buckets in milliseconds (recommendation requests: sub-ms cache hits up to multi-second timeouts).
LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)

#: The registry holding every abcore metric; pass it to ``prometheus_client.generate_latest``.
REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "experiment_reco_requests",
    "Requests answered with an experiment variant (one per assign call that returned a variant).",
    ["experiment", "variant"],
    registry=REGISTRY,
)
ASSIGNMENTS = Counter(
    "experiment_assignments",
    "First-time assignments of users to a variant stored by this process.",
    ["experiment", "variant"],
    registry=REGISTRY,
)
EXPOSURES = Counter(
    "experiment_exposures",
    "Exposure events recorded by this process.",
    ["experiment", "variant"],
    registry=REGISTRY,
)
INTERLEAVED_REQUESTS = Counter(
    "experiment_interleaved_requests",
    "Requests answered with a merged list of an interleaving experiment's rankers (one per interleave call that "
    "returned a list).",
    ["experiment"],
    registry=REGISTRY,
)
INTERLEAVED_POSITIONS = Counter(
    "experiment_interleaved_positions",
    "Positions of the merged lists served, per ranker credited with them (ranker=\"none\": the tie rule credited "
    "no one).",
    ["experiment", "ranker"],
    registry=REGISTRY,
)
#: The ``ranker`` label of positions credited to no one (``Interleaving.owners`` None).
NO_RANKER = "none"
LATENCY_MS = Histogram(
    "experiment_reco_latency_ms",
    "Caller-reported recommendation latency in milliseconds, per experiment and variant.",
    ["experiment", "variant"],
    buckets=LATENCY_BUCKETS_MS,
    registry=REGISTRY,
)
ERRORS = Counter(
    "experiment_assign_errors",
    "Database or internal errors that made abcore.assign answer None or drop a write.",
    ["kind"],
    registry=REGISTRY,
)

# Write-behind (abcore.assign.writer): what could not be written, what the store rejected, what was corrected.
DROPPED = Counter(
    "experiment_assign_dropped",
    "Assignment rows / events dropped unwritten: the buffer was full (max_pending) while the store was in trouble, "
    "or the exit-time flush gave up.",
    ["kind"],
    registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "experiment_assign_dead_letters",
    "Assignment rows / events the store rejected on their own (written to the dead-letter file, never retried).",
    ["kind"],
    registry=REGISTRY,
)
CORRECTED = Counter(
    "experiment_assign_corrected",
    "Users served a variant that differed from the row another process had stored (the cache was corrected).",
    ["experiment"],
    registry=REGISTRY,
)


def observe_latency(experiment: str, variant: str | None, ms: float) -> None:
    """Record one request latency of ``ms`` milliseconds for ``experiment`` / ``variant``.

    ``variant=None`` (the caller served its default because ``assign`` returned None)
    is recorded under the label ``"none"``. Negative or non-finite values raise ValueError.
    """
    value = float(ms)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"latency must be a finite number of milliseconds >= 0, got {ms!r}")
    LATENCY_MS.labels(str(experiment), "none" if variant is None else str(variant)).observe(value)


def metrics_text() -> str:
    """The current exposition text of :data:`REGISTRY` (what ``/metrics`` would serve)."""
    return generate_latest(REGISTRY).decode("utf-8")
