"""``interleave``: one merged list of an interleaving experiment's rankers for a user, and the impression behind it.

What recommender code calls::

    from abcore.assign import interleave, track

    shown = interleave("user-42", "als_vs_popgen", {"als": als_ids, "popgen": popgen_ids}, request_id=rid)
    items = shown.items if shown is not None else als_ids          # None: the user is not in the experiment
    ...
    track("user-42", "als_vs_popgen", "click", properties={"item": clicked, "impression": shown.impression_id})

The answer is deterministic for (experiment salt, user, request id): the same request id gives the same list
(a page 2 asked with a larger ``length`` continues page 1), so an impression can be replayed from its id. Entry
follows ``assign`` (:func:`~abcore.assign.cache.decide`): targeting, the traffic share, pause (only users already
in keep getting merged lists) and stop (None) work as for A/B experiments; the user's assignment row (its variant
is only the slot the row needs) and the impression are written behind the answer, nothing on the request path.
The impression is one buffered event that the writer stores as one ``impression`` event per position
(:func:`expand_impressions`). Every merged list returned is counted in :mod:`abcore.assign.prometheus`
(``experiment_interleaved_requests_total``, ``experiment_interleaved_positions_total`` per ranker credited).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from abcore.assign.cache import check_experiment_ref, check_user_id, decide
from abcore.assign.interleaving import merge, request_seed
from abcore.store.tables import EventType, ExperimentStatus, utcnow

if TYPE_CHECKING:
    from abcore.assign.assigner import Assigner

__all__ = ["Interleaving", "expand_impressions", "interleave"]

IMPRESSION = EventType.IMPRESSION.value
_COMPLETED = ExperimentStatus.COMPLETED.value
_REQUEST_ID_MAX = 255


@dataclass(frozen=True, slots=True)
class Interleaving:
    """A merged list as shown to a user.

    ``items`` is the merged list; ``owners[i]`` the ranker (variant name) a click on ``items[i]`` is credited
    to, or None (the tie rule: an item every ranker put first is credited to no one); ``impression_id`` is what
    ``track(..., properties={"item": ..., "impression": impression_id})`` names to be credited.
    """

    experiment_id: int
    experiment_name: str
    method: str
    impression_id: str
    request_id: str
    items: tuple[Any, ...]
    owners: tuple[str | None, ...]

    def owner_of(self, item: Any) -> str | None:
        """The ranker credited for a click on ``item`` in this impression (None: no one, or not shown)."""
        for shown, owner in zip(self.items, self.owners, strict=True):
            if shown == item:
                return owner
        return None


def _check_rankings(rankings: Any, length: Any, request_id: Any) -> None:
    """Raise TypeError/ValueError for rankings that are not ``{ranker name: sequence of str or int ids}``, a
    length that is not a whole number >= 0, or a request id that is not a string of at most 255 characters."""
    if not isinstance(rankings, Mapping) or not rankings:
        raise TypeError("rankings must be a non-empty mapping {ranker name: ranked item ids}")
    for name, ranking in rankings.items():
        if type(name) is not str:
            raise TypeError(f"ranker names must be str, got {type(name).__name__}")
        if isinstance(ranking, str | bytes) or not isinstance(ranking, Sequence):
            raise TypeError(f"the ranking of {name!r} must be a sequence of item ids, got {type(ranking).__name__}")
        for item in ranking:
            kind = type(item)
            if kind is not str and kind is not int and (not isinstance(item, str | int) or isinstance(item, bool)):
                raise TypeError(f"item ids must be str or int, got {kind.__name__} in the ranking of {name!r}")
    if length is not None and (type(length) is not int or length < 0):
        raise ValueError(f"length must be a whole number >= 0 or None, got {length!r}")
    if request_id is not None and (type(request_id) is not str or not 0 < len(request_id) <= _REQUEST_ID_MAX):
        raise ValueError("request_id must be a non-empty string of at most 255 characters, or None")


def interleave(
    client: Assigner,
    user_id: str,
    experiment: str | int | None,
    rankings: Mapping[str, Sequence[str | int]],
    *,
    length: int | None = None,
    request_id: str | None = None,
) -> Interleaving | None:
    """The merged list of ``rankings`` (one per ranker of the interleaving ``experiment``) for ``user_id``, or None.

    None when the user is not in the experiment (unknown, draft, cancelled or completed experiment, paused for
    a user not in it yet, targeting or traffic share keeping the user out) or the store could never be read. A
    request id not given is drawn at random (the answer is then not replayable from the caller's side, only
    from the stored impression). ``length`` defaults to the longest ranking. Raises TypeError/ValueError for bad
    arguments, for an experiment that is not an interleaving one, and for ranker names that are not exactly
    the experiment's variant names.
    """
    check_user_id(user_id)
    check_experiment_ref(experiment)
    _check_rankings(rankings, length, request_id)
    d = None
    try:
        if client._broken is not None:
            client._log_failure("interleave", None, key="config")
            return None
        deadline = time.monotonic() + client.timeout
        d = client._lookup(experiment, deadline)
    except Exception as exc:  # noqa: BLE001 - the request path never breaks the caller
        client._log_failure("interleave", exc)
    if d is None or d.status == _COMPLETED:
        return None
    if d.kind != "interleaving":
        raise ValueError(f"experiment {d.name!r} is an {d.kind!r} experiment: interleave needs an interleaving one")
    names = [v.name for v in d.variants]
    if len(rankings) != len(names) or any(n not in rankings for n in names):
        raise ValueError(f"rankings must name exactly the rankers of {d.name!r}: {', '.join(map(repr, names))}")
    try:
        return _serve(client, d, user_id, [rankings[n] for n in names], length, request_id)
    except Exception as exc:  # noqa: BLE001 - the request path never breaks the caller
        client._log_failure("interleave", exc)
        return None


def _serve(
    client: Assigner,
    d: Any,
    user_id: str,
    ordered: list[Sequence[str | int]],
    length: int | None,
    request_id: str | None,
) -> Interleaving | None:
    """Enter the user as ``assign`` would, merge, hand the row and the impression to the writer, and count the list
    (``ordered``: the rankings in the order of the experiment's variants)."""
    key = (d.id, user_id)
    answer, needs_read = decide(d, client._sticky.get(key), user_id, None, verified=False, read_first=d.id in client._read_first)
    if needs_read:
        stored, _known = client._read_stored(d, user_id, time.monotonic() + client.timeout)
        answer, _ = decide(d, stored, user_id, None, verified=True)
    if answer is None:
        return None
    if request_id is None:
        request_id = secrets.token_hex(8)
    seed = request_seed(d.salt, user_id, request_id)
    method = d.interleaving_method or "team_draft"
    items, owner_index = merge(method, ordered, max(map(len, ordered)) if length is None else length, seed)
    owners = tuple(map(d.ranker_of.__getitem__, owner_index))
    impression_id = f"{seed:032x}"
    now = utcnow()
    impression = (
        d.id, answer.variant_id, user_id, IMPRESSION, None, None, request_id,
        {"impression": impression_id, "items": items, "owners": list(owners)}, now,
    )  # fmt: skip
    writer = client._writer
    assert writer is not None
    if answer.is_new:
        client._sticky[key] = answer.variant_id
        writer.add_row((user_id, d.id, answer.variant_id, {}, now), impression)
    else:
        writer.add_event(impression)
    _count(d, owner_index)
    return Interleaving(d.id, d.name, method, impression_id, request_id, tuple(items), owners)


def _count(d: Any, owner_index: list[int | None]) -> None:
    """Count the merged list served: one request, and its positions per ranker credited (pre-bound children,
    ``ranker="none"`` last). A ranker credited with no position is not incremented."""
    d.interleaved.inc()
    positions = d.positions
    rest = len(owner_index)
    for i in range(len(positions) - 1):
        n = owner_index.count(i)
        if n:
            positions[i].inc(n)
            rest -= n
    if rest:
        positions[-1].inc(rest)


def expand_impressions(events: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``events`` with each buffered impression (properties ``items`` and ``owners``) replaced by one ``impression``
    event per position: value = position (1-based), properties ``{"impression", "item", "owner"}``. Other events,
    and impression events already in that form, are kept as they are, in order."""
    if not any(e[3] == IMPRESSION and "items" in e[7] for e in events):
        return events
    out: list[tuple[Any, ...]] = []
    for e in events:
        properties = e[7]
        if e[3] != IMPRESSION or "items" not in properties:
            out.append(e)
            continue
        impression = properties["impression"]
        for position, (item, owner) in enumerate(zip(properties["items"], properties["owners"], strict=True), start=1):
            out.append(
                (e[0], e[1], e[2], IMPRESSION, None, float(position), e[6],
                 {"impression": impression, "item": item, "owner": owner}, e[8])
            )  # fmt: skip
    return out
