"""The process-wide default :class:`~abcore.assign.assigner.Assigner` and the module-level functions on it.

``assign``, ``assign_many``, ``assign_user_to_variant``, ``track`` and ``flush`` use the client built
lazily on first use from :func:`abcore.config.database_url` (or the store given to :func:`configure`);
importing this module builds nothing. At interpreter exit every live client is flushed (bounded by the
largest ``exit_timeout``); in a forked child every live client drops what it inherited from its parent.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine

from abcore.assign import prometheus
from abcore.assign.assigner import Assigner, live_assigners
from abcore.assign.cache import Assignment
from abcore.assign.interleave import Interleaving
from abcore.assign.interleave import interleave as interleave_with

__all__ = [
    "assign",
    "assign_layer",
    "assign_many",
    "assign_user_to_variant",
    "configure",
    "default_assigner",
    "flush",
    "interleave",
    "track",
]

logger = logging.getLogger("abcore.assign")


_default: Assigner | None = None
_default_lock = threading.Lock()
_default_source: Engine | str | None = None
_default_options: dict[str, Any] = {}
_ASSIGNER_OPTIONS = frozenset(
    name for name, p in inspect.signature(Assigner.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY
)


def configure(engine_or_url: Engine | str | None = None, **options: Any) -> Assigner:
    """Point the module-level functions at another store (engine or URL; None: the configured URL).

    Closes (flushes) the previous default client. ``options`` go to :class:`Assigner`
    (``flush_interval``, ``max_buffer``, ``cache_ttl``, ``timeout``, ``exit_timeout``, ...). Returns the new client.
    Raises TypeError for an unknown option; an unusable URL does not raise (calls answer None/False, logged).
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
    """A client on the configured source (:func:`configure`'s, else :func:`abcore.config.database_url`)."""
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


def assign_user_to_variant(user_id: str, layer: str | None = None) -> int | None:
    """The variant id of ``user_id`` in ``layer`` (None: in the most recently started running experiment), or None."""
    return default_assigner().assign_user_to_variant(user_id, layer)


def assign_layer(
    user_id: str,
    layer: str,
    *,
    attributes: Mapping[str, Any] | None = None,
    expose: bool = True,
    request_id: str | None = None,
) -> Assignment | None:
    """See :meth:`Assigner.assign_layer` (default client): the user's one assignment in ``layer``, or None."""
    client = _default if _default is not None else default_assigner()
    return client.assign_layer(user_id, layer, attributes=attributes, expose=expose, request_id=request_id)


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
    timestamp: datetime | None = None,
) -> bool:
    """See :meth:`Assigner.track` (default client)."""
    return default_assigner().track(
        user_id, experiment, metric_name, value, properties=properties, event_type=event_type, request_id=request_id,
        timestamp=timestamp,
    )


def interleave(
    user_id: str,
    experiment: str | int | None,
    rankings: Mapping[str, Sequence[str | int]],
    *,
    length: int | None = None,
    request_id: str | None = None,
) -> Interleaving | None:
    """The merged list of an interleaving experiment's rankers for ``user_id`` (default client); see
    :func:`abcore.assign.interleave.interleave`."""
    client = _default if _default is not None else default_assigner()
    return interleave_with(client, user_id, experiment, rankings, length=length, request_id=request_id)


def flush(timeout: float | None = None) -> int:
    """Write every buffered row and event of the default client now (bounded by ``timeout``); events written."""
    client = _default
    return 0 if client is None else client.flush(timeout)


def _flush_all_at_exit() -> None:
    """Interpreter exit: flush every live client, all within the largest ``exit_timeout``; say what was lost."""
    clients = live_assigners()
    if not clients:
        return
    bound = max(c.exit_timeout for c in clients)
    deadline = time.monotonic() + bound
    for client in clients:
        with contextlib.suppress(Exception):  # interpreter exit: nothing left to raise to
            writer = client.writer
            if writer is None or writer.pending() == 0:
                continue
            unwritten = client.close(max(deadline - time.monotonic(), 0.0))
            if unwritten:
                prometheus.DROPPED.labels("exit").inc(unwritten)
                logger.warning(
                    "abcore.assign: exit: %d assignment rows/events could not be written within %.1f s "
                    "(the store is slow or down); they are lost",
                    unwritten,
                    bound,
                )


def _reset_after_fork() -> None:
    """In a forked child: every live client drops the locks, threads, connections and buffers it inherited."""
    for client in live_assigners():
        client._after_fork()


atexit.register(_flush_all_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)
