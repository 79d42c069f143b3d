"""Write-behind for :mod:`abcore.assign`: assignment rows and events, off the request path.

``assign`` answers first and hands its writes here: the new user's assignment row
(``ab_user_assignments``) and the ``exposure`` / ``track`` events (``ab_experiment_results``).
A daemon thread writes them every ``flush_interval`` seconds, as soon as ``max_buffer`` are waiting,
on :meth:`Writer.flush` and at interpreter exit (bounded):

* rows: ``INSERT ... ON CONFLICT (experiment_id, user_id) DO NOTHING RETURNING user_id``; a row that was
  not inserted (another process stored the user first) is read back, and when the stored variant
  differs from the one served, ``on_corrected`` is told (the assigner fixes its cache and counts it) and
  the buffered events of that user are written with the stored variant;
* a ``user_assignment`` event for each row actually inserted;
* at most ``batch_size`` rows (or events) per transaction, each committed, in index order (see
  :mod:`abcore.assign.statements`); store trouble requeues only what is not committed yet;
* a failing batch is split in halves until the bad rows are alone; a row the store rejects by itself is
  *dead-lettered*: appended with the error to a JSON-lines file (:attr:`Writer.dead_letter_path`),
  counted (``experiment_assign_dead_letters_total``) and never retried. Store trouble (connection lost,
  locked, timeout, missing table) is not the row's fault: the batch is kept and retried on the next
  flush, bounded by ``max_pending`` (beyond it the oldest are dropped and counted,
  ``experiment_assign_dropped_total``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from abcore.assign import prometheus
from abcore.assign.interleave import expand_impressions
from abcore.assign.statements import (
    EVENT_COLUMNS,
    ROW_COLUMNS,
    Event,
    Row,
    Stamps,
    insert_events,
    insert_rows,
    read_back,
)
from abcore.store.tables import EventType

logger = logging.getLogger("abcore.assign")

#: Rows (or events) per write transaction, by backend. Each transaction commits on its own, so a long backlog
#: is written in steps: on PostgreSQL far below the assignment engine's ``statement_timeout`` (5 s; one COPY of
#: 130,000 events exceeded it on a loaded machine and was retried forever), on SQLite (no statement timeout)
#: large, because a batch sorted in index order inserts faster the larger it is (10,000 cost ~20 % of the
#: throughput of 100,000 in the benchmarks) while the write lock is held about a second at most on a quiet machine.
DEFAULT_BATCH_SIZE = {"sqlite": 100_000, "postgresql": 10_000}


def default_batch_size(engine: Engine) -> int:
    """Rows (or events) per write transaction for ``engine``'s backend (:data:`DEFAULT_BATCH_SIZE`)."""
    return DEFAULT_BATCH_SIZE.get(engine.dialect.name, 10_000)


_USER_ASSIGNMENT = EventType.USER_ASSIGNMENT.value


def _driver_trouble() -> tuple[type[BaseException], ...]:
    """The drivers' own OperationalError/InterfaceError classes (sqlite3, psycopg when installed)."""
    import sqlite3

    classes: list[type[BaseException]] = [sqlite3.OperationalError, sqlite3.InterfaceError]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency; tolerate its absence
        pass
    else:
        classes += [psycopg.OperationalError, psycopg.InterfaceError]
    return tuple(classes)


_DRIVER_TROUBLE = _driver_trouble()


def is_store_trouble(exc: BaseException) -> bool:
    """True when ``exc`` is the store's trouble (retry the batch later), False when a row is to blame.

    Store trouble: lost or refused connections, locks, timeouts (``OperationalError`` and friends) and
    schema problems (undefined table/column: SQLSTATE class 42 on PostgreSQL). Everything else — a value
    too long, a bad type, a foreign key — is a rejected row.
    """
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | PoolTimeout | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, _DRIVER_TROUBLE):  # a driver error that did not pass through SQLAlchemy's wrapping
        return True
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate[:2] in ("08", "42", "53", "57", "58"):
            return True
        return exc.connection_invalidated
    return False


def default_dead_letter_path(engine: Engine) -> Path:
    """``<db file>.dead-letters.jsonl`` next to a SQLite file; else ``data/abcore-dead-letters.jsonl`` in the project."""
    from abcore.config import DEFAULT_SQLITE_PATH

    database = engine.url.database or ""
    if engine.dialect.name == "sqlite" and database not in ("", ":memory:") and not database.startswith("file:"):
        path = Path(database).expanduser()
        return path.with_name(path.name + ".dead-letters.jsonl")
    return DEFAULT_SQLITE_PATH.parent / "abcore-dead-letters.jsonl"


# --------------------------------------------------------------------------------------------
# The writer
# --------------------------------------------------------------------------------------------


class Writer:
    """The write-behind buffer of one assigner (see the module docstring).

    ``on_corrected(experiment_id, user_id, stored_variant_id)`` is called (on the writer thread) for each
    row that lost a race to a different stored variant; ``on_inserted(rows)`` with the rows inserted;
    ``log(what, exc)`` reports store trouble (rate limited by the caller).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        flush_interval: float = 1.0,
        max_buffer: int = 5000,
        max_pending: int = 200_000,
        batch_size: int | None = None,
        dead_letter_path: str | Path | None = None,
        on_corrected: Callable[[int, str, int], None] | None = None,
        on_inserted: Callable[[Sequence[Row]], None] | None = None,
        log: Callable[[str, BaseException | None], None] | None = None,
    ) -> None:
        self.engine = engine
        self.flush_interval = float(flush_interval)
        self.max_buffer = int(max_buffer)
        self.max_pending = int(max_pending)
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        #: Rows (or events) per write transaction (None: :func:`default_batch_size` of the engine).
        self.batch_size = default_batch_size(engine) if batch_size is None else int(batch_size)
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path is not None else default_dead_letter_path(engine)
        self._on_corrected = on_corrected
        self._on_inserted = on_inserted
        self._log = log or (lambda what, exc: logger.warning("abcore.assign: %s failed: %s", what, exc))
        self._rows: dict[tuple[int, str], Row] = {}
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._done = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._seq = 0  # hand-overs so far
        self._attempted = 0  # hand-overs covered by the last finished write attempt
        self._in_flight = 0  # rows + events taken by the running attempt
        self._started = 0  # write attempts started
        self._finished = 0  # write attempts finished
        self.rows_written = 0
        self.events_written = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.corrected = 0
        #: The last dead letters (also in the file), newest last.
        self.dead_letters: deque[dict[str, Any]] = deque(maxlen=1000)
        self._dead_keys: set[tuple[int, str]] = set()

    # ---------------------------------------------------------------- handing over

    def add_row(self, row: Row, event: Event | None = None) -> None:
        """Queue an assignment row (and an event, e.g. its exposure, written after it)."""
        with self._lock:
            self._rows[(row[1], row[0])] = row
            if event is not None:
                self._events.append(event)
            self._seq += 1
            size = len(self._rows) + len(self._events)
        self._kick(size)

    def add_event(self, event: Event) -> None:
        """Queue one event."""
        with self._lock:
            self._events.append(event)
            self._seq += 1
            size = len(self._rows) + len(self._events)
        self._kick(size)

    def add_many(self, rows: Sequence[Row] = (), events: Sequence[Event] = ()) -> None:
        """Queue many rows and events (the batch path hands over what it could not write itself)."""
        if not rows and not events:
            return
        with self._lock:
            for row in rows:
                self._rows[(row[1], row[0])] = row
            self._events.extend(events)
            self._seq += 1
            size = len(self._rows) + len(self._events)
            self._trim()
        self._kick(size)

    def _kick(self, size: int) -> None:
        if self._thread is None:
            self._start()
        if size >= self.max_buffer and not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        with self._done:
            if self._thread is None and not self._stop:
                thread = threading.Thread(target=self._loop, name="abcore-assign-writer", daemon=True)
                self._thread = thread
                thread.start()

    def pending(self) -> int:
        """Rows and events not yet written (a row counts once: its ``user_assignment`` event is written with it)."""
        return len(self._rows) + len(self._events) + self._in_flight

    def pending_rows(self) -> int:
        return len(self._rows)

    def is_pending(self, experiment_id: int, user_id: str) -> bool:
        return (experiment_id, user_id) in self._rows

    # ---------------------------------------------------------------- the thread

    def _loop(self) -> None:
        while not self._stop:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            if self._stop:
                break
            self._attempt()

    def _attempt(self) -> None:
        with self._done:
            self._started += 1
        with self._lock:
            rows, self._rows = self._rows, {}
            events, self._events = self._events, []
            seq = self._seq
            self._in_flight = len(rows) + len(events)
        try:
            if rows or events:
                self._write(list(rows.values()), events)
        except BaseException as exc:  # noqa: BLE001 - the writer thread never dies
            logger.exception("abcore.assign: writer failed unexpectedly")
            self._log("writing assignments and events", exc)
        finally:
            with self._lock:
                self._in_flight = 0
            with self._done:
                self._attempted = max(self._attempted, seq)
                self._finished += 1
                self._done.notify_all()

    def _write(self, rows: list[Row], events: list[Event]) -> None:
        """Write ``rows`` then ``events``, at most ``batch_size`` of them per transaction (each committed).

        Store trouble stops the attempt: what is not committed yet (the rows left, the events, and the
        ``user_assignment`` events of the rows already stored) is requeued for the next flush.
        """
        stamps: Stamps = {}  # timestamp texts of this attempt (SQLite), shared by rows and events
        size = self.batch_size
        # 1. assignment rows; the user_assignment event of each inserted row; read-back of the others
        assigned: list[Event] = []
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            try:
                inserted = self._isolated("assignment", part, lambda chunk: self._insert_rows_tx(chunk, stamps), set())
            except Exception as exc:  # noqa: BLE001 - store trouble: keep what is not committed for the next flush
                self._log("writing assignments", exc)
                self._requeue(rows[start:], assigned + events)
                return
            assert isinstance(inserted, set)
            written = [r for r in part if (r[1], r[0]) in inserted]
            lost = [r for r in part if (r[1], r[0]) not in inserted and not self._is_dead(r)]
            self.rows_written += len(written)
            if written and self._on_inserted is not None:
                self._on_inserted(written)
            assigned += [(r[1], r[2], r[0], _USER_ASSIGNMENT, None, None, None, {}, r[4]) for r in written]
            if lost:
                fixes = self._check_lost(lost)
                if fixes:
                    self._correct(fixes)
                    events = [
                        (e[0], fixes[(e[0], e[2])], *e[2:]) if (e[0], e[2]) in fixes else e for e in events
                    ]
        # 2. events (a buffered impression becomes one row per position)
        events = assigned + expand_impressions(events)
        for start in range(0, len(events), size):
            part = events[start : start + size]
            try:
                count = self._isolated("event", part, lambda chunk: self._insert_events_tx(chunk, stamps), 0)
            except Exception as exc:  # noqa: BLE001 - store trouble: keep the events for the next flush
                self._log("writing events", exc)
                self._requeue([], events[start:])
                return
            self.events_written += int(count)  # type: ignore[arg-type]

    def _check_lost(self, lost: list[Row]) -> dict[tuple[int, str], int]:
        """Read back rows another writer stored first; the (experiment_id, user_id) stored with another variant."""
        try:
            stored = read_back(self.engine, lost)
        except Exception as exc:  # noqa: BLE001 - the rows are stored (by someone); the check can wait
            self._log("reading back assignments", exc)
            return {}
        fixes: dict[tuple[int, str], int] = {}
        for r in lost:
            key = (r[1], r[0])
            variant_id = stored.get(key)
            if variant_id is not None and variant_id != r[2]:
                fixes[key] = variant_id
        return fixes

    def _insert_rows_tx(self, rows: list[Row], stamps: Stamps | None = None) -> set[tuple[int, str]]:
        with self.engine.begin() as connection:
            return insert_rows(self.engine, connection, rows, stamps=stamps)

    def _insert_events_tx(self, events: list[Event], stamps: Stamps | None = None) -> int:
        with self.engine.begin() as connection:
            return insert_events(self.engine, connection, events, stamps=stamps)

    def _isolated(self, kind: str, items: list[Any], write: Callable[[list[Any]], Any], empty: Any) -> Any:
        """``write(items)``; on a rejected batch, split in halves until each bad item is alone and dead-lettered.

        Store trouble propagates (the caller keeps the batch); the result merges the halves' results.
        """
        try:
            return write(items)
        except Exception as exc:  # noqa: BLE001 - classified below
            if is_store_trouble(exc):
                raise
            if len(items) == 1:
                self._dead_letter(kind, items[0], exc)
                return set() if isinstance(empty, set) else 0
            middle = len(items) // 2
            left = self._isolated(kind, items[:middle], write, empty)
            right = self._isolated(kind, items[middle:], write, empty)
            return left | right if isinstance(left, set) else left + right

    def _dead_letter(self, kind: str, item: tuple[Any, ...], exc: BaseException) -> None:
        columns = ROW_COLUMNS if kind == "assignment" else EVENT_COLUMNS
        error = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}".strip()
        letter = {
            "dead_lettered_at": datetime.now(UTC).isoformat(),
            "kind": kind,
            "row": {c: (v.isoformat() if isinstance(v, datetime) else v) for c, v in zip(columns, item, strict=False)},
            "error": error.splitlines()[0][:1000] if error else type(exc).__name__,
        }
        if kind == "assignment":
            self._dead_keys.add((item[1], item[0]))
        self.dead_lettered += 1
        self.dead_letters.append(letter)
        prometheus.DEAD_LETTERS.labels(kind).inc()
        logger.error(
            "abcore.assign: the store rejected one %s row; dead-lettered to %s: %s",
            kind, self.dead_letter_path, letter["error"],
        )
        try:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            with self.dead_letter_path.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(letter, default=str) + "\n")
        except OSError as write_error:
            self._log("writing the dead-letter file", write_error)

    def _is_dead(self, row: Row) -> bool:
        return (row[1], row[0]) in self._dead_keys

    def _correct(self, fixes: dict[tuple[int, str], int]) -> None:
        self.corrected += len(fixes)
        for (exp_id, user_id), variant_id in fixes.items():
            if self._on_corrected is not None:
                self._on_corrected(exp_id, user_id, variant_id)

    def _requeue(self, rows: list[Row], events: list[Event]) -> None:
        """Put a batch back in front of what arrived meanwhile, dropping the oldest beyond ``max_pending``."""
        with self._lock:
            if rows:
                merged = {(r[1], r[0]): r for r in rows}
                merged.update(self._rows)
                self._rows = merged
            if events:
                self._events = events + self._events
            self._in_flight = 0
            self._trim()

    def _trim(self) -> None:
        """Drop the oldest events, then rows, beyond ``max_pending`` (caller holds the lock); counted."""
        overflow = len(self._rows) + len(self._events) - self.max_pending
        if overflow <= 0:
            return
        drop_events = min(overflow, len(self._events))
        if drop_events:
            del self._events[:drop_events]
            prometheus.DROPPED.labels("event").inc(drop_events)
        drop_rows = overflow - drop_events
        if drop_rows:
            for key in list(self._rows)[:drop_rows]:
                del self._rows[key]
            prometheus.DROPPED.labels("assignment").inc(drop_rows)
        self.dropped += overflow
        prometheus.ERRORS.labels("dropped_events").inc(overflow)

    # ---------------------------------------------------------------- flushing

    def flush(self, timeout: float | None = 5.0) -> int:
        """Write everything handed over so far; wait at most ``timeout`` seconds (None: no bound).

        Returns how many events (``user_assignment`` events of new rows included) were written meanwhile;
        0 when the store is in trouble (everything stays buffered for the next attempt).
        """
        before = self.events_written
        if self._attempted >= self._seq and not self._rows and not self._events:
            return 0
        if self._thread is None:
            self._start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._done:
            target = self._started + 1  # an attempt that starts after this call covers everything handed over
            self._wake.set()
            while self._finished < target:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._done.wait(0.5 if remaining is None else min(remaining, 0.5))
                if self._finished < target and not self._wake.is_set():
                    self._wake.set()
        return self.events_written - before

    def close(self, timeout: float | None = 5.0) -> int:
        """Flush (bounded by ``timeout``) and stop the thread; returns how many rows and events stayed unwritten."""
        self.flush(timeout)
        self._stop = True
        self._wake.set()
        return self.pending()

    def reset_after_fork(self) -> None:
        """In a forked child: no inherited thread, locks or buffered writes (the parent writes its own)."""
        self._rows = {}
        self._events = []
        self._lock = threading.Lock()
        self._done = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._thread = None
        self._seq = self._attempted = self._started = self._finished = 0

