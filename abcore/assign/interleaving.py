"""Interleaving methods: merge the rankings of two or more rankers into one list and say who owns each position.

Pure functions (no I/O, no global state): each takes the rankings (one sequence of item ids per ranker, best
first), the length wanted and a :class:`Draws` (the request's random numbers), and returns ``(items, owners)``: the merged list and,
for each position, the index of the ranker credited with it (``None``: credited to no one). The draws are made
in list order, so a longer ``length`` with the same seed extends the shorter list (page 2 continues page 1).

* :func:`team_draft` — Radlinski, Kurup & Joachims, "How does clickthrough data reflect retrieval quality?",
  CIKM 2008, Algorithm 2; with more than two rankers it is team-draft *multileaving* (Schuth, Sietsma, Whiteson,
  Lefortier & de Rijke, "Multileaved comparisons for fast online evaluation", CIKM 2014, Algorithm 1). Each
  round the rankers still holding unplaced items pick, in a uniformly random order, their best item not yet
  placed. **Tie rule**: when, at the start of a round, every ranker's best unplaced item is the same item, it is
  placed once, credited to no one, and no coin is spent (identical rankers are then never credited at all).
* :func:`balanced` — Joachims, "Evaluating retrieval performance using clickthrough data", 2003 (two rankers):
  one coin decides who leads; the lists are walked in step, skipping placed items. A position is credited to the
  ranker that ranks its item higher (``None`` when both rank it at the same rank).
* :func:`probabilistic` — Hofmann, Whiteson & de Rijke, "A probabilistic method for inferring preferences from
  clicks", CIKM 2011: every ranker is a softmax over its ranks, ``P(rank r) ∝ r**-tau`` (``tau`` =
  :data:`PROBABILISTIC_TAU` = 3); each position picks a ranker uniformly, draws an unplaced item from that
  ranker's softmax (renormalised over its unplaced items) and credits that ranker.

:func:`merge` dispatches by method name; :func:`request_seed` derives the seed from (experiment salt, user,
request id) with MurmurHash3, so an impression can be replayed from its id.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import mmh3

__all__ = [
    "INTERLEAVING_METHODS",
    "Draws",
    "PROBABILISTIC_TAU",
    "balanced",
    "max_rankers",
    "merge",
    "probabilistic",
    "request_seed",
    "team_draft",
]

#: Interleaving methods an experiment may use (``team_draft`` is the default and the only one for 3+ rankers
#: besides ``probabilistic``; ``balanced`` compares exactly two).
INTERLEAVING_METHODS: tuple[str, ...] = ("team_draft", "balanced", "probabilistic")
#: Softmax exponent of probabilistic interleaving (Hofmann et al. 2011 use 3).
PROBABILISTIC_TAU = 3.0
#: MurmurHash3 seed of the per-request seed (the variant hash uses 0, the traffic hash 1).
REQUEST_SEED = 2

Merged = tuple[list[Hashable], list[int | None]]
_TWO_53 = float(2**53)
_MASK_53 = 2**53 - 1


class Draws:
    """The random numbers of one request, from MurmurHash3 blocks: the 128-bit ``seed`` itself first, then
    ``mmh3.hash128(f"{seed}:{k}")`` for k = 1, 2, ... (seed :data:`REQUEST_SEED`). Cheap to create (a
    :class:`random.Random` costs ~10 us to seed); coins take one bit, uniforms 53 bits."""

    __slots__ = ("_block", "_counter", "_left", "_seed")

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._block = seed
        self._left = 128
        self._counter = 0

    def _refill(self) -> None:
        self._counter += 1
        self._block = mmh3.hash128(f"{self._seed}:{self._counter}", REQUEST_SEED)
        self._left = 128

    def coin(self) -> bool:
        """True or False, each with probability 1/2."""
        if not self._left:
            self._refill()
        self._left -= 1
        bit = self._block & 1
        self._block >>= 1
        return bit == 1

    def random(self) -> float:
        """A uniform float in [0, 1) (53 random bits)."""
        if self._left < 53:
            self._refill()
        self._left -= 53
        value = self._block & _MASK_53
        self._block >>= 53
        return value / _TWO_53

    def shuffle(self, values: list[int]) -> None:
        """Shuffle ``values`` in place, every order equally likely (Fisher-Yates; bias below n / 2**53)."""
        for i in range(len(values) - 1, 0, -1):
            j = int(self.random() * (i + 1))
            values[i], values[j] = values[j], values[i]


def max_rankers(method: str) -> int | None:
    """How many rankers ``method`` can merge at most (None: any number >= 2)."""
    return 2 if method == "balanced" else None


def request_seed(salt: str, user_id: str, request_id: str) -> int:
    """The 128-bit seed of one request: MurmurHash3 x64 128 (seed :data:`REQUEST_SEED`, unsigned) of the UTF-8
    bytes of ``f"{salt}:{user_id}:{request_id}"``. Stable across processes and versions (a test pins it)."""
    return mmh3.hash128(f"{salt}:{user_id}:{request_id}", REQUEST_SEED)


def team_draft(rankings: Sequence[Sequence[Hashable]], length: int, rng: Draws) -> Merged:
    """Team-draft interleaving (two rankers) or multileaving (three or more), with the tie rule (module doc).

    Promises: every item appears at most once; ``len(items) == min(length, number of distinct items)``; owner
    ``i`` means ranker ``i`` picked the item; a ranker that runs out of items stops picking, the others go on.
    """
    n = len(rankings)
    if n == 2:
        return _team_draft_two(rankings[0], rankings[1], length, rng)
    placed: set[Hashable] = set()
    items: list[Hashable] = []
    owners: list[int | None] = []
    pointers = [0] * n
    sizes = [len(r) for r in rankings]
    while len(items) < length:
        heads: list[Hashable] = []
        active: list[int] = []
        for i in range(n):
            ranking, k, size = rankings[i], pointers[i], sizes[i]
            while k < size and ranking[k] in placed:
                k += 1
            pointers[i] = k
            if k < size:
                active.append(i)
                heads.append(ranking[k])
        if not active:
            break
        if len(active) > 1 and heads.count(heads[0]) == len(heads):
            placed.add(heads[0])
            items.append(heads[0])
            owners.append(None)
            continue
        rng.shuffle(active)
        for i in active:
            if len(items) >= length:
                break
            ranking, k, size = rankings[i], pointers[i], sizes[i]
            while k < size and ranking[k] in placed:
                k += 1
            pointers[i] = k
            if k < size:
                item = ranking[k]
                placed.add(item)
                items.append(item)
                owners.append(i)
    return items, owners


def _team_draft_two(a: Sequence[Hashable], b: Sequence[Hashable], length: int, rng: Draws) -> Merged:
    """:func:`team_draft` for two rankers, unrolled (the request path's common case): one coin a round says who picks first."""
    placed: set[Hashable] = set()
    add = placed.add
    items: list[Hashable] = []
    owners: list[int | None] = []
    ka = kb = 0
    na, nb = len(a), len(b)
    coin = rng.coin
    while len(items) < length:
        while ka < na and a[ka] in placed:
            ka += 1
        while kb < nb and b[kb] in placed:
            kb += 1
        if ka < na and kb < nb:
            x, y = a[ka], b[kb]
            if x == y:
                add(x)
                items.append(x)
                owners.append(None)
                continue
            first, second, first_owner = (x, y, 0) if coin() else (y, x, 1)
            add(first)
            items.append(first)
            owners.append(first_owner)
            if len(items) < length:  # the other ranker's best unplaced item is still its head
                add(second)
                items.append(second)
                owners.append(1 - first_owner)
        elif ka < na:
            add(a[ka])
            items.append(a[ka])
            owners.append(0)
        elif kb < nb:
            add(b[kb])
            items.append(b[kb])
            owners.append(1)
        else:
            break
    return items, owners


def balanced(rankings: Sequence[Sequence[Hashable]], length: int, rng: Draws) -> Merged:
    """Balanced interleaving of exactly two rankers (module doc): one coin decides which list leads.

    Promises: each item at most once; a position is owned by the ranker ranking its item strictly higher
    (an item only one ranker lists belongs to it), ``None`` when both rank it at the same rank.
    """
    if len(rankings) != 2:
        raise ValueError("balanced interleaving compares exactly two rankers")
    a, b = rankings
    rank_a = {item: r for r, item in enumerate(a)}
    rank_b = {item: r for r, item in enumerate(b)}
    a_first = rng.coin()
    ka = kb = 0
    placed: set[Hashable] = set()
    items: list[Hashable] = []
    owners: list[int | None] = []
    missing = len(a) + len(b)
    while len(items) < length and (ka < len(a) or kb < len(b)):
        if ka < len(a) and (kb >= len(b) or ka < kb or (ka == kb and a_first)):
            item = a[ka]
            ka += 1
        else:
            item = b[kb]
            kb += 1
        if item in placed:
            continue
        placed.add(item)
        items.append(item)
        ra, rb = rank_a.get(item, missing), rank_b.get(item, missing)
        owners.append(None if ra == rb else (0 if ra < rb else 1))
    return items, owners


def probabilistic(
    rankings: Sequence[Sequence[Hashable]], length: int, rng: Draws, tau: float = PROBABILISTIC_TAU
) -> Merged:
    """Probabilistic interleaving (module doc): per position a uniformly chosen ranker draws from its softmax.

    Promises: each item at most once; owner ``i`` is the ranker whose softmax drew the item; rankers without
    unplaced items are not chosen.
    """
    n = len(rankings)
    weights = [[(r + 1) ** -tau for r in range(len(ranking))] for ranking in rankings]
    totals = [sum(w) for w in weights]
    positions: list[dict[Hashable, int]] = [{item: r for r, item in enumerate(ranking)} for ranking in rankings]
    left = [len(ranking) for ranking in rankings]
    placed: set[Hashable] = set()
    items: list[Hashable] = []
    owners: list[int | None] = []
    uniform = rng.random
    while len(items) < length:
        active = [i for i in range(n) if left[i] > 0]
        if not active:
            break
        i = active[int(uniform() * len(active))]
        ranking, w = rankings[i], weights[i]
        target = uniform() * totals[i]
        chosen = -1
        running = 0.0
        for r, item in enumerate(ranking):
            if item in placed:
                continue
            chosen = r
            running += w[r]
            if running > target:
                break
        item = ranking[chosen]
        placed.add(item)
        items.append(item)
        owners.append(i)
        for j in range(n):
            r = positions[j].get(item)
            if r is not None:
                totals[j] -= weights[j][r]
                left[j] -= 1
    return items, owners


def merge(method: str, rankings: Sequence[Sequence[Hashable]], length: int, seed: int) -> Merged:
    """``(items, owners)`` of ``method`` over ``rankings``, drawn from the :class:`Draws` of ``seed``.

    Raises ValueError for an unknown method or too many rankers for it.
    """
    rng = Draws(seed)
    if method == "team_draft":
        return team_draft(rankings, length, rng)
    if method == "balanced":
        return balanced(rankings, length, rng)
    if method == "probabilistic":
        return probabilistic(rankings, length, rng)
    raise ValueError(f"unknown interleaving method {method!r}; expected one of {', '.join(INTERLEAVING_METHODS)}")
