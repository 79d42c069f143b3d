"""Click simulations of interleaving and of an A/B test on the same rankers (the suite runs them small,
``benchmarks/bench_interleaving.py`` big).

A user issues one query: ``ITEMS`` candidate items with relevance grades 0-3 drawn uniformly. A ranker scores
each item as its grade plus Gaussian noise (sd = the ranker's noise) and shows the best ``LENGTH``. Clicks
follow the position-based model (Craswell, Zoeter, Taylor & Ramsey, WSDM 2008): the item at rank i (0-based)
is examined with probability ``1 / (i + 1)`` and clicked when examined with the probability of its grade
(:data:`ATTRACT`). NDCG@10 uses gains ``2**grade - 1`` and discounts ``1 / log2(rank + 2)`` (Jarvelin &
Kekalainen 2002).
"""

from __future__ import annotations

import numpy as np

from abcore.assign.interleaving import merge
from abcore.stats.interleaving import PairCounts

ITEMS = 30
LENGTH = 10
ATTRACT = np.array([0.05, 0.2, 0.5, 0.8])
EXAMINE = 1.0 / np.arange(1, LENGTH + 1)
_DISCOUNT = 1.0 / np.log2(np.arange(LENGTH) + 2)


def _query(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 4, ITEMS)


def _rank(rng: np.random.Generator, grades: np.ndarray, noise: float) -> list[int]:
    return [int(i) for i in np.argsort(-(grades + rng.normal(0.0, noise, ITEMS)))[:LENGTH]]


def ndcg_difference(noise_a: float, noise_b: float, queries: int = 20_000, seed: int = 0) -> float:
    """Mean NDCG@10 of ranker A minus ranker B over ``queries`` simulated queries."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(queries):
        grades = _query(rng)
        ideal = float(((2.0 ** np.sort(grades)[::-1][:LENGTH] - 1) * _DISCOUNT).sum())
        for sign, noise in ((1.0, noise_a), (-1.0, noise_b)):
            ranked = _rank(rng, grades, noise)
            total += sign * float(((2.0 ** grades[ranked] - 1) * _DISCOUNT).sum()) / ideal
    return total / queries


def _clicks(rng: np.random.Generator, grades: np.ndarray, shown: list[int]) -> np.ndarray:
    """Positions clicked (boolean per position) under the position-based model."""
    attract = ATTRACT[grades[shown]]
    return rng.random(len(shown)) < EXAMINE[: len(shown)] * attract


def simulate_interleaving(
    users: int, noise_a: float, noise_b: float, *, seed: int, method: str = "team_draft", random_clicks: float | None = None
) -> PairCounts:
    """Each user sees one interleaved list of A and B; the :class:`PairCounts` of the pair (A, B).
    ``random_clicks``: click every position with this probability, whatever the item (an A/A under random clicks)."""
    rng = np.random.default_rng(seed)
    wins = losses = ties = 0
    sum_d = sum_d2 = 0.0
    for u in range(users):
        grades = _query(rng)
        items, owners = merge(method, [_rank(rng, grades, noise_a), _rank(rng, grades, noise_b)], LENGTH,
                              int(rng.integers(0, 2**63)) + u)
        if random_clicks is None:
            clicked = _clicks(rng, grades, items)
        else:
            clicked = rng.random(len(items)) < random_clicks
        a = sum(1 for c, o in zip(clicked, owners, strict=True) if c and o == 0)
        b = sum(1 for c, o in zip(clicked, owners, strict=True) if c and o == 1)
        wins += a > b
        losses += a < b
        ties += a == b and a > 0
        sum_d += a - b
        sum_d2 += (a - b) ** 2
    return PairCounts(users, wins, losses, ties, sum_d, sum_d2, float(users), float(users), sum_d)


def simulate_ab_ctr(users: int, noise: float, *, seed: int) -> float:
    """Share of users who click at least once when shown ranker ``noise``'s list (the A/B click-through rate)."""
    rng = np.random.default_rng(seed)
    clicked = 0
    for _ in range(users):
        grades = _query(rng)
        clicked += bool(_clicks(rng, grades, _rank(rng, grades, noise)).any())
    return clicked / users
