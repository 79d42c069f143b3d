"""Deterministic, sticky, fast assignment and event tracking: what recommender code imports.

Public contract (see README)::

    from abcore.assign import assign, assign_many, assign_user_to_variant, track, flush, bucket, Assignment

    a = assign("user-42", "ranker_v2", attributes={"country": "DE"})   # Assignment | None
    track("user-42", "ranker_v2", "watch_completion", 1.0)             # True if recorded
    flush()                                                            # write buffered rows and events now

The shape:

* pure: :mod:`abcore.assign.hashing` (the hash), :mod:`abcore.assign.targeting` (rules) and
  :mod:`abcore.assign.cache` (the cached definitions and :func:`~abcore.assign.cache.decide`);
* :mod:`abcore.assign.reads` — the store reads (definitions, stored rows) on daemon threads, deadline-bound;
  :mod:`abcore.assign.definitions` keeps the definitions fresh;
* :mod:`abcore.assign.writer` — write-behind of assignment rows and events (batches split on failure, dead letters);
* :mod:`abcore.assign.batch` (``assign_many``) and :mod:`abcore.assign.tracking` (``track``);
* :mod:`abcore.assign.defaults` — the process-wide client behind the module-level functions, flushed at exit.

This module composes them (:class:`Assigner`). The request path does
no write: a new user's answer comes from the cached definitions and the hash, the row and its events go to
the writer. A stored row still wins: the in-process cache first, and a read only where a stored row can
differ from the hash (paused experiment, targeting or traffic share keeping the user out, split or traffic
share changed while running). On store trouble a running experiment keeps answering from the hash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy.engine import Engine

from abcore.assign import batch, definitions, prometheus, surface, tracking
from abcore.assign.cache import (
    Assignment,
    Definitions,
    ExperimentDef,
    check_attributes,
    check_experiment_ref,
    check_user_id,
    decide,
    jsonable,
)
from abcore.assign.reads import (
    ReadPool,
    Unavailable,
    assignment_engine,
    load_definitions,
    stored_variant,
)
from abcore.assign.writer import Writer, default_batch_size
from abcore.store.tables import EventType, utcnow

__all__ = ["Assigner", "live_assigners"]

logger = logging.getLogger("abcore.assign")

_RUNNING = "running"
_PAUSED = "paused"
_COMPLETED = "completed"
_EXPOSURE = EventType.EXPOSURE.value
_CONVERSION = EventType.CONVERSION.value
_USER_ASSIGNMENT = EventType.USER_ASSIGNMENT.value
_LIVE: weakref.WeakSet[Assigner] = weakref.WeakSet()


class Assigner:
    """Sticky assignment + write-behind event tracking against one store.

    Parameters
    ----------
    engine:
        SQLAlchemy engine or URL of a migrated store. A URL (or PostgreSQL engine, re-created from its URL) gives
        the assigner its own bounded engine (``connect_timeout``, ``statement_timeout``). A URL that cannot be
        used never raises: every call answers None/False and logs the reason once a minute.
    flush_interval, max_buffer:
        Seconds between background writes (a hard crash loses at most this much); write sooner at this many
        buffered rows + events.
    cache_ttl:
        Experiment definitions are reloaded at least this often (seconds): pauses/stops apply within it.
    timeout:
        Deadline in seconds for the store reads of one ``assign``/``track`` call (a read is needed only for users
        not cached where a stored row could change the answer); past it ``assign`` answers from the hash.
    retry_after:
        After a failed or timed-out read, reads are skipped (the hash answers) for this many seconds.
    max_cached_users:
        Size of the in-process cache of stored assignments (oldest entries are dropped first).
    max_pending:
        Rows + events kept while the store is down; beyond it the oldest are dropped (and counted).
    write_batch:
        Rows (or events) per write transaction, of the writer and of ``assign_many``; each commits on its own
        (default: 100,000 on SQLite, 10,000 on PostgreSQL, see :data:`abcore.assign.writer.DEFAULT_BATCH_SIZE`).
    stale_ttl:
        While the store is down, cached definitions keep being served for at most this long (default: forever).
    connect_timeout, statement_timeout:
        PostgreSQL bounds of the assignment engine (seconds).
    flush_timeout, exit_timeout:
        Default bound of :meth:`flush` and :meth:`close`, and of the flush at interpreter exit (seconds; what
        the exit flush could not write is logged and counted).
    first_load_timeout:
        How long the first calls of a process wait for the definitions; later calls wait at most ``timeout``.
    dead_letter_path:
        JSON-lines file of rows the store rejected (default: next to the SQLite file, else ``data/``).
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
        write_batch: int | None = None,
        stale_ttl: float = float("inf"),
        db_workers: int = 4,
        log_interval: float = 60.0,
        connect_timeout: float = 2.0,
        statement_timeout: float = 5.0,
        flush_timeout: float = 5.0,
        exit_timeout: float = 2.0,
        first_load_timeout: float = 2.0,
        dead_letter_path: str | os.PathLike[str] | None = None,
    ) -> None:
        _check_options(engine, flush_interval, cache_ttl, timeout, max_buffer, exit_timeout, write_batch)
        self.flush_interval = float(flush_interval)
        self.max_buffer = int(max_buffer)
        self.cache_ttl = float(cache_ttl)
        self.timeout = float(timeout)
        self.retry_after = float(retry_after)
        self.max_cached_users = int(max_cached_users)
        self.max_pending = int(max_pending)
        self.stale_ttl = float(stale_ttl)
        self.log_interval = float(log_interval)
        self.flush_timeout = float(flush_timeout)
        self.exit_timeout = float(exit_timeout)
        self.first_load_timeout = float(first_load_timeout)
        self._last_log: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self._defs: Definitions | None = None
        self._defs_expiry = 0.0
        self._last_miss_refresh = 0.0
        self._refresh_failed_at = -1e18
        self._first_load_deadline: float | None = None
        self._refresh_lock = threading.Lock()
        self._refreshing: threading.Event | None = None
        self._sticky: dict[tuple[int, str], int] = {}
        self._absent: dict[tuple[int, str], float] = {}
        self._read_first: set[int] = set()
        self._reads = ReadPool(db_workers, retry_after=retry_after)
        self._closed = False
        self._broken: str | None = None
        self._engine: Engine | None = None
        self._owns_engine = False
        try:
            self._engine, self._owns_engine = assignment_engine(
                engine, connect_timeout=connect_timeout, statement_timeout=statement_timeout
            )
        except Exception as exc:  # noqa: BLE001 - configuration/environment: answer None, never raise
            self._broken = f"the store {_redact(engine)} cannot be used ({type(exc).__name__}: {exc})"
            self._log_failure("configuration", None, key="config")
        self._writer: Writer | None = None
        #: Rows (or events) per write transaction (default: 100,000 on SQLite, 10,000 on PostgreSQL).
        self.write_batch = 10_000 if write_batch is None else int(write_batch)
        if self._engine is not None:
            if write_batch is None:
                self.write_batch = default_batch_size(self._engine)
            self._writer = Writer(
                self._engine,
                flush_interval=flush_interval,
                max_buffer=max_buffer,
                max_pending=max_pending,
                batch_size=write_batch,
                dead_letter_path=dead_letter_path,
                on_corrected=self._on_corrected,
                on_inserted=self._on_inserted,
                log=self._log_failure,
            )
        _LIVE.add(self)

    # ---------------------------------------------------------------- infrastructure

    @property
    def engine(self) -> Engine:
        """The assignment engine (raises RuntimeError when the configured store could not be used)."""
        if self._engine is None:
            raise RuntimeError(self._broken or "no engine")
        return self._engine

    @property
    def writer(self) -> Writer | None:  # the write-behind buffer (None when the configured store could not be used)
        return self._writer

    @property
    def dropped_events(self) -> int:
        """Rows and events dropped unwritten because the buffer was full while the store was in trouble."""
        return 0 if self._writer is None else self._writer.dropped

    @property
    def dead_lettered(self) -> int:  # rows and events the store rejected on their own (in the dead-letter file)
        return 0 if self._writer is None else self._writer.dead_lettered

    @property
    def corrected(self) -> int:  # users whose served variant differed from the row found stored (cache corrected)
        return 0 if self._writer is None else self._writer.corrected

    def _log_failure(self, what: str, exc: BaseException | None, *, key: str = "store") -> None:
        """Log a failure at most once per ``log_interval`` (default: a minute) per kind, with the reason."""
        prometheus.ERRORS.labels(what.split(" ")[0] if key == "store" else key).inc()
        now = time.monotonic()
        if now - self._last_log.get(key, -1e18) >= self.log_interval:
            suppressed = self._suppressed.pop(key, 0)
            self._last_log[key] = now
            reason, consequence = _failure_text(key, exc, self._broken, self.timeout)
            logger.warning(
                "abcore.assign: %s failed (%s); %s%s",
                what,
                reason,
                consequence,
                f" ({suppressed} similar messages suppressed)" if suppressed else "",
            )
        else:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1

    def _on_inserted(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Count the rows the writer stored (``experiment_assignments_total``), one increment per variant."""
        _count_inserted(self._defs, rows)

    def _on_corrected(self, experiment_id: int, user_id: str, variant_id: int) -> None:
        """The writer found another stored variant for a user this process served: serve the stored one from now on."""
        self._sticky[(experiment_id, user_id)] = variant_id
        self._read_first.add(experiment_id)  # from now on this process reads before answering a new user
        defs = self._defs
        d = defs.by_id.get(experiment_id) if defs is not None else None
        name = d.name if d is not None else str(experiment_id)
        prometheus.CORRECTED.labels(name).inc()
        now = time.monotonic()
        if now - self._last_log.get("corrected", -1e18) >= self.log_interval:
            self._last_log["corrected"] = now
            logger.warning(
                "abcore.assign: user %r of %r was served a variant other than the stored one (variant id %s); "
                "the cache is corrected and new users of this experiment are read first from now on "
                "(happens only across an allocation change inside the cache window)",
                user_id,
                name,
                variant_id,
            )

    def flush(self, timeout: float | None = None) -> int:
        """Write every buffered row and event now, waiting at most ``timeout`` s (default ``flush_timeout``).

        Returns how many events (``user_assignment`` events of new rows included) were written; 0 on store
        trouble (everything stays buffered for the next attempt). Never raises.
        """
        if self._writer is None:
            return 0
        return self._writer.flush(self.flush_timeout if timeout is None else timeout)

    def pending_events(self) -> int:
        """Rows and events buffered and not yet written (a new user's row counts once)."""
        return 0 if self._writer is None else self._writer.pending()

    def close(self, timeout: float | None = None) -> int:
        """Flush (bounded by ``timeout``, default ``flush_timeout``), stop the threads, dispose an owned engine.

        Returns how many rows and events could not be written.
        """
        if self._closed:
            return 0
        self._closed = True
        unwritten = 0
        if self._writer is not None:
            unwritten = self._writer.close(self.flush_timeout if timeout is None else timeout)
        self._reads.close()
        if self._owns_engine and self._engine is not None and unwritten == 0:
            self._engine.dispose()
        _LIVE.discard(self)
        return unwritten

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, no inherited threads, connections or buffered writes."""
        self._refresh_lock = threading.Lock()
        self._refreshing = None
        self._reads.reset_after_fork()
        if self._writer is not None:
            self._writer.reset_after_fork()
        if self._engine is not None:
            self._engine.dispose(close=False)

    # ---------------------------------------------------------------- definitions

    def refresh(self) -> None:
        """Reload experiment definitions now (raises on store errors; the request path never does)."""
        with self.engine.connect() as connection:
            defs = load_definitions(connection)
        self._defs = defs
        self._defs_expiry = defs.loaded_at + self.cache_ttl

    def _lookup(self, experiment: str | int | None, deadline: float) -> ExperimentDef | None:  # waits until deadline at most
        return definitions.lookup(self, experiment, deadline)

    # ---------------------------------------------------------------- stored assignments (cache)

    def _remember(self, key: tuple[int, str], variant_id: int) -> None:
        sticky = self._sticky
        sticky[key] = variant_id
        if len(sticky) > self.max_cached_users:
            with contextlib.suppress(RuntimeError):  # resized by another thread while iterating: next time
                for old in list(islice(iter(sticky), max(1, self.max_cached_users // 10))):
                    if self._writer is None or not self._writer.is_pending(*old):
                        sticky.pop(old, None)

    def _remember_absent(self, key: tuple[int, str]) -> None:  # a user read as not stored: not read again for cache_ttl s
        absent = self._absent
        absent[key] = time.monotonic() + self.cache_ttl
        if len(absent) > max(1000, self.max_cached_users // 10):
            with contextlib.suppress(RuntimeError):
                for old in list(islice(iter(absent), len(absent) // 2)):
                    absent.pop(old, None)

    def _read_stored(self, d: ExperimentDef, user_id: str, deadline: float) -> tuple[int | None, bool]:
        """``(stored variant id or None, known)`` for a user not in the cache; ``known=False`` on store trouble."""
        key = (d.id, user_id)
        absent_until = self._absent.get(key)
        if absent_until is not None and absent_until > time.monotonic():
            return None, True
        try:
            stored = self._reads.call(stored_variant, self._engine, d.id, user_id, deadline=deadline)
        except Unavailable as exc:
            if "deadline" in str(exc):
                self._log_failure("reading a stored assignment", None)
            return None, False
        except Exception as exc:  # noqa: BLE001 - store trouble: fail open
            self._log_failure("reading a stored assignment", exc)
            return None, False
        if stored is None:
            self._remember_absent(key)
        else:
            self._remember(key, stored)
        return stored, True

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

        Returns None only when the experiment is unknown, draft, cancelled, completed without a winner (or
        the user is outside a shipped winner's rollout), paused for a user never assigned, when targeting or
        the traffic share excludes the user, or when the definitions could never be loaded (store down since
        the process started, or an unusable URL). Store trouble otherwise degrades to the hash. The new row and
        the ``exposure`` event (unless ``expose=False``) are written behind the answer. Raises
        TypeError/ValueError for bad arguments, among them ``attributes`` the store cannot hold (NaN or
        infinite numbers, lone surrogates, non-text keys: :class:`~abcore.store.values.UnstorableValue`, a ValueError).
        """
        check_user_id(user_id)
        check_experiment_ref(experiment)
        check_attributes(attributes)
        try:
            if self._broken is not None:
                self._log_failure("assign", None, key="config")
                return None
            deadline = time.monotonic() + self.timeout
            d = self._lookup(experiment, deadline)
            if d is None:
                return None
            key = (d.id, user_id)
            cached = self._sticky.get(key)
            answer, needs_read = decide(
                d, cached, user_id, attributes, verified=False, read_first=d.id in self._read_first
            )
            if needs_read:
                stored, _known = self._read_stored(d, user_id, deadline)
                answer, _ = decide(d, stored, user_id, attributes, verified=True)  # unknown: the hash (fail open)
            if answer is None:
                return None
            if d.status == _COMPLETED:
                d.requests[d.winner_index].inc()  # type: ignore[index]
                return answer
            index = d.index_of[answer.variant_id]
            writer = self._writer
            assert writer is not None
            exposure = (d.id, answer.variant_id, user_id, _EXPOSURE, None, None, request_id, {}, utcnow()) if expose else None
            if answer.is_new:
                self._sticky[key] = answer.variant_id
                if len(self._sticky) > self.max_cached_users:
                    self._remember(key, answer.variant_id)
                writer.add_row((user_id, d.id, answer.variant_id, jsonable(attributes), exposure[8] if exposure else utcnow()), exposure)
            elif exposure is not None:
                writer.add_event(exposure)
            if expose:
                d.exposures[index].inc()
            d.requests[index].inc()
            return answer
        except Exception as exc:  # noqa: BLE001 - the request path never breaks the caller
            self._log_failure("assign", exc)
            return None

    def assign_layer(self, user_id: str, layer: str, *, attributes: Mapping[str, Any] | None = None, expose: bool = True,
                     request_id: str | None = None) -> Assignment | None:
        """The user's one assignment in ``layer``, or None for the layer's default (:func:`abcore.assign.surface.assign_layer`)."""
        return surface.assign_layer(self, user_id, layer, attributes=attributes, expose=expose, request_id=request_id)

    def assign_user_to_variant(self, user_id: str, layer: str | None = None) -> int | None:
        """The variant id in ``layer`` (None: of the most recently started running experiment), or None."""
        answer = self.assign(user_id) if layer is None else self.assign_layer(user_id, layer)
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

        ``attributes`` is one mapping for everybody or one (or None) per user. With ``persist=True`` the new
        rows and the events are written before it returns (batch path, ``write_batch`` per transaction); on store trouble
        the answers come from the hash and the writes go to the write-behind buffer. ``persist=False`` is the
        pure path for offline scoring: stored assignments are still honoured (one read) but nothing is written;
        users without a stored row get the variant they *would* get, with ``is_new=True``. See :mod:`abcore.assign.batch`.
        """
        return batch.assign_many(
            self, user_ids, experiment, attributes=attributes, expose=expose, persist=persist, request_id=request_id
        )

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
        timestamp: datetime | None = None,
    ) -> bool:
        """Record a metric value (or feedback/error event) for the user's variant; written behind.

        Returns True when buffered; False (nothing recorded, a log line at most once a minute says why) when
        the user was never assigned, the experiment is not running or paused, the store cannot tell (down,
        user not cached), or the store would reject the event: a metric name over 200 characters, a NaN or
        infinite value, a request id that is not a string of at most 255 characters. Numbers may be int,
        float, numpy numbers or ``Decimal``; a ``conversion`` without ``value`` counts 1.0. Raises
        TypeError/ValueError for bad arguments (empty or non-string user id, metric name or experiment,
        unknown event type, a value that is not a number, ``properties`` the store cannot hold: NaN or
        infinite numbers, lone surrogates, non-text keys), a non-datetime ``timestamp`` (when it happened: default
        now, naive = UTC; backfills and replays; outside UTC years 1-9999 ``False``, the importer's rule)."""
        return tracking.track(self, user_id, experiment, metric_name, value, properties=properties,
                              event_type=event_type, request_id=request_id, timestamp=timestamp)


def _check_options(
    engine: Any,
    flush_interval: float,
    cache_ttl: float,
    timeout: float,
    max_buffer: int,
    exit_timeout: float,
    write_batch: int | None,
) -> None:
    """Raise TypeError for an engine that is neither an Engine nor a URL, ValueError for an out-of-range option."""
    if not isinstance(engine, Engine | str):
        raise TypeError(f"engine must be a SQLAlchemy Engine or a URL string, got {type(engine).__name__}")
    bad_batch = write_batch is not None and write_batch < 1
    if flush_interval <= 0 or cache_ttl < 0 or timeout <= 0 or max_buffer < 1 or exit_timeout < 0 or bad_batch:
        raise ValueError(
            "flush_interval and timeout must be > 0, cache_ttl and exit_timeout >= 0, max_buffer and write_batch >= 1"
        )


def _failure_text(key: str, exc: BaseException | None, broken: str | None, timeout: float) -> tuple[str, str]:
    """``(reason, consequence)`` of a logged failure of kind ``key`` (config, track or store)."""
    if key == "config":
        reason = broken or "configuration problem"
        consequence = "assign answers None and track False"
    elif key == "track":
        reason = str(exc)
        consequence = "track returned False, nothing recorded"
    else:
        reason = f"{type(exc).__name__}: {exc}" if exc else f"no answer within {timeout * 1000:.0f} ms"
        consequence = "answering from the hash and keeping writes buffered"
    return reason, consequence


def _count_inserted(defs: Definitions | None, rows: Sequence[tuple[Any, ...]]) -> None:
    """Count stored rows in ``experiment_assignments_total``, one increment per variant."""
    if defs is None:
        return
    for (exp_id, variant_id), count in Counter((row[1], row[2]) for row in rows).items():
        d = defs.by_id.get(exp_id)
        if d is not None:
            index = d.index_of.get(variant_id)
            if index is not None:
                d.assignments[index].inc(count)


def live_assigners() -> list[Assigner]:
    """Every :class:`Assigner` not closed yet (what is flushed at interpreter exit and reset after a fork)."""
    return list(_LIVE)


def _redact(source: Engine | str) -> str:
    from abcore.config import redact_url

    return repr(redact_url(source) if isinstance(source, str) else source.url.render_as_string(hide_password=True))
