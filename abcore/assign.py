"""Deterministic, sticky, fast assignment and event tracking: what recommender code imports.

Public contract (see README / DESIGN.md)::

    from abcore.assign import assign, assign_many, assign_user_to_variant, track, flush, bucket, Assignment

    a = assign("user-42", "ranker_v2", attributes={"country": "DE"})   # Assignment | None
    track("user-42", "ranker_v2", "watch_completion", 1.0)             # True if recorded
    flush()                                                            # write buffered events now

Hashing (version :data:`HASH_VERSION`, pinned by ``tests/data/golden_assignment.json``):

* ``bucket(user_id, salt)`` = MurmurHash3 x86 32-bit (seed 0, unsigned) of the UTF-8 bytes of
  ``f"{salt}:{user_id}"`` divided by 2**32, in [0, 1). It picks the variant:
  ``choose_variant(bucket, cumulative_allocations(weights))``.
* ``traffic_bucket(user_id, salt)``: the same key hashed with seed :data:`TRAFFIC_SEED` (1), an
  independent draw that decides the traffic share (user enters when ``traffic_bucket < share``)
  and the rollout of a shipped winner. Raising either share only adds users.

Writes: the assignment row (``ab_user_assignments``) is written synchronously with
``INSERT ... ON CONFLICT DO NOTHING`` and read back, so concurrent processes always agree on
the stored row. Events (``user_assignment``, ``exposure``, ``track``) are buffered and flushed
by a background thread every ``flush_interval`` seconds, when ``max_buffer`` events are waiting,
on :func:`flush` and at interpreter exit. A hard crash (SIGKILL, power loss) loses at most the
events buffered since the last flush (<= ``flush_interval`` seconds); assignment rows are never lost.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import json
import logging
import os
import threading
import time
import weakref
from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

import mmh3
import numpy as np
from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection, Engine

from abcore import prometheus as metrics
from abcore.models import (
    EventType,
    Experiment,
    ExperimentEvent,
    ExperimentStatus,
    Model,
    UserAssignment,
    Variant,
    utcnow,
)

__all__ = [
    "HASH_VERSION",
    "TRAFFIC_SEED",
    "Assigner",
    "Assignment",
    "Router",
    "assign",
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
    "track",
    "traffic_bucket",
]

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
_EVENT_COLUMNS = (
    "experiment_id",
    "variant_id",
    "user_id",
    "event_type",
    "metric_name",
    "value",
    "request_id",
    "properties",
    "ts",
)


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

    ``is_new`` is True when no stored assignment existed for the user before this call (the call
    stored it; with ``assign_many(..., persist=False)`` it would have been stored).
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
    """Delegates to the one implementation, :func:`abcore.experiments.evaluate_targeting` (imported once)."""
    global _evaluate_targeting
    if _evaluate_targeting is None:
        from abcore.experiments import evaluate_targeting

        _evaluate_targeting = evaluate_targeting
    return bool(_evaluate_targeting(rules, user_id, attributes))


@dataclass
class _Definitions:
    by_id: dict[int, _ExperimentDef]
    by_name: dict[str, _ExperimentDef]
    latest_running: _ExperimentDef | None
    loaded_at: float


def _load_definitions(connection: Connection) -> _Definitions:
    """Every experiment assign can answer for: running, paused, and completed with a shipped winner."""
    exp = Experiment.__table__
    var = Variant.__table__
    mod = Model.__table__
    experiments = connection.execute(
        select(exp).where(
            or_(
                exp.c.status.in_([_RUNNING, _PAUSED]),
                and_(exp.c.status == _COMPLETED, exp.c.winner_variant_id.is_not(None)),
            )
        )
    ).mappings().all()
    ids = [e["id"] for e in experiments]
    variants_by_exp: dict[int, list[Any]] = {i: [] for i in ids}
    if ids:
        rows = connection.execute(
            select(var, mod.c.name.label("model_name"))
            .select_from(var.outerjoin(mod, mod.c.id == var.c.model_id))
            .where(var.c.experiment_id.in_(ids))
            .order_by(var.c.experiment_id, var.c.position, var.c.id)
        ).mappings().all()
        for row in rows:
            variants_by_exp[row["experiment_id"]].append(row)
    by_id: dict[int, _ExperimentDef] = {}
    for e in experiments:
        rows = variants_by_exp[e["id"]]
        if not rows:
            continue
        variants = tuple(
            _VariantDef(
                id=r["id"],
                name=r["name"],
                allocation_pct=float(r["allocation_pct"]),
                model_id=r["model_id"],
                model_name=r["model_name"],
                config=FrozenConfig(r["config"] or {}),
                is_control=bool(r["is_control"]),
            )
            for r in rows
        )
        try:
            cumulative = cumulative_allocations([v.allocation_pct for v in variants])
        except ValueError:
            logger.error("experiment %r has invalid allocations; it is not served", e["name"])
            continue
        winner_index = next((i for i, v in enumerate(variants) if v.id == e["winner_variant_id"]), None)
        rollout = e["rollout_pct"]
        by_id[e["id"]] = _ExperimentDef(
            id=e["id"],
            name=e["name"],
            status=e["status"],
            salt=e["salt"],
            traffic=float(e["traffic_allocation"]),
            targeting=tuple(e["targeting"] or ()),
            variants=variants,
            cumulative=cumulative,
            winner_index=winner_index,
            rollout_pct=100.0 if rollout is None else float(rollout),
            started_at=e["started_at"],
        )
    running = [d for d in by_id.values() if d.status == _RUNNING]
    latest = max(running, key=lambda d: (d.started_at is not None, d.started_at or 0, d.id), default=None)
    return _Definitions(
        by_id=by_id,
        by_name={d.name: d for d in by_id.values()},
        latest_running=latest,
        loaded_at=time.monotonic(),
    )


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


def _bind_processor(type_: Any, dialect: Any) -> Callable[[Any], Any]:
    """The exact bind conversion SQLAlchemy applies for ``type_`` on ``dialect`` (identity when none)."""
    processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor if processor is not None else (lambda value: value)


class _Unavailable(Exception):
    """The database did not answer within the deadline, or the circuit breaker is open."""


_T = TypeVar("_T")
_LIVE: weakref.WeakSet[Assigner] = weakref.WeakSet()


# --------------------------------------------------------------------------------------------
# The assigner
# --------------------------------------------------------------------------------------------


class Assigner:
    """Sticky assignment + buffered event tracking against one database.

    Parameters
    ----------
    engine:
        SQLAlchemy engine (or URL, then the assigner owns and disposes the engine) of a migrated abcore store.
    flush_interval:
        Seconds between background flushes of buffered events (a hard crash loses at most this much).
    max_buffer:
        Flush as soon as this many events are buffered.
    cache_ttl:
        Experiment definitions are reloaded at least this often (seconds): pauses/stops apply within it.
    timeout:
        Deadline in seconds for the database work of one ``assign``/``track`` call; past it the call
        returns None/False (the answer is bounded by ``timeout`` plus a few microseconds).
    retry_after:
        After a database failure, uncached calls answer None immediately for this many seconds.
    max_cached_users:
        Size of the in-process cache of stored assignments (oldest entries are dropped first).
    max_pending:
        Events kept while the database is down; beyond it the oldest are dropped (and counted).
    stale_ttl:
        While the database is down, cached definitions keep being served for at most this long.
    """

    def __init__(
        self,
        engine: Engine | str,
        *,
        flush_interval: float = 1.0,
        max_buffer: int = 5000,
        cache_ttl: float = 5.0,
        timeout: float = 0.15,
        retry_after: float = 1.0,
        max_cached_users: int = 1_000_000,
        max_pending: int = 200_000,
        stale_ttl: float = 60.0,
        db_workers: int = 4,
        log_interval: float = 60.0,
    ) -> None:
        if isinstance(engine, str):
            from abcore.db import make_engine

            self._engine = make_engine(engine)
            self._owns_engine = True
        elif isinstance(engine, Engine):
            self._engine = engine
            self._owns_engine = False
        else:
            raise TypeError(f"engine must be a SQLAlchemy Engine or a URL string, got {type(engine).__name__}")
        if flush_interval <= 0 or cache_ttl < 0 or timeout <= 0 or max_buffer < 1:
            raise ValueError("flush_interval and timeout must be > 0, cache_ttl >= 0, max_buffer >= 1")
        self.flush_interval = float(flush_interval)
        self.max_buffer = int(max_buffer)
        self.cache_ttl = float(cache_ttl)
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self.max_cached_users = int(max_cached_users)
        self.max_pending = int(max_pending)
        self.stale_ttl = float(stale_ttl)
        self.log_interval = float(log_interval)
        self._db_workers = int(db_workers)
        self._dialect = self._engine.dialect.name
        self._defs: _Definitions | None = None
        self._defs_expiry = 0.0
        self._last_miss_refresh = 0.0
        self._refresh_lock = threading.Lock()
        self._sticky: dict[tuple[int, str], int] = {}
        self._absent: dict[tuple[int, str], float] = {}
        self._events: list[tuple[Any, ...]] = []
        self._events_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._broken_until = 0.0
        self._last_log = -1e18
        self._suppressed = 0
        self.dropped_events = 0
        self._closed = False
        _LIVE.add(self)

    # ---------------------------------------------------------------- infrastructure

    @property
    def engine(self) -> Engine:
        return self._engine

    def _log_failure(self, what: str, exc: BaseException | None) -> None:
        """Log a database/internal failure at most once per ``log_interval`` (default: a minute)."""
        metrics.ERRORS.labels(what).inc()
        now = time.monotonic()
        if now - self._last_log >= self.log_interval:
            suppressed, self._suppressed = self._suppressed, 0
            self._last_log = now
            logger.warning(
                "abcore.assign: %s failed (%s: %s); answering None/keeping events buffered%s",
                what,
                type(exc).__name__ if exc else "timeout",
                exc if exc else f"no answer within {self.timeout * 1000:.0f} ms",
                f" ({suppressed} similar messages suppressed)" if suppressed else "",
            )
        else:
            self._suppressed += 1

    def _call(self, fn: Callable[..., _T], *args: Any, deadline: float) -> _T:
        """Run ``fn(*args)`` on a database worker thread, waiting until ``deadline`` (``time.monotonic()``) at most.

        Raises :class:`_Unavailable` when the breaker is open or the deadline passes; re-raises the
        function's own exception otherwise. Either opens the breaker for ``retry_after`` seconds.
        """
        if time.monotonic() < self._broken_until:
            raise _Unavailable("database marked unavailable")
        executor = self._executor
        if executor is None:
            with self._thread_lock:
                if self._executor is None:
                    self._executor = ThreadPoolExecutor(self._db_workers, thread_name_prefix="abcore-assign-db")
                executor = self._executor
        future = executor.submit(fn, *args)
        try:
            return future.result(timeout=max(deadline - time.monotonic(), 0.0005))
        except FutureTimeout:
            self._broken_until = time.monotonic() + self.retry_after
            raise _Unavailable("database timeout") from None
        except Exception:
            self._broken_until = time.monotonic() + self.retry_after
            raise

    def _ensure_flusher(self) -> None:
        if self._thread is not None or self._closed:
            return
        with self._thread_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._flush_loop, name="abcore-assign-flush", daemon=True)
                thread.start()
                self._thread = thread

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._events:
                self.flush()

    def _buffer(self, row: tuple[Any, ...]) -> None:
        with self._events_lock:  # flush() swaps the list under the same lock: no event can slip between
            events = self._events
            events.append(row)
            size = len(events)
        if self._thread is None:
            self._ensure_flusher()
        if size >= self.max_buffer and not self._wake.is_set():
            self._wake.set()

    def _event(
        self,
        d: _ExperimentDef,
        variant_id: int | None,
        user_id: str,
        event_type: str,
        metric_name: str | None = None,
        value: float | None = None,
        request_id: str | None = None,
        properties: dict[str, Any] | None = None,
    ) -> tuple[Any, ...]:
        """One buffered event, in the column order of :data:`_EVENT_COLUMNS`."""
        return (d.id, variant_id, user_id, event_type, metric_name, value, request_id, properties or {}, utcnow())

    def _write_events(self, connection: Connection, batch: list[tuple[Any, ...]]) -> None:
        """Insert events with one driver-level executemany (bind processing done once per column type)."""
        table = ExperimentEvent.__table__
        dialect = self._engine.dialect
        ts_proc = _bind_processor(table.c.ts.type, dialect)
        dumps = json.dumps
        if self._dialect == "sqlite":
            memo: dict[Any, Any] = {}  # events of one batch call share their timestamp object

            def ts_of(ts: Any) -> Any:
                text = memo.get(ts)
                if text is None:
                    text = memo[ts] = ts_proc(ts)
                return text

            rows = [(*e[:7], dumps(e[7]) if e[7] else "{}", ts_of(e[8])) for e in batch]
            marks = ", ".join("?" * len(_EVENT_COLUMNS))
            sql = f"INSERT INTO {table.name} ({', '.join(_EVENT_COLUMNS)}) VALUES ({marks})"
            for start in range(0, len(rows), 10_000):
                connection.exec_driver_sql(sql, rows[start : start + 10_000])
            return
        # PostgreSQL: COPY is an order of magnitude faster than INSERT for the event log
        raw = connection.connection.dbapi_connection
        statement = f"COPY {table.name} ({', '.join(_EVENT_COLUMNS)}) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for e in batch:
                copy.write_row((*e[:7], dumps(e[7]) if e[7] else "{}", e[8]))

    def flush(self) -> int:
        """Write every buffered event now; returns how many were written (0 on database trouble, kept for later)."""
        with self._flush_lock:
            with self._events_lock:
                batch, self._events = self._events, []
            if not batch:
                return 0
            try:
                with self._engine.begin() as connection:
                    self._write_events(connection, batch)
                return len(batch)
            except Exception as exc:  # noqa: BLE001 - never raise into the caller; keep events for the next flush
                self._log_failure("flush", exc)
                with self._events_lock:
                    merged = batch + self._events
                    overflow = len(merged) - self.max_pending
                    if overflow > 0:
                        self.dropped_events += overflow
                        metrics.ERRORS.labels("dropped_events").inc(overflow)
                        merged = merged[overflow:]
                    self._events = merged
                return 0

    def pending_events(self) -> int:
        """Events buffered and not yet written."""
        return len(self._events)

    def close(self) -> None:
        """Flush, stop the background threads and (if it owns it) dispose the engine."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self.flush()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_engine:
            self._engine.dispose()
        _LIVE.discard(self)

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no inherited threads, no inherited connections or events."""
        self._events = []
        self._events_lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._thread_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._executor = None
        self._engine.dispose(close=False)

    # ---------------------------------------------------------------- definitions

    def refresh(self) -> None:
        """Reload experiment definitions now (raises on database errors; the request path never does)."""
        with self._engine.connect() as connection:
            defs = _load_definitions(connection)
        self._defs = defs
        self._defs_expiry = defs.loaded_at + self.cache_ttl

    def _definitions(self, deadline: float) -> _Definitions | None:
        defs = self._defs
        now = time.monotonic()
        if defs is not None and now < self._defs_expiry:
            return defs
        if defs is not None and not self._refresh_lock.acquire(blocking=False):
            return defs  # another thread is reloading; serve the current ones meanwhile
        if defs is None:
            if not self._refresh_lock.acquire(timeout=max(deadline - now, 0.0005)):
                return None
            if self._defs is not None and time.monotonic() < self._defs_expiry:
                self._refresh_lock.release()
                return self._defs
        try:
            self._call(self.refresh, deadline=deadline)
        except Exception as exc:  # noqa: BLE001 - database trouble: serve stale definitions for a while
            if not isinstance(exc, _Unavailable) or "timeout" in str(exc):
                self._log_failure("loading experiments", None if isinstance(exc, _Unavailable) else exc)
            if defs is not None and now - defs.loaded_at > self.stale_ttl:
                self._defs = None
            return self._defs
        finally:
            self._refresh_lock.release()
        return self._defs

    def _lookup(self, experiment: str | int | None, deadline: float) -> _ExperimentDef | None:
        defs = self._definitions(deadline)
        if defs is None:
            return None
        found = self._find(defs, experiment)
        if found is None and experiment is not None:
            now = time.monotonic()
            if now - self._last_miss_refresh >= 1.0:  # a just-started experiment appears within ~1 s
                self._last_miss_refresh = now
                self._defs_expiry = 0.0
                defs = self._definitions(deadline)
                found = self._find(defs, experiment) if defs is not None else None
        return found

    @staticmethod
    def _find(defs: _Definitions, experiment: str | int | None) -> _ExperimentDef | None:
        if experiment is None:
            return defs.latest_running
        if type(experiment) is int:
            return defs.by_id.get(experiment)
        found = defs.by_name.get(experiment)  # type: ignore[arg-type]
        if found is None and isinstance(experiment, str) and experiment.isdigit():
            found = defs.by_id.get(int(experiment))
        return found

    # ---------------------------------------------------------------- stored assignments

    def _remember(self, key: tuple[int, str], variant_id: int) -> None:
        sticky = self._sticky
        sticky[key] = variant_id
        if len(sticky) > self.max_cached_users:
            try:
                for old in list(islice(iter(sticky), max(1, self.max_cached_users // 10))):
                    sticky.pop(old, None)
            except RuntimeError:  # resized by another thread while iterating: try again next time
                pass

    def _remember_absent(self, key: tuple[int, str]) -> None:
        """Negative cache: a user neither stored nor eligible is not looked up again for ``cache_ttl`` seconds."""
        absent = self._absent
        absent[key] = time.monotonic() + self.cache_ttl
        if len(absent) > max(1000, self.max_cached_users // 10):
            with contextlib.suppress(RuntimeError):
                for old in list(islice(iter(absent), len(absent) // 2)):
                    absent.pop(old, None)

    def _insert_statement(self) -> Any:
        table = UserAssignment.__table__
        if self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        elif self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        else:  # pragma: no cover - abcore supports SQLite and PostgreSQL
            raise RuntimeError(f"unsupported database dialect {self._dialect!r}")
        return insert(table).on_conflict_do_nothing(index_elements=["experiment_id", "user_id"])

    def _stored_or_insert(
        self, d: _ExperimentDef, user_id: str, proposed: int | None, attributes: dict[str, Any]
    ) -> tuple[int, bool] | None:
        """(variant_id, is_new) of the stored row, inserting ``proposed`` when none exists; None if absent.

        Runs on a database worker. The row is written synchronously (INSERT ... ON CONFLICT DO NOTHING,
        then read back), so concurrent processes converge on the one stored row.
        """
        table = UserAssignment.__table__
        query = select(table.c.variant_id).where(table.c.experiment_id == d.id, table.c.user_id == user_id)
        with self._engine.connect() as connection:
            stored = connection.execute(query).scalar()
            if stored is None and proposed is not None:
                variant_id = d.variants[proposed].id
                inserted = connection.execute(
                    self._insert_statement().returning(table.c.variant_id),
                    {
                        "user_id": user_id,
                        "experiment_id": d.id,
                        "variant_id": variant_id,
                        "attributes": attributes,
                        "assigned_at": utcnow(),
                    },
                ).scalar()
                connection.commit()
                if inserted is not None:
                    self._remember((d.id, user_id), variant_id)
                    self._on_new(d, user_id, variant_id, attributes)
                    return variant_id, True
                stored = connection.execute(query).scalar()
        if stored is None:
            return None
        self._remember((d.id, user_id), stored)
        return stored, False

    def _on_new(self, d: _ExperimentDef, user_id: str, variant_id: int, attributes: dict[str, Any]) -> None:
        self._buffer(self._event(d, variant_id, user_id, EventType.USER_ASSIGNMENT.value))
        index = d.index_of.get(variant_id)
        if index is not None:
            d.assignments[index].inc()

    def _stored(self, d: _ExperimentDef, user_id: str, deadline: float) -> int | None:
        """The stored variant id of ``user_id`` (process cache first, then the database, deadline-bound)."""
        variant_id = self._sticky.get((d.id, user_id))
        if variant_id is not None:
            return variant_id
        result = self._call(self._stored_or_insert, d, user_id, None, {}, deadline=deadline)
        return None if result is None else result[0]

    # ---------------------------------------------------------------- public API

    def assign(
        self,
        user_id: str,
        experiment: str | int | None = None,
        *,
        attributes: Mapping[str, Any] | None = None,
        expose: bool = True,
        request_id: str | None = None,
    ) -> Assignment | None:
        """The user's variant of ``experiment`` (name, id, or None: the most recently started running one).

        Returns None when the experiment is unknown, draft, cancelled, completed without a winner,
        paused for a user never assigned, when targeting or the traffic share excludes the user, and on
        any database trouble (within ``timeout``; never raises for those). Raises TypeError/ValueError for
        bad arguments. Records an ``exposure`` event unless ``expose=False``.
        """
        _check_user_id(user_id)
        _check_experiment_ref(experiment)
        _check_attributes(attributes)
        try:
            deadline = time.monotonic() + self.timeout  # the whole call's database budget
            d = self._lookup(experiment, deadline)
            if d is None:
                return None
            status = d.status
            if status in (_RUNNING, _PAUSED):
                variant_id = self._sticky.get((d.id, user_id))
                if variant_id is not None:
                    index = d.index_of[variant_id]
                    answer = d.returning[index]
                else:
                    proposed = d.proposal(user_id, attributes) if status == _RUNNING else None
                    key = (d.id, user_id)
                    if proposed is None:
                        absent_until = self._absent.get(key)
                        if absent_until is not None and absent_until > time.monotonic():
                            return None  # checked recently: not stored and not eligible
                    result = self._call(
                        self._stored_or_insert, d, user_id, proposed, _jsonable(attributes), deadline=deadline
                    )
                    if result is None:
                        self._remember_absent(key)
                        return None
                    index = d.index_of[result[0]]
                    answer = d.new[index] if result[1] else d.returning[index]
                if expose:
                    self._buffer(self._event(d, answer.variant_id, user_id, "exposure", request_id=request_id))
                    d.exposures[index].inc()
                d.requests[index].inc()
                return answer
            if status == _COMPLETED:
                answer = d.winner_for(user_id, attributes)
                if answer is not None:
                    d.requests[d.winner_index].inc()  # type: ignore[index]
                return answer
            return None
        except _Unavailable as exc:
            if "timeout" in str(exc):
                self._log_failure("assign", None)
            return None
        except Exception as exc:  # noqa: BLE001 - the request path never breaks the caller
            self._log_failure("assign", exc)
            return None

    def assign_user_to_variant(self, user_id: str) -> int | None:
        """Seed 000's helper: the variant id of the most recently started running experiment, or None."""
        answer = self.assign(user_id)
        return None if answer is None else answer.variant_id

    def assign_many(
        self,
        user_ids: Sequence[str],
        experiment: str | int | None = None,
        *,
        attributes: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        expose: bool = True,
        persist: bool = True,
        request_id: str | None = None,
    ) -> list[Assignment | None]:
        """:meth:`assign` for many users, batched; same answers as ``assign`` would give, in order.

        ``attributes`` is one mapping for everybody or one (or None) per user. ``persist=False`` is the
        pure path for offline scoring: stored assignments are still honoured (one read) but nothing is
        written (no rows, no events); users without a stored row get the variant they *would* get, with
        ``is_new=True``. Not deadline-bound (meant for batch jobs); database trouble gives all None.
        """
        if isinstance(user_ids, str) or not isinstance(user_ids, Sequence | np.ndarray):
            raise TypeError("user_ids must be a sequence (list/tuple) of user id strings")
        users = list(user_ids)
        for u in users:
            if type(u) is not str or not u:
                _check_user_id(u)
        _check_experiment_ref(experiment)
        per_user: list[Mapping[str, Any] | None] | None = None
        if attributes is not None and not isinstance(attributes, Mapping):
            if isinstance(attributes, str) or not isinstance(attributes, Sequence):
                raise TypeError("attributes must be a mapping, a sequence of mappings (one per user) or None")
            per_user = list(attributes)
            if len(per_user) != len(users):
                raise ValueError(f"got {len(per_user)} attribute mappings for {len(users)} users")
            for a in per_user:
                _check_attributes(a)
        try:
            return self._assign_many(users, experiment, attributes, per_user, expose, persist, request_id)
        except Exception as exc:  # noqa: BLE001 - never break the caller
            self._log_failure("assign_many", exc)
            return [None] * len(users)

    def _assign_many(
        self,
        users: list[str],
        experiment: str | int | None,
        attributes: Any,
        per_user: list[Mapping[str, Any] | None] | None,
        expose: bool,
        persist: bool,
        request_id: str | None,
    ) -> list[Assignment | None]:
        n = len(users)
        defs = self._defs
        if defs is None or time.monotonic() >= self._defs_expiry:
            self.refresh()
            defs = self._defs
        assert defs is not None
        d = self._find(defs, experiment)
        if d is None and experiment is not None:
            self.refresh()
            d = self._find(self._defs, experiment)  # type: ignore[arg-type]
        if d is None or n == 0:
            return [None] * n

        def attrs_of(i: int) -> Mapping[str, Any] | None:
            return per_user[i] if per_user is not None else attributes

        if d.status == _COMPLETED:
            return [d.winner_for(u, attrs_of(i)) for i, u in enumerate(users)]
        if d.status not in (_RUNNING, _PAUSED):
            return [None] * n

        stored = self._read_stored(d, users)
        pending_events: list[tuple[Any, ...]] = []
        result: list[Assignment | None]
        if stored:
            index_of = d.index_of
            returning = d.returning
            get = stored.get
            result = [None if (v := get(u)) is None else returning[index_of[v]] for u in users]
            missing = [i for i, a in enumerate(result) if a is None]
        else:
            result = [None] * n
            missing = list(range(n))
        if d.status == _RUNNING and missing:
            proposals = self._proposals(d, users, missing, attrs_of)
            if not persist:
                new = d.new
                if len(missing) == n:
                    result = [new[p] if p >= 0 else None for p in proposals]
                else:
                    for i, p in zip(missing, proposals, strict=True):
                        if p >= 0:
                            result[i] = new[p]
            else:
                pending_events = self._persist_many(d, users, missing, proposals, attrs_of, result)
        if persist:
            sticky = self._sticky
            counts = [0] * len(d.variants)
            index_of = d.index_of
            exposures: list[tuple[Any, ...]] = []
            now = utcnow()
            for u, a in zip(users, result, strict=True):
                if a is None:
                    continue
                index = index_of[a.variant_id]
                counts[index] += 1
                if not a.is_new:
                    sticky[(d.id, u)] = a.variant_id
                if expose:
                    exposures.append((d.id, a.variant_id, u, "exposure", None, None, request_id, {}, now))
            if len(sticky) > self.max_cached_users:
                self._remember(next(iter(sticky)), sticky[next(iter(sticky))])
            self._write_now(pending_events + exposures)
            for index, count in enumerate(counts):
                if count:
                    d.requests[index].inc(count)
                    if expose:
                        d.exposures[index].inc(count)
        return result

    def _write_now(self, rows: list[tuple[Any, ...]]) -> None:
        """Batch path: write events in one transaction now; on failure they join the buffer for a later flush."""
        if not rows:
            return
        try:
            with self._engine.begin() as connection:
                self._write_events(connection, rows)
        except Exception as exc:  # noqa: BLE001 - keep them: the background flush retries
            self._log_failure("writing events", exc)
            self._buffer_many(rows)

    def _buffer_many(self, rows: list[tuple[Any, ...]]) -> None:
        if not rows:
            return
        with self._events_lock:
            self._events.extend(rows)
        if self._thread is None:
            self._ensure_flusher()
        if len(self._events) >= self.max_buffer:
            self._wake.set()

    def _proposals(
        self,
        d: _ExperimentDef,
        users: list[str],
        missing: list[int],
        attrs_of: Callable[[int], Mapping[str, Any] | None],
    ) -> list[int]:
        """Variant index per missing user (-1 when targeting or the traffic share excludes them), vectorised."""
        ids = users if len(missing) == len(users) else [users[i] for i in missing]
        chosen = choose_variants(buckets(ids, d.salt), d.cumulative)
        if d.traffic < 1.0:
            outside = buckets(ids, d.salt, seed=TRAFFIC_SEED) >= d.traffic
            chosen[outside] = -1
        proposals: list[int] = chosen.tolist()
        if d.targeting:
            rules = list(d.targeting)
            for k, i in enumerate(missing):
                if proposals[k] >= 0 and not _targeting(rules, users[i], dict(attrs_of(i) or {})):
                    proposals[k] = -1
        return proposals

    def _read_stored(self, d: _ExperimentDef, users: list[str]) -> dict[str, int]:
        """Stored variant ids of ``users``; for big batches one read of all the experiment's rows."""
        table = UserAssignment.__table__
        out: dict[str, int] = {}
        with self._engine.connect() as connection:
            if len(users) >= 20_000:
                rows = connection.execute(
                    select(table.c.user_id, table.c.variant_id).where(table.c.experiment_id == d.id)
                )
                return {u: v for u, v in rows}
            chunk = list(dict.fromkeys(users))
            for start in range(0, len(chunk), 5_000):
                rows = connection.execute(
                    select(table.c.user_id, table.c.variant_id).where(
                        table.c.experiment_id == d.id, table.c.user_id.in_(chunk[start : start + 5_000])
                    )
                )
                out.update({u: v for u, v in rows})
        return out

    def _insert_rows(self, connection: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """INSERT ... ON CONFLICT DO NOTHING RETURNING user_id, multi-row; the user ids actually inserted.

        Rows are (user_id, experiment_id, variant_id, attributes dict, assigned_at).
        """
        table = UserAssignment.__table__
        columns = "user_id, experiment_id, variant_id, attributes, assigned_at"
        dumps = json.dumps
        if self._dialect == "sqlite":
            ts_proc = _bind_processor(table.c.assigned_at.type, self._engine.dialect)
            one = "(?, ?, ?, ?, ?)"
            stamp = {r[4]: ts_proc(r[4]) for r in {id(r[4]): r for r in rows}.values()}  # rows share a timestamp
            prepared = [(r[0], r[1], r[2], dumps(r[3]) if r[3] else "{}", stamp[r[4]]) for r in rows]
            size = 1_000
        else:
            return self._insert_rows_postgres(connection, rows)
        inserted: set[str] = set()
        for start in range(0, len(prepared), size):
            part = prepared[start : start + size]
            sql = (
                f"INSERT INTO {table.name} ({columns}) VALUES {', '.join([one] * len(part))} "
                "ON CONFLICT (experiment_id, user_id) DO NOTHING RETURNING user_id"
            )
            flat = tuple(value for row in part for value in row)
            inserted.update(r[0] for r in connection.exec_driver_sql(sql, flat))
        return inserted

    def _insert_rows_postgres(self, connection: Connection, rows: list[tuple[Any, ...]]) -> set[str]:
        """PostgreSQL bulk path: COPY into a transaction-scoped staging table, then one
        ``INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING user_id``."""
        table = UserAssignment.__table__.name
        dumps = json.dumps
        connection.exec_driver_sql(
            "CREATE TEMP TABLE IF NOT EXISTS abcore_assign_stage "
            "(user_id text, experiment_id integer, variant_id integer, attributes json, assigned_at timestamptz) "
            "ON COMMIT DELETE ROWS"
        )
        raw = connection.connection.dbapi_connection
        statement = "COPY abcore_assign_stage (user_id, experiment_id, variant_id, attributes, assigned_at) FROM STDIN"
        with raw.cursor() as cursor, cursor.copy(statement) as copy:  # type: ignore[union-attr]
            for r in rows:
                copy.write_row((r[0], r[1], r[2], dumps(r[3]) if r[3] else "{}", r[4]))
        result = connection.exec_driver_sql(
            f"INSERT INTO {table} (user_id, experiment_id, variant_id, attributes, assigned_at) "
            "SELECT user_id, experiment_id, variant_id, attributes, assigned_at FROM abcore_assign_stage "
            "ON CONFLICT (experiment_id, user_id) DO NOTHING RETURNING user_id"
        )
        inserted = {r[0] for r in result}
        connection.exec_driver_sql("DELETE FROM abcore_assign_stage")
        return inserted

    def _persist_many(
        self,
        d: _ExperimentDef,
        users: list[str],
        missing: list[int],
        proposals: list[int],
        attrs_of: Callable[[int], Mapping[str, Any] | None],
        result: list[Assignment | None],
    ) -> list[tuple[Any, ...]]:
        """Insert the proposed rows (ON CONFLICT DO NOTHING, batched) and resolve conflicts to the stored row."""
        rows: dict[str, tuple[Any, ...]] = {}
        now = utcnow()
        variants = d.variants
        for i, p in zip(missing, proposals, strict=True):
            if p >= 0:
                u = users[i]
                if u not in rows:
                    rows[u] = (u, d.id, variants[p].id, _jsonable(attrs_of(i)), now)
        if not rows:
            return []
        with self._engine.begin() as connection:
            inserted = self._insert_rows(connection, list(rows.values()))
        lost = [u for u in rows if u not in inserted]
        final: dict[str, tuple[int, bool]] = {u: (rows[u][2], True) for u in inserted}
        if lost:
            for u, vid in self._read_stored(d, lost).items():
                final[u] = (vid, False)
        events: list[tuple[Any, ...]] = []
        counts = [0] * len(variants)
        index_of = d.index_of
        new, returning = d.new, d.returning
        sticky = self._sticky
        for i in missing:
            u = users[i]
            hit = final.pop(u, None)  # pop: a duplicate id later in the batch is "returning"
            if hit is None:
                vid = sticky.get((d.id, u))
                if vid is not None:
                    result[i] = returning[index_of[vid]]
                continue
            vid, is_new = hit
            index = index_of[vid]
            sticky[(d.id, u)] = vid
            if is_new:
                result[i] = new[index]
                counts[index] += 1
                events.append((d.id, vid, u, EventType.USER_ASSIGNMENT.value, None, None, None, {}, now))
            else:
                result[i] = returning[index]
        for index, count in enumerate(counts):
            if count:
                d.assignments[index].inc(count)
        return events

    def track(
        self,
        user_id: str,
        experiment: str | int | None,
        metric_name: str,
        value: float | None = None,
        *,
        properties: Mapping[str, Any] | None = None,
        event_type: str = "conversion",
        request_id: str | None = None,
    ) -> bool:
        """Record a metric value (or feedback/error event) for the user's variant; buffered.

        Returns True when recorded; False (nothing written) when the user was never assigned, the
        experiment is not running or paused, or the database is unavailable. A ``conversion`` without
        ``value`` counts as 1.0. Raises TypeError/ValueError for bad arguments.
        """
        _check_user_id(user_id)
        _check_experiment_ref(experiment)
        if not isinstance(metric_name, str) or not metric_name:
            raise ValueError("metric_name must be a non-empty string")
        if event_type not in _TRACKABLE_EVENTS:
            raise ValueError(f"event_type must be one of {sorted(_TRACKABLE_EVENTS)}, got {event_type!r}")
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"value must be a number or None, got {type(value).__name__}")
            value = float(value)
            if value != value or value in (float("inf"), float("-inf")):
                raise ValueError("value must be finite")
        elif event_type == EventType.CONVERSION.value:
            value = 1.0
        _check_attributes(properties)
        try:
            deadline = time.monotonic() + self.timeout
            d = self._lookup(experiment, deadline)
            if d is None or d.status not in (_RUNNING, _PAUSED):
                return False
            variant_id = self._stored(d, user_id, deadline)
            if variant_id is None:
                return False
            self._buffer(
                self._event(d, variant_id, user_id, event_type, metric_name, value, request_id, _jsonable(properties))
            )
            return True
        except _Unavailable as exc:
            if "timeout" in str(exc):
                self._log_failure("track", None)
            return False
        except Exception as exc:  # noqa: BLE001 - never break the caller
            self._log_failure("track", exc)
            return False


# --------------------------------------------------------------------------------------------
# Process-wide default client and module-level functions
# --------------------------------------------------------------------------------------------

_default: Assigner | None = None
_default_lock = threading.Lock()
_default_source: Engine | str | None = None
_default_options: dict[str, Any] = {}
_ASSIGNER_OPTIONS = frozenset(
    name for name, p in inspect.signature(Assigner.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY
)


def configure(engine_or_url: Engine | str | None = None, **options: Any) -> Assigner:
    """Point the module-level functions at another database (engine or URL; None: the configured URL).

    Closes (flushes) the previous default client. ``options`` go to :class:`Assigner`
    (``flush_interval``, ``max_buffer``, ``cache_ttl``, ``timeout``, ...). Returns the new client.
    """
    global _default, _default_source, _default_options
    unknown = set(options) - _ASSIGNER_OPTIONS
    if unknown:
        raise TypeError(f"unknown Assigner option(s): {sorted(unknown)}")
    with _default_lock:
        previous = _default
        _default_source = engine_or_url
        _default_options = dict(options)
        _default = _build_default()
    if previous is not None:
        previous.close()
    return _default


def _build_default() -> Assigner:
    source = _default_source
    if source is None:
        from abcore.config import database_url

        source = database_url()
    return Assigner(source, **_default_options)


def default_assigner() -> Assigner:
    """The process-wide client, built lazily from :func:`abcore.config.database_url` on first use."""
    global _default
    client = _default
    if client is None:
        with _default_lock:
            if _default is None:
                _default = _build_default()
            client = _default
    return client


def assign(
    user_id: str,
    experiment: str | int | None = None,
    *,
    attributes: Mapping[str, Any] | None = None,
    expose: bool = True,
    request_id: str | None = None,
) -> Assignment | None:
    """See :meth:`Assigner.assign` (default client)."""
    client = _default if _default is not None else default_assigner()
    return client.assign(user_id, experiment, attributes=attributes, expose=expose, request_id=request_id)


def assign_user_to_variant(user_id: str) -> int | None:
    """Seed 000: variant id of the most recently started running experiment for ``user_id``, or None."""
    return default_assigner().assign_user_to_variant(user_id)


def assign_many(
    user_ids: Sequence[str],
    experiment: str | int | None = None,
    *,
    attributes: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    expose: bool = True,
    persist: bool = True,
    request_id: str | None = None,
) -> list[Assignment | None]:
    """See :meth:`Assigner.assign_many` (default client)."""
    return default_assigner().assign_many(
        user_ids, experiment, attributes=attributes, expose=expose, persist=persist, request_id=request_id
    )


def track(
    user_id: str,
    experiment: str | int | None,
    metric_name: str,
    value: float | None = None,
    *,
    properties: Mapping[str, Any] | None = None,
    event_type: str = "conversion",
    request_id: str | None = None,
) -> bool:
    """See :meth:`Assigner.track` (default client)."""
    return default_assigner().track(
        user_id, experiment, metric_name, value, properties=properties, event_type=event_type, request_id=request_id
    )


def flush() -> int:
    """Write every buffered event of the default client now; returns the number written."""
    client = _default
    return 0 if client is None else client.flush()


def _flush_all_at_exit() -> None:
    for client in list(_LIVE):
        with contextlib.suppress(Exception):  # interpreter exit: nothing left to tell
            client.flush()


def _reset_after_fork() -> None:
    for client in list(_LIVE):
        client._after_fork()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
