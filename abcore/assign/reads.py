"""The store reads of :mod:`abcore.assign`: experiment definitions, stored rows, and the engine they run on.

Reads run on a small pool of *daemon* threads (:class:`ReadPool`) so the caller waits at most its
deadline and a hung store never keeps the process from exiting. The assignment engine has bounded
waits: PostgreSQL gets ``connect_timeout`` and a ``statement_timeout`` (and a ``lock_timeout``), SQLite
a busy timeout, so a worker thread is never stuck on the server side for longer than that.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import and_, event, or_, select
from sqlalchemy.engine import Connection, Engine, make_url

from abcore import errors
from abcore.assign.cache import EMPTY_CONFIG, Definitions, ExperimentDef, FrozenConfig, VariantDef
from abcore.assign.hashing import cumulative_allocations
from abcore.assign.layers import Gate, plan
from abcore.store.tables import AuditLog, Experiment, ExperimentStatus, Layer, Model, UserAssignment, Variant

logger = logging.getLogger("abcore.assign")

_RUNNING = ExperimentStatus.RUNNING.value
_PAUSED = ExperimentStatus.PAUSED.value
_COMPLETED = ExperimentStatus.COMPLETED.value
#: Audit actions after which a stored row may differ from the hash of the current definitions.
SPLIT_CHANGES = ("update_allocations", "set_traffic")

_T = TypeVar("_T")


class Unavailable(errors.Unavailable):
    """The store did not answer within the deadline (or reads are suspended after a recent failure)."""


# --------------------------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------------------------


def assignment_engine(
    source: Engine | str, *, connect_timeout: float, statement_timeout: float
) -> tuple[Engine, bool]:
    """``(engine, owned)`` for the assigner: its own bounded engine unless ``source`` is a SQLite engine.

    A URL builds a new engine. A PostgreSQL engine is re-created from its URL (same database, own pool)
    so the timeouts do not leak into the caller's engine; a SQLite engine is used as given (an in-memory
    database cannot be opened twice) — its busy timeout is the bound. Raises what ``make_engine`` raises
    (bad URL, missing driver, unwritable folder): the caller turns that into a logged "unavailable".
    """
    from abcore.store.db import make_engine

    if isinstance(source, Engine):
        if source.dialect.name == "sqlite":
            return source, False
        url = source.url.render_as_string(hide_password=False)
    else:
        url = source
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return make_engine(url), True
    engine = make_engine(
        url,
        connect_args={"connect_timeout": max(1, round(connect_timeout))},
        pool_timeout=connect_timeout,
        pool_size=5,
        max_overflow=5,
    )
    statement_ms = max(1, int(statement_timeout * 1000))

    @event.listens_for(engine, "connect")
    def _bounded_session(dbapi_connection: Any, _record: Any) -> None:
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET statement_timeout = {statement_ms}")
            cursor.execute(f"SET lock_timeout = {statement_ms}")
            cursor.execute(f"SET idle_in_transaction_session_timeout = {max(statement_ms, 10_000)}")
        dbapi_connection.autocommit = autocommit

    return engine, True


# --------------------------------------------------------------------------------------------
# Definitions and stored rows
# --------------------------------------------------------------------------------------------


def load_definitions(connection: Connection) -> Definitions:
    """Every experiment assign can answer for: running, paused, and completed with a shipped winner; and the layers.

    Layer ranges and running holdouts become each experiment's gate (:func:`abcore.assign.layers.plan`).

    ``changed`` is set for an experiment whose split or traffic share was changed after it started
    (``ab_audit_log`` rows :data:`SPLIT_CHANGES` from a running or paused status).
    """
    exp = Experiment.__table__
    var = Variant.__table__
    mod = Model.__table__
    audit = AuditLog.__table__
    split_changed = (
        select(audit.c.id)
        .where(
            audit.c.experiment_id == exp.c.id,
            audit.c.action.in_(SPLIT_CHANGES),
            audit.c.from_status.in_([_RUNNING, _PAUSED]),
        )
        .exists()
        .label("split_changed")
    )
    experiments = connection.execute(
        select(exp, split_changed).where(
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
            select(var, mod.c.name.label("model_name"), mod.c.version.label("model_version"),
                   mod.c.config.label("model_config"))
            .select_from(var.outerjoin(mod, mod.c.id == var.c.model_id))
            .where(var.c.experiment_id.in_(ids))
            .order_by(var.c.experiment_id, var.c.position, var.c.id)
        ).mappings().all()
        for row in rows:
            variants_by_exp[row["experiment_id"]].append(row)
    layer_ids = {e["layer_id"] for e in experiments if e["layer_id"] is not None}  # a layer nobody uses answers None anyway
    layer_rows = connection.execute(select(Layer.__table__).where(Layer.__table__.c.id.in_(layer_ids))).mappings().all() if layer_ids else []
    gates, layers = plan(experiments, variants_by_exp, layer_rows)
    by_id: dict[int, ExperimentDef] = {}
    for e in experiments:
        d = _definition(e, variants_by_exp[e["id"]], gates.get(e["id"])) if variants_by_exp[e["id"]] else None
        if d is not None:
            by_id[d.id] = d
    # assign(user) without an experiment picks an A/B test: an interleaving experiment needs rankings and a
    # holdout serves nothing
    running = [d for d in by_id.values() if d.status == _RUNNING and d.kind == "ab"]
    latest = max(running, key=lambda d: (d.started_at is not None, d.started_at or 0, d.id), default=None)
    return Definitions(
        by_id=by_id,
        by_name={d.name: d for d in by_id.values()},
        latest_running=latest,
        loaded_at=time.monotonic(),
        layers=layers,
    )


def _definition(e: Any, rows: list[Any], gate: Gate | None = None) -> ExperimentDef | None:
    """The cached definition of experiment row ``e`` with its variant ``rows``; None (logged) for an invalid split."""
    variants = tuple(
        VariantDef(
            id=r["id"],
            name=r["name"],
            allocation_pct=float(r["allocation_pct"]),
            model_id=r["model_id"],
            model_name=r["model_name"],
            config=FrozenConfig(r["config"] or {}),
            is_control=bool(r["is_control"]),
            model_version=None if r["model_version"] is None else str(r["model_version"]),
            model_config=FrozenConfig(r["model_config"]) if isinstance(r["model_config"], dict) and r["model_config"] else EMPTY_CONFIG,
        )
        for r in rows
    )
    try:
        cumulative = cumulative_allocations([v.allocation_pct for v in variants])
    except ValueError:
        logger.error("experiment %r has invalid allocations; it is not served", e["name"])
        return None
    winner_index = next((i for i, v in enumerate(variants) if v.id == e["winner_variant_id"]), None)
    rollout = e["rollout_pct"]
    return ExperimentDef(
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
        changed=bool(e["split_changed"]),
        kind=e["kind"],
        interleaving_method=e["interleaving_method"],
        gate=gate,
    )


def stored_variant(engine: Engine, experiment_id: int, user_id: str) -> int | None:
    """The stored variant id of one user (None: no row)."""
    table = UserAssignment.__table__
    with engine.connect() as connection:
        return connection.execute(
            select(table.c.variant_id).where(table.c.experiment_id == experiment_id, table.c.user_id == user_id)
        ).scalar()


def stored_variants(connection: Connection, experiment_id: int, users: Iterable[str], *, whole: bool = False) -> dict[str, int]:
    """Stored variant ids of ``users`` (chunks of 5,000), or with ``whole=True`` every row of the experiment."""
    table = UserAssignment.__table__
    if whole:
        rows = connection.execute(select(table.c.user_id, table.c.variant_id).where(table.c.experiment_id == experiment_id))
        return {u: v for u, v in rows}
    out: dict[str, int] = {}
    chunk = list(dict.fromkeys(users))
    for start in range(0, len(chunk), 5_000):
        rows = connection.execute(
            select(table.c.user_id, table.c.variant_id).where(
                table.c.experiment_id == experiment_id, table.c.user_id.in_(chunk[start : start + 5_000])
            )
        )
        out.update({u: v for u, v in rows})
    return out


# --------------------------------------------------------------------------------------------
# Deadline-bound calls on daemon threads
# --------------------------------------------------------------------------------------------


class _Call:
    __slots__ = ("args", "done", "error", "fn", "result")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class ReadPool:
    """``call(fn, *args, deadline=...)`` runs ``fn`` on one of ``workers`` daemon threads, waiting until the deadline.

    Past the deadline the caller gets :class:`Unavailable` (the read finishes, or not, on its own; nothing
    waits for it at exit). After a failure or a timeout, reads are *suspended* for ``retry_after``
    seconds: calls raise :class:`Unavailable` at once, and :mod:`abcore.assign` answers from the hash
    (fail open) instead of waiting on a store it just saw in trouble.
    """

    def __init__(self, workers: int = 4, *, retry_after: float = 1.0, max_queue: int = 64) -> None:
        self.workers = max(1, int(workers))
        self.retry_after = float(retry_after)
        self.max_queue = int(max_queue)
        self._queue: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.suspended_until = 0.0

    def _start(self) -> None:
        with self._lock:
            while len(self._threads) < self.workers:
                thread = threading.Thread(target=self._work, name="abcore-assign-read", daemon=True)
                thread.start()
                self._threads.append(thread)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                item.result = item.fn(*item.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                item.error = exc
            item.done.set()

    def call(self, fn: Callable[..., _T], *args: Any, deadline: float) -> _T:
        """``fn(*args)`` within ``deadline`` (``time.monotonic()``); raises Unavailable or ``fn``'s own exception."""
        now = time.monotonic()
        if now < self.suspended_until:
            raise Unavailable("store reads suspended after a recent failure")
        if len(self._threads) < self.workers:
            self._start()
        if self._queue.qsize() >= self.max_queue:
            self.suspended_until = now + self.retry_after
            raise Unavailable("store reads backed up")
        item = _Call(fn, args)
        self._queue.put(item)
        if not item.done.wait(max(deadline - now, 0.0005)):
            self.suspended_until = time.monotonic() + self.retry_after
            raise Unavailable("no answer from the store within the deadline")
        if item.error is not None:
            self.suspended_until = time.monotonic() + self.retry_after
            raise item.error
        return item.result  # type: ignore[no-any-return]

    def reset_after_fork(self) -> None:
        """In a forked child: no inherited threads or queued calls."""
        self._queue = queue.SimpleQueue()
        self._threads = []
        self._lock = threading.Lock()

    def close(self) -> None:
        """Stop the idle workers (a worker stuck in a read is a daemon: it never delays exit)."""
        for _ in self._threads:
            self._queue.put(None)
        self._threads = []
