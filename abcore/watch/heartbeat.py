"""When the watcher last ran: every pass records its time in the store, every page that shows stopping rules reads it.

A pass (:func:`abcore.watch.runner.run_pass`, from ``abcore watch`` or the watcher ``abcore dashboard``
starts) writes one row of ``ab_settings`` (key :data:`HEARTBEAT_KEY`): when it ended, the interval it
runs at, how many running experiments it looked at and how many errors it had. :func:`watcher_state`
turns that row into what a page shows: ``ok``, or ``late`` / ``missing`` (shown in red: stopping rules
that are on are not being applied). Late means the last pass is older than twice the interval.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.store.tables import Setting, utcnow

__all__ = ["HEARTBEAT_KEY", "Heartbeat", "WatcherState", "read_heartbeat", "record_pass", "watcher_state"]

log = logging.getLogger("abcore.watch.heartbeat")

HEARTBEAT_KEY = "watch_last_pass"
#: A pass is late when older than this many intervals.
LATE_AFTER_INTERVALS = 2.0


@dataclass(frozen=True)
class Heartbeat:
    """The last pass: when it ended (aware UTC), the interval in seconds the watcher runs at (``None``:
    a single ``--once`` pass, e.g. from cron), the running experiments it looked at and its error count."""

    at: datetime
    every: float | None
    experiments: int = 0
    errors: int = 0


@dataclass(frozen=True)
class WatcherState:
    """What a page shows about the watcher: ``level`` ``ok`` | ``late`` | ``missing`` and one sentence."""

    level: str
    text: str

    @property
    def alarming(self) -> bool:
        """True when the page must show it in red (no pass yet, or the last one is too old)."""
        return self.level != "ok"


def record_pass(engine: Engine, *, every: float | None, experiments: int, errors: int,
                now: datetime | None = None) -> bool:
    """Store the heartbeat of a pass that just ended; returns False (logged) when the store refused it.

    Never raises: a store outage must not end the watcher's loop.
    """
    value = {"at": (now or datetime.now(UTC)).isoformat(), "every": every, "experiments": int(experiments),
             "errors": int(errors)}
    try:
        with Session(engine) as session:
            row = session.get(Setting, HEARTBEAT_KEY) or Setting(key=HEARTBEAT_KEY)
            row.value = value
            row.updated_by = "watch"
            row.updated_at = utcnow()
            session.add(row)
            session.commit()
    except Exception as exc:  # noqa: BLE001 - the store is down: the next pass tries again
        log.error("watch: cannot record the pass: %s", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return False
    return True


def read_heartbeat(session: Session) -> Heartbeat | None:
    """The last pass recorded in the store, or None when no watcher has ever run on it (or the row is unreadable)."""
    row = session.get(Setting, HEARTBEAT_KEY)
    value: Any = row.value if row is not None else None
    if not isinstance(value, dict):
        return None
    try:
        at = datetime.fromisoformat(str(value["at"]))
        every = value.get("every")
        return Heartbeat(at=at if at.tzinfo else at.replace(tzinfo=UTC),
                         every=float(every) if every is not None else None,
                         experiments=int(value.get("experiments") or 0), errors=int(value.get("errors") or 0))
    except (KeyError, TypeError, ValueError):
        return None


def _ago(seconds: float) -> str:
    """``'just now'``, ``'40 s ago'``, ``'2 min ago'``, ``'3 h ago'``, ``'2 days ago'``."""
    if seconds < 5:
        return "just now"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _interval(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g} s"


def watcher_state(heartbeat: Heartbeat | None, *, default_every: float, now: datetime | None = None) -> WatcherState:
    """The watcher as a page shows it: ``missing`` without any pass, ``late`` when the last pass is older
    than :data:`LATE_AFTER_INTERVALS` times its interval (``default_every`` for a ``--once`` pass), else ``ok``."""
    if heartbeat is None:
        return WatcherState("missing", "No watcher has run on this store: stopping rules and alerts are not "
                                       "applied. The command abcore dashboard runs one (unless started with "
                                       "--no-watch); or run: abcore watch --every 300")
    every = heartbeat.every or default_every
    age = max(0.0, ((now or datetime.now(UTC)) - heartbeat.at).total_seconds())
    errors = f", {heartbeat.errors} error(s) (see the watcher's log)" if heartbeat.errors else ""
    when = f"last pass {_ago(age)} (a pass every {_interval(every)}{errors})"
    if age > LATE_AFTER_INTERVALS * every:
        return WatcherState("late", f"Watcher late: {when}. Stopping rules are not applied while it is down.")
    return WatcherState("ok", f"Watcher: {when}.")
