"""The experiment definitions an :class:`~abcore.assign.assigner.Assigner` answers from, kept fresh.

Definitions are reloaded in the background at least every ``cache_ttl`` seconds; a call waits for a reload
only until its deadline (the calls of the process's first ``first_load_timeout`` seconds until that window
ends) and otherwise serves the current definitions, also while the store is in trouble. The functions take the client and keep its cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from abcore.assign.cache import Definitions, ExperimentDef, decide

if TYPE_CHECKING:
    from abcore.assign.assigner import Assigner


def _refresh_job(client: Assigner, done: threading.Event) -> None:
    """Reload on a background thread; on store trouble keep the current definitions (up to ``stale_ttl``)."""
    try:
        client.refresh()
    except Exception as exc:  # noqa: BLE001 - store trouble: keep serving the definitions we have
        client._refresh_failed_at = time.monotonic()
        client._log_failure("loading experiments", exc)
        defs = client._defs
        if defs is not None and time.monotonic() - defs.loaded_at > client.stale_ttl:
            client._defs = None
    finally:
        with client._refresh_lock:
            client._refreshing = None
        done.set()


def _kick_refresh(client: Assigner) -> threading.Event:
    """Start a background reload unless one is running; the event is set when it finishes."""
    with client._refresh_lock:
        running = client._refreshing
        if running is None:
            running = client._refreshing = threading.Event()
            threading.Thread(
                target=_refresh_job, args=(client, running), name="abcore-assign-definitions", daemon=True
            ).start()
        return running


def _first_load_deadline(client: Assigner, now: float) -> float:
    """Until when a call may wait for definitions that never loaded: ``first_load_timeout`` after the process's
    first call (every call arriving in that window shares it), never again afterwards — a store that cannot
    be read then costs a call at most its own ``timeout``."""
    if client._first_load_deadline is None:
        client._first_load_deadline = now + client.first_load_timeout
    return client._first_load_deadline


def current(client: Assigner, deadline: float) -> Definitions | None:
    """Current definitions: reloaded in the background when expired; waits at most until ``deadline``."""
    defs = client._defs
    now = time.monotonic()
    if defs is not None and now < client._defs_expiry:
        return defs
    if client._engine is None:
        return None
    if defs is None:
        deadline = max(deadline, _first_load_deadline(client, now))
    elif now - client._refresh_failed_at < client.retry_after:
        return defs  # the store was just in trouble: serve what we have, do not wait
    already_running = client._refreshing is not None
    done = _kick_refresh(client)
    if defs is not None and already_running:
        return defs  # another call is reloading (the store may be slow): serve the current ones meanwhile
    done.wait(max(deadline - now, 0.0))
    return client._defs


def lookup(client: Assigner, experiment: str | int | None, deadline: float) -> ExperimentDef | None:
    """The definition of ``experiment`` (name, id or None), reloading once a second when it is not known yet."""
    defs = current(client, deadline)
    if defs is None:
        return None
    found = defs.find(experiment)
    if found is None and experiment is not None:
        now = time.monotonic()
        if now - client._last_miss_refresh >= 1.0:  # a just-started experiment appears within ~1 s
            client._last_miss_refresh = now
            client._defs_expiry = 0.0
            defs = current(client, deadline)
            found = defs.find(experiment) if defs is not None else None
    return found


#: ``answers_at_once`` wants the definitions fresh for at least this long, so that they cannot expire between
#: the check and the ``assign`` call that follows it.
FRESH_MARGIN = 0.05


def answers_at_once(client: Assigner, user_id: str, experiment: str | int | None, attributes: Mapping[str, Any] | None) -> bool:
    """True when ``client.assign(user_id, experiment, attributes=attributes)`` will answer from memory now: the
    definitions are loaded and fresh, the experiment is known, and the user's answer needs no store read.

    False means the call may wait (for a reload or a read, at most the client's ``timeout``): an async server then
    runs it on a thread instead of its event loop. Never raises.
    """
    try:
        defs = client._defs
        if defs is None or client._engine is None or time.monotonic() + FRESH_MARGIN >= client._defs_expiry:
            return False
        d = defs.find(experiment)
        if d is None:
            return False
        key = (d.id, user_id)
        _, needs_read = decide(
            d, client._sticky.get(key), user_id, attributes, verified=False, read_first=d.id in client._read_first
        )
        if not needs_read:
            return True
        absent_until = client._absent.get(key)
        return absent_until is not None and absent_until > time.monotonic() + FRESH_MARGIN
    except Exception:  # noqa: BLE001 - unsure: the caller takes the thread
        return False
