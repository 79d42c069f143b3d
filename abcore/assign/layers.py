"""Layers and holdouts on the request path: the layer hash, range arithmetic and the gates (pure: no I/O).

A **layer** is a surface (the home slate, the search results) whose experiments are mutually exclusive.
The layer's hash space is cut into :data:`LAYER_UNITS` units: a user's unit is the MurmurHash3 x86 32-bit
hash (seed :data:`LAYER_SEED`, independent of the variant and traffic hashes) of ``f"{layer_salt}:{user_id}"``
times ``LAYER_UNITS`` divided by 2**32 (exact integer arithmetic). Each running or paused experiment of a
layer holds ranges ``[start, end)`` of units, reserved when it starts and released when it stops
(:mod:`abcore.experiments.layers`); ranges of two experiments never overlap, so a user is in at most one
experiment of a layer, and reserving or releasing a range never moves a user of another experiment.

A **holdout** (an experiment of kind ``holdout`` with variants ``holdout`` and ``exposed``) keeps the users
its own hash puts in ``holdout`` out of every experiment (and shipped winner) it covers while it runs or is
paused. A stored assignment still wins: users assigned before the holdout started keep their variant.

:class:`Gate` is what an experiment's cached definition checks before it lets a new user in;
:class:`LayerDef` answers "which experiment of this layer holds this user?"; :func:`plan` builds both from
the stored rows when definitions are (re)loaded — never per call.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import mmh3
import numpy as np

from abcore.assign.hashing import bucket, buckets

#: Units of a layer's hash space; a share of a layer is held with a resolution of 0.01 %.
LAYER_UNITS = 10_000
#: MurmurHash3 seed of the layer hash (variant hash: 0, traffic hash: 1).
LAYER_SEED = 2
#: Names of the two arms of a holdout: the users kept out, and everybody else.
HOLDOUT_VARIANTS: tuple[str, str] = ("holdout", "exposed")
HOLDOUT_KIND = "holdout"
_LIVE = ("running", "paused")
_mmh3_hash = mmh3.hash

Range = tuple[int, int]


def layer_unit(user_id: str, salt: str) -> int:
    """The user's unit in ``[0, LAYER_UNITS)`` of the layer with salt ``salt`` (stable, pinned by tests)."""
    return (_mmh3_hash(f"{salt}:{user_id}", LAYER_SEED, False) * LAYER_UNITS) >> 32


def share_units(layer_share: float) -> int:
    """How many units a share of ``layer_share`` percent holds (rounded to the nearest 0.01 %)."""
    return round(float(layer_share) * LAYER_UNITS / 100.0)


def normalized(ranges: Iterable[Sequence[int]]) -> list[Range]:
    """``ranges`` sorted, empty ones dropped and touching or overlapping ones merged."""
    out: list[list[int]] = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if int(e) > int(s)):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def free_ranges(taken: Iterable[Sequence[int]]) -> list[Range]:
    """The units of ``[0, LAYER_UNITS)`` no range of ``taken`` holds, as sorted ranges."""
    free: list[Range] = []
    position = 0
    for start, end in normalized(taken):
        if start > position:
            free.append((position, start))
        position = max(position, end)
    if position < LAYER_UNITS:
        free.append((position, LAYER_UNITS))
    return free


def units_of(ranges: Iterable[Sequence[int]]) -> int:
    """How many units ``ranges`` hold (overlaps counted once)."""
    return sum(end - start for start, end in normalized(ranges))


def reserve(taken: Iterable[Sequence[int]], units: int) -> list[Range] | None:
    """The lowest free ranges holding exactly ``units`` units, or None when fewer are free.

    Left to right, so ranges freed by an ended experiment are reused first; the answer may be several
    ranges when the free space is fragmented (a user's place never depends on how many ranges there are).
    """
    if units <= 0:
        return []
    out: list[Range] = []
    needed = units
    for start, end in free_ranges(taken):
        take = min(end - start, needed)
        out.append((start, start + take))
        needed -= take
        if needed == 0:
            return out
    return None


@dataclass(frozen=True, slots=True)
class Holdout:
    """A running holdout as the gates check it: users whose ``bucket(user, salt)`` lies in ``[low, high)`` are held out."""

    salt: str
    low: float
    high: float

    def holds(self, user_id: str) -> bool:
        """True when the holdout keeps ``user_id`` out of what it covers."""
        return self.low <= bucket(user_id, self.salt) < self.high


@dataclass(frozen=True, slots=True)
class Gate:
    """What a new user must pass to enter one experiment (or be served one shipped winner).

    ``layer_salt`` None: the experiment is in no layer (only the holdouts apply). Otherwise the user's layer
    unit must lie inside ``ranges`` (``inside=True``: the experiment's own ranges) or outside them
    (``inside=False``: a shipped winner, the layer default, serves users outside the running experiments' ranges).
    """

    layer_salt: str | None = None
    ranges: tuple[Range, ...] = ()
    inside: bool = True
    holdouts: tuple[Holdout, ...] = ()

    def admits(self, user_id: str) -> bool:
        """True when ``user_id`` may be let in (a stored assignment wins regardless: checked before this)."""
        if self.layer_salt is not None:
            unit = layer_unit(user_id, self.layer_salt)
            found = any(start <= unit < end for start, end in self.ranges)
            if found is not self.inside:
                return False
        return not any(h.holds(user_id) for h in self.holdouts)

    def admits_many(self, user_ids: Sequence[str]) -> np.ndarray:
        """:meth:`admits` for many users, vectorised (a boolean array; the same answers)."""
        if self.layer_salt is not None:
            units = layer_units(user_ids, self.layer_salt)
            found = np.zeros(len(user_ids), dtype=bool)
            for start, end in self.ranges:
                found |= (units >= start) & (units < end)
            ok = found if self.inside else ~found
        else:
            ok = np.ones(len(user_ids), dtype=bool)
        for h in self.holdouts:
            b = buckets(user_ids, h.salt)
            ok &= ~((b >= h.low) & (b < h.high))
        return ok


@dataclass(frozen=True)
class LayerDef:
    """A layer as the assigner caches it: who holds which range, and the layer default (a shipped winner)."""

    id: int
    name: str
    salt: str
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    owners: tuple[int, ...]
    default_id: int | None

    def experiment_for(self, user_id: str) -> int | None:
        """The id of the running or paused experiment whose range holds ``user_id``, or None."""
        if not self.starts:
            return None
        unit = layer_unit(user_id, self.salt)
        i = bisect_right(self.starts, unit) - 1
        if i >= 0 and unit < self.ends[i]:
            return self.owners[i]
        return None


def holdout_range(variants: Sequence[Mapping[str, Any]]) -> tuple[float, float] | None:
    """``[low, high)`` of the ``holdout`` arm in the variant bucket (allocations in order), None without one."""
    total = sum(float(v["allocation_pct"]) for v in variants)
    running = 0.0
    for v in variants:
        share = float(v["allocation_pct"])
        if v["name"] == HOLDOUT_VARIANTS[0] and total > 0:
            return running / total, (running + share) / total
        running += share
    return None


def _holdouts(
    experiments: Sequence[Mapping[str, Any]], variants: Mapping[int, Sequence[Mapping[str, Any]]]
) -> list[tuple[Holdout, frozenset[int] | None]]:
    """The running or paused holdouts with the layer ids each covers (None: every experiment)."""
    out: list[tuple[Holdout, frozenset[int] | None]] = []
    for e in experiments:
        if e["kind"] == HOLDOUT_KIND and e["status"] in _LIVE:
            bounds = holdout_range(variants.get(e["id"], ()))
            if bounds is not None:
                covers = e["holdout_layers"]
                out.append((Holdout(e["salt"], *bounds), None if covers is None else frozenset(covers)))
    return out


def _occupancy(
    experiments: Sequence[Mapping[str, Any]], layer_ids: Iterable[int]
) -> tuple[dict[int, list[tuple[int, int, int]]], dict[int, int]]:
    """Per layer: the held ranges ``(start, end, experiment id)`` and the default (latest shipped winner's id)."""
    running: dict[int, list[tuple[int, int, int]]] = {i: [] for i in layer_ids}
    winners: dict[int, list[Mapping[str, Any]]] = {i: [] for i in running}
    for e in experiments:
        layer_id = e["layer_id"]
        if layer_id not in running:
            continue
        if e["status"] in _LIVE:
            running[layer_id].extend((s, t, e["id"]) for s, t in normalized(e["layer_ranges"] or ()))
        elif e["winner_variant_id"] is not None:
            winners[layer_id].append(e)
    defaults = {i: max(rows, key=lambda r: (r["updated_at"], r["id"]))["id"] for i, rows in winners.items() if rows}
    return running, defaults


def plan(
    experiments: Sequence[Mapping[str, Any]],
    variants: Mapping[int, Sequence[Mapping[str, Any]]],
    layers: Sequence[Mapping[str, Any]],
) -> tuple[dict[int, Gate], dict[str, LayerDef]]:
    """The gates of the experiments (by id; experiments without one are absent) and the layers (by name).

    ``experiments``: rows of ``ab_experiments`` assign can answer for; ``variants``: their variant rows by
    experiment id; ``layers``: rows of ``ab_layers``. In a layer, the most recently shipped winner (latest
    ``updated_at``) is the layer default; older winners of the layer serve nobody.
    """
    holdouts = _holdouts(experiments, variants)
    salts = {row["id"]: row["salt"] for row in layers}
    running, defaults = _occupancy(experiments, salts)
    gates: dict[int, Gate] = {}
    for e in experiments:
        if e["kind"] == HOLDOUT_KIND:
            continue
        layer_id = e["layer_id"] if e["layer_id"] in salts else None
        covering = tuple(h for h, covers in holdouts if covers is None or (layer_id is not None and layer_id in covers))
        if layer_id is None:
            if covering:
                gates[e["id"]] = Gate(holdouts=covering)
        elif e["status"] in _LIVE:
            gates[e["id"]] = Gate(salts[layer_id], tuple(normalized(e["layer_ranges"] or ())), True, covering)
        elif defaults.get(layer_id) == e["id"]:
            held = tuple((s, t) for s, t, _ in running[layer_id])
            gates[e["id"]] = Gate(salts[layer_id], held, False, covering)
        else:
            gates[e["id"]] = Gate(salts[layer_id], (), True, covering)  # a superseded winner: serves nobody
    layer_defs: dict[str, LayerDef] = {}
    for row in layers:
        spans = sorted(running[row["id"]])
        layer_defs[row["name"]] = LayerDef(
            id=row["id"],
            name=row["name"],
            salt=row["salt"],
            starts=tuple(s for s, _, _ in spans),
            ends=tuple(t for _, t, _ in spans),
            owners=tuple(o for _, _, o in spans),
            default_id=defaults.get(row["id"]),
        )
    return gates, layer_defs


def layer_units(user_ids: Sequence[str], salt: str) -> np.ndarray:
    """:func:`layer_unit` of many users as an int64 array (the same numbers: the float product is exact below 2**53)."""
    return np.floor(buckets(user_ids, salt, seed=LAYER_SEED) * LAYER_UNITS).astype(np.int64)
