"""The batch path of :class:`~abcore.assign.assigner.Assigner`: :meth:`~abcore.assign.assigner.Assigner.assign_many`.

One read of the stored rows, the hash for everybody else (vectorised), the new rows inserted and the events
written before it returns, ``write_batch`` per transaction; on store trouble the answers come from the hash and
the writes go to the client's write-behind buffer. The functions take the client and share its caches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from abcore.assign.cache import (
    Assignment,
    ExperimentDef,
    check_attributes,
    check_experiment_ref,
    check_user_id,
    jsonable,
)
from abcore.assign.hashing import TRAFFIC_SEED, buckets, choose_variants
from abcore.assign.reads import stored_variants
from abcore.assign.statements import insert_events, insert_rows
from abcore.assign.targeting import evaluate_targeting
from abcore.assign.writer import is_store_trouble
from abcore.store.tables import EventType, ExperimentStatus, utcnow

if TYPE_CHECKING:
    from abcore.assign.assigner import Assigner

_RUNNING = ExperimentStatus.RUNNING.value
_PAUSED = ExperimentStatus.PAUSED.value
_COMPLETED = ExperimentStatus.COMPLETED.value
_EXPOSURE = EventType.EXPOSURE.value
_USER_ASSIGNMENT = EventType.USER_ASSIGNMENT.value


def assign_many(
    client: Assigner,
    user_ids: Sequence[str],
    experiment: str | int | None = None,
    *,
    attributes: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
    expose: bool = True,
    persist: bool = True,
    request_id: str | None = None,
) -> list[Assignment | None]:
    """:meth:`Assigner.assign_many <abcore.assign.assigner.Assigner.assign_many>` of ``client``: checks the
    arguments, then answers; never raises for store trouble (every answer None when the store is unusable)."""
    if isinstance(user_ids, str) or not isinstance(user_ids, Sequence | np.ndarray):
        raise TypeError("user_ids must be a sequence (list/tuple) of user id strings")
    users = list(user_ids)
    for u in users:
        if type(u) is not str or not u:
            check_user_id(u)
    check_experiment_ref(experiment)
    per_user: list[Mapping[str, Any] | None] | None = None
    if attributes is not None and not isinstance(attributes, Mapping):
        if isinstance(attributes, str) or not isinstance(attributes, Sequence):
            raise TypeError("attributes must be a mapping, a sequence of mappings (one per user) or None")
        per_user = list(attributes)
        if len(per_user) != len(users):
            raise ValueError(f"got {len(per_user)} attribute mappings for {len(users)} users")
        for a in per_user:
            check_attributes(a)
    else:
        check_attributes(attributes)
    if client._broken is not None:
        client._log_failure("assign_many", None, key="config")
        return [None] * len(users)
    try:
        return _assign_batch(client, users, experiment, attributes, per_user, expose, persist, request_id)
    except Exception as exc:  # noqa: BLE001 - never break the caller
        client._log_failure("assign_many", exc)
        return [None] * len(users)


def _assign_batch(
    client: Assigner,
    users: list[str],
    experiment: str | int | None,
    attributes: Any,
    per_user: list[Mapping[str, Any] | None] | None,
    expose: bool,
    persist: bool,
    request_id: str | None,
) -> list[Assignment | None]:
    n = len(users)
    d = client._lookup(experiment, time.monotonic() + max(client.timeout, client.first_load_timeout))
    if d is None or n == 0:
        return [None] * n

    def attrs_of(i: int) -> Mapping[str, Any] | None:
        return per_user[i] if per_user is not None else attributes

    if d.status == _COMPLETED:
        return [d.winner_for(u, attrs_of(i)) for i, u in enumerate(users)]
    if d.status not in (_RUNNING, _PAUSED):
        return [None] * n
    stored = _stored_rows(client, d, users)
    pending_events: list[tuple[Any, ...]] = []
    result: list[Assignment | None]
    index_of = d.index_of
    if stored:
        returning = d.returning
        get = stored.get
        result = [None if (v := get(u)) is None or v not in index_of else returning[index_of[v]] for u in users]
        missing = [i for i, a in enumerate(result) if a is None]
    else:
        result = [None] * n
        missing = list(range(n))
    if d.status == _RUNNING and missing:
        proposals = _proposals(d, users, missing, attrs_of)
        if not persist:
            new = d.new
            if len(missing) == n:
                result = [new[p] if p >= 0 else None for p in proposals]
            else:
                for i, p in zip(missing, proposals, strict=True):
                    if p >= 0:
                        result[i] = new[p]
        else:
            pending_events = _persist_many(
                client, d, users, missing, proposals, attrs_of, result, per_user=per_user is not None
            )
    if persist:
        _record_batch(client, d, users, result, pending_events, expose, request_id)
    return result


def _write_events_now(client: Assigner, rows: list[tuple[Any, ...]]) -> None:
    """Batch path: write events now, ``write_batch`` per transaction; on failure the rest go to the writer (which isolates bad ones)."""
    if not rows:
        return
    engine = client.engine
    size = client.write_batch
    for start in range(0, len(rows), size):
        try:
            with engine.begin() as connection:
                insert_events(engine, connection, rows[start : start + size])
        except Exception as exc:  # noqa: BLE001 - keep them: the writer retries / dead-letters
            client._log_failure("writing events", exc)
            assert client._writer is not None
            client._writer.add_many(events=rows[start:])
            return


def _proposals(
    d: ExperimentDef,
    users: list[str],
    missing: list[int],
    attrs_of: Callable[[int], Mapping[str, Any] | None],
) -> list[int]:
    """Variant index per missing user (-1 when the layer, a holdout, targeting or the traffic share excludes them),
    vectorised."""
    ids = users if len(missing) == len(users) else [users[i] for i in missing]
    chosen = choose_variants(buckets(ids, d.salt), d.cumulative)
    if d.traffic < 1.0:
        outside = buckets(ids, d.salt, seed=TRAFFIC_SEED) >= d.traffic
        chosen[outside] = -1
    if d.gate is not None:
        chosen[~d.gate.admits_many(ids)] = -1
    proposals: list[int] = chosen.tolist()
    if d.targeting:
        rules = list(d.targeting)
        for k, i in enumerate(missing):
            if proposals[k] >= 0 and not evaluate_targeting(rules, users[i], attrs_of(i)):
                proposals[k] = -1
    return proposals


def _persist_many(
    client: Assigner,
    d: ExperimentDef,
    users: list[str],
    missing: list[int],
    proposals: list[int],
    attrs_of: Callable[[int], Mapping[str, Any] | None],
    result: list[Assignment | None],
    per_user: bool = True,
) -> list[tuple[Any, ...]]:
    """Insert the proposed rows (ON CONFLICT DO NOTHING, ``write_batch`` per transaction) and resolve conflicts
    to the stored row; returns the ``user_assignment`` events of the rows inserted.

    ``per_user=False``: ``attrs_of`` gives the same mapping for every user. On store trouble (or a rejected
    row) the rows not stored yet go to the writer and the hash answers for them (``is_new=True``).
    """
    rows = _rows_to_insert(d, users, missing, proposals, attrs_of, per_user)
    if not rows:
        return []
    d_id = d.id
    now = next(iter(rows.values()))[4]  # the rows' assigned_at, also the events' time
    inserted, stored, handed_over = _insert_rows(client, d_id, rows)
    events: list[tuple[Any, ...]] = []
    append = events.append
    counts = [0] * len(d.variants)
    index_of = d.index_of
    new, returning = d.new, d.returning
    sticky = client._sticky
    user_assignment = _USER_ASSIGNMENT
    for i in missing:
        u = users[i]
        row = rows.pop(u, None)  # pop: a duplicate id later in the batch is "returning"
        if row is not None and u in inserted:
            vid = row[2]
            index = index_of[vid]
            sticky[(d_id, u)] = vid
            result[i] = new[index]
            counts[index] += 1
            append((d_id, vid, u, user_assignment, None, None, None, {}, now))
            continue
        if row is not None and handed_over:
            sticky[(d_id, u)] = row[2]
            result[i] = new[index_of[row[2]]]
            continue
        vid = stored.get(u) if row is not None else None
        if vid is not None:
            sticky[(d_id, u)] = vid
            result[i] = returning[index_of[vid]]
            continue
        vid = sticky.get((d_id, u))
        if vid is not None and vid in index_of:
            result[i] = returning[index_of[vid]]
    for index, count in enumerate(counts):
        if count:
            d.assignments[index].inc(count)
    return events


def _stored_rows(client: Assigner, d: ExperimentDef, users: list[str]) -> dict[str, int]:
    """Stored variant id per user (one read; on store trouble the in-process cache), plus the users this process
    served whose row is still being written."""
    n = len(users)
    engine = client.engine
    try:
        with engine.connect() as connection:
            stored = stored_variants(connection, d.id, users, whole=n >= 20_000)
    except Exception as exc:  # noqa: BLE001 - store trouble: the cache, then the hash (fail open)
        if not is_store_trouble(exc):
            raise
        client._log_failure("reading stored assignments", exc)
        sticky = client._sticky
        stored = {u: v for u in users if (v := sticky.get((d.id, u))) is not None}
    writer = client._writer
    if writer is not None and writer.pending_rows():  # served by this process, row still being written
        sticky = client._sticky
        for u in users:
            if u not in stored and writer.is_pending(d.id, u) and (v := sticky.get((d.id, u))) is not None:
                stored[u] = v
    return stored


def _record_batch(
    client: Assigner,
    d: ExperimentDef,
    users: list[str],
    result: list[Assignment | None],
    pending_events: list[tuple[Any, ...]],
    expose: bool,
    request_id: str | None,
) -> None:
    """Cache the answers, write the ``user_assignment`` and exposure events now and count requests/exposures."""
    index_of = d.index_of
    sticky = client._sticky
    counts = [0] * len(d.variants)
    exposures: list[tuple[Any, ...]] = []
    now = utcnow()
    d_id = d.id
    add_exposure = exposures.append
    for u, a in zip(users, result, strict=True):
        if a is None:
            continue
        vid = a.variant_id
        counts[index_of[vid]] += 1
        if not a.is_new:
            sticky[(d_id, u)] = vid
        if expose:
            add_exposure((d_id, vid, u, _EXPOSURE, None, None, request_id, {}, now))
    if len(sticky) > client.max_cached_users:
        first = next(iter(sticky))
        client._remember(first, sticky[first])
    _write_events_now(client, pending_events + exposures)
    for index, count in enumerate(counts):
        if count:
            d.requests[index].inc(count)
            if expose:
                d.exposures[index].inc(count)


def _rows_to_insert(
    d: ExperimentDef,
    users: list[str],
    missing: list[int],
    proposals: list[int],
    attrs_of: Callable[[int], Mapping[str, Any] | None],
    per_user: bool,
) -> dict[str, tuple[Any, ...]]:
    """The ``ab_user_assignments`` row of each proposed user (first occurrence of a duplicate id), by user id."""
    rows: dict[str, tuple[Any, ...]] = {}
    now = utcnow()
    variants = d.variants
    d_id = d.id
    variant_ids = [v.id for v in variants]
    if per_user:
        for i, p in zip(missing, proposals, strict=True):
            if p >= 0:
                u = users[i]
                if u not in rows:
                    rows[u] = (u, d_id, variant_ids[p], jsonable(attrs_of(i)), now)
    else:
        shared = jsonable(attrs_of(0))  # one mapping for everybody: converted once
        for i, p in zip(missing, proposals, strict=True):
            if p >= 0:
                u = users[i]
                if u not in rows:
                    rows[u] = (u, d_id, variant_ids[p], shared, now)
    return rows


def _insert_rows(
    client: Assigner, d_id: int, rows: dict[str, tuple[Any, ...]]
) -> tuple[set[str], dict[str, int], bool]:
    """Insert ``rows`` (ON CONFLICT DO NOTHING, ``write_batch`` per transaction): ``(inserted users, variant stored
    first by another writer per user, handed_over)``; on store trouble the rows not stored go to the writer."""
    engine = client.engine
    row_list = list(rows.values())
    size = client.write_batch
    inserted: set[str] = set()
    stored: dict[str, int] = {}
    handed_over = False  # store trouble: the rows not stored yet went to the writer, the hash answers for them
    try:
        for start in range(0, len(row_list), size):
            with engine.begin() as connection:
                inserted.update(u for _e, u in insert_rows(engine, connection, row_list[start : start + size]))
        if len(inserted) < len(rows):  # read back only the rows another writer stored first
            with engine.connect() as connection:
                stored = stored_variants(connection, d_id, [u for u in rows if u not in inserted])
    except Exception as exc:  # noqa: BLE001 - fail open: the hash answers, the writer stores the rows later
        client._log_failure("writing assignments", exc)
        assert client._writer is not None
        client._writer.add_many(rows=[r for r in row_list if r[0] not in inserted])
        handed_over = True
    return inserted, stored, handed_over
