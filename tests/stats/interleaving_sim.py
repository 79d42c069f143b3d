"""Click simulations of interleaving and of an A/B test on the same rankers (the suite runs them small,
``benchmarks/bench_interleaving.py`` big).

Users differ far more than rankers do: each user issues one query of ``ITEMS`` candidate items whose relevance
grades are Binomial(3, q) with a per-query relevance rate q ~ Beta(1, 3), and has an activity a ~ Gamma(0.5, 2)
(mean 1: most users barely click, a few click a lot). A ranker scores each item as its grade plus Gaussian noise
(sd = the ranker's noise) and shows the best ``LENGTH``. Clicks follow the position-based model (Craswell,
Zoeter, Taylor & Ramsey, WSDM 2008): the item at rank i (0-based) is clicked with probability
``min(1, a / (i + 1) * ATTRACT[grade])`` (examination ``1 / (i + 1)``, attractiveness :data:`ATTRACT`). NDCG@10 uses gains ``2**grade - 1`` and discounts ``1 / log2(rank + 2)`` (Jarvelin &
Kekalainen 2002).
"""

from __future__ import annotations

import numpy as np

from abcore.assign.interleaving import merge
from abcore.stats.interleaving import PairCounts

ITEMS = 30
LENGTH = 10
ATTRACT = np.array([0.02, 0.1, 0.3, 0.6])
EXAMINE = 1.0 / np.arange(1, LENGTH + 1)
_DISCOUNT = 1.0 / np.log2(np.arange(LENGTH) + 2)


def _query(rng: np.random.Generator) -> np.ndarray:
    return rng.binomial(3, rng.beta(1.0, 3.0), ITEMS)


def _rank(rng: np.random.Generator, grades: np.ndarray, noise: float) -> list[int]:
    return [int(i) for i in np.argsort(-(grades + rng.normal(0.0, noise, ITEMS)))[:LENGTH]]


def ndcg_difference(noise_a: float, noise_b: float, queries: int = 20_000, seed: int = 0) -> float:
    """Mean NDCG@10 of ranker A minus ranker B over ``queries`` simulated queries."""
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(queries):
        grades = _query(rng)
        ideal = float(((2.0 ** np.sort(grades)[::-1][:LENGTH] - 1) * _DISCOUNT).sum())
        if ideal == 0:
            continue  # no relevant item: NDCG undefined, both rankers equal
        for sign, noise in ((1.0, noise_a), (-1.0, noise_b)):
            ranked = _rank(rng, grades, noise)
            total += sign * float(((2.0 ** grades[ranked] - 1) * _DISCOUNT).sum()) / ideal
    return total / queries


def _clicks(rng: np.random.Generator, grades: np.ndarray, shown: list[int]) -> np.ndarray:
    """Positions clicked (boolean per position) under the position-based model, for a user of random activity."""
    activity = rng.gamma(0.5, 2.0)
    return rng.random(len(shown)) < activity * EXAMINE[: len(shown)] * ATTRACT[grades[shown]]


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


def simulate_ab(users: int, noise_a: float, noise_b: float, *, seed: int) -> tuple[float, float, float, float]:
    """Both arms of an A/B test on the same simulated users (common random numbers: each user's query and activity
    once, the clicks under each ranker's list): ``(mean clicks per user under A, under B, per-user sd of clicks
    (the two arms pooled), share of users clicking under B)``."""
    rng = np.random.default_rng(seed)
    a = np.empty(users)
    b = np.empty(users)
    for u in range(users):
        grades = _query(rng)
        activity = rng.gamma(0.5, 2.0)
        for out, noise in ((a, noise_a), (b, noise_b)):
            shown = _rank(rng, grades, noise)
            out[u] = (rng.random(LENGTH) < activity * EXAMINE * ATTRACT[grades[shown]]).sum()
    sd = float(np.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2))
    return float(a.mean()), float(b.mean()), sd, float((b > 0).mean())
