"""Statistics of an interleaving comparison of two rankers A and B, over users (the unit of randomisation).

Per user, the clicks credited to A and to B over all the user's impressions decide a **win** (more for A), a
**loss** (more for B) or a **tie** (equal and at least one); users without credited clicks have no preference.

* **Preference share** ``wins / (wins + losses)`` (0.5: no preference), tested with the **sign test** (two-sided
  binomial test of wins among decisive users at 1/2; Dixon & Mood, JASA 1946; Chapelle, Joachims, Radlinski &
  Yue, TOIS 2012, sec. 5 use the same per-unit win/loss test) in its **mid-p** form (Lancaster, JASA 1961;
  Agresti, Categorical Data Analysis 2013, sec. 1.4.5): ``2 (P(X < k) + P(X = k) / 2)`` with ``k = min(wins,
  losses)``, whose false-positive rate is alpha on average where the exact test's is about 0.04 at alpha 0.05
  for 60-140 decisive users (discreteness), with a **user-level bootstrap**
  percentile interval: users resampled with replacement, i.e. ``(W*, L*, T*) ~ Multinomial(n, (w, l, t) / n)``
  (Efron & Tibshirani 1993, ch. 13), ``W* / (W* + L*)`` per resample.
* **Paired credit difference per impression** ``r = sum_u D_u / sum_u N_u`` (``D_u`` = the user's credit to A
  minus credit to B, ``N_u`` = the user's impressions), a ratio of user sums whose variance comes from the delta
  method over users (Deng, Knoblich & Lu, "Applying the delta method in metric analytics", KDD 2018, eq. 3):
  ``Var(r) = (s_D^2 - 2 r s_DN + r^2 s_N^2) / (n * mean(N)^2)``; a t-test with n - 1 degrees of freedom.
* **Sequential (always valid)**: the share's normal-mixture confidence sequence of :mod:`abcore.stats.sequential`
  (Waudby-Smith et al. 2024, eq. 9) on the decisive users (time ``t = wins + losses``, variance ``p (1 - p) / t``,
  tuned to the planned decisive users), with its always-valid p-value: safe to look at every day.
* **Power**: users needed for the sign test to detect a preference share ``p`` (normal approximation of the
  binomial, Lachin, Controlled Clinical Trials 1981, eq. 3.2) divided by the share of users with a preference.

Pure functions over :class:`PairCounts`, the sufficient statistics the analysis SQL returns per ranker pair.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from abcore.stats.sequential import _always_valid_p, sequential_halfwidth, sequential_rho2

__all__ = [
    "CreditDifference",
    "PairCounts",
    "Preference",
    "bootstrap_share_interval",
    "credit_difference",
    "interleaving_sample_size",
    "preference",
    "sequential_preference",
    "sign_test",
]

BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class PairCounts:
    """Sufficient statistics of one ranker pair (A, B) over the users with at least one impression.

    ``sum_d`` etc. are sums over users of ``D_u`` (credit to A minus credit to B), ``D_u**2``, ``N_u``
    (impressions), ``N_u**2`` and ``D_u * N_u``.
    """

    users: int
    wins: int
    losses: int
    ties: int
    sum_d: float = 0.0
    sum_d2: float = 0.0
    sum_n: float = 0.0
    sum_n2: float = 0.0
    sum_dn: float = 0.0


@dataclass(frozen=True)
class Preference:
    """The preference for A over B: share (NaN without decisive users), its interval, the sign test's p-value."""

    share: float
    ci_low: float
    ci_high: float
    p_value: float


@dataclass(frozen=True)
class CreditDifference:
    """Credit to A minus credit to B per impression, its standard error, interval and t-test p-value."""

    estimate: float
    se: float
    ci_low: float
    ci_high: float
    p_value: float


def sign_test(wins: int, losses: int) -> float:
    """Two-sided mid-p value of ``wins`` out of ``wins + losses`` at probability 1/2 (module doc; 1.0 when both
    are 0)."""
    m = int(wins + losses)
    if m == 0:
        return 1.0
    k = int(min(wins, losses))
    return float(min(1.0, 2.0 * (sps.binom.cdf(k - 1, m, 0.5) + 0.5 * sps.binom.pmf(k, m, 0.5))))


def bootstrap_share_interval(
    wins: int, losses: int, ties: int, *, alpha: float = 0.05, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval (level ``1 - alpha``) of ``wins / (wins + losses)`` from a user-level bootstrap over the
    ``wins + losses + ties`` users with a credited click (module doc); ``(nan, nan)`` without decisive users.
    Deterministic for ``seed``."""
    n = wins + losses + ties
    if wins + losses == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, np.array([wins, losses, ties], dtype=float) / n, size=resamples)
    decisive = draws[:, 0] + draws[:, 1]
    shares = draws[decisive > 0, 0] / decisive[decisive > 0]
    low, high = np.quantile(shares, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def preference(counts: PairCounts, *, alpha: float = 0.05, seed: int = 0) -> Preference:
    """The preference share of A over B, its bootstrap interval and the sign test (module doc)."""
    decisive = counts.wins + counts.losses
    share = counts.wins / decisive if decisive else math.nan
    low, high = bootstrap_share_interval(counts.wins, counts.losses, counts.ties, alpha=alpha, seed=seed)
    return Preference(share, low, high, sign_test(counts.wins, counts.losses))


def credit_difference(counts: PairCounts, *, alpha: float = 0.05) -> CreditDifference:
    """Credit difference per impression with its delta-method standard error and t-test (module doc); NaN fields
    with fewer than two users or no impressions."""
    n = counts.users
    if n < 2 or counts.sum_n <= 0:
        return CreditDifference(math.nan, math.nan, math.nan, math.nan, math.nan)
    r = counts.sum_d / counts.sum_n
    mean_d, mean_n = counts.sum_d / n, counts.sum_n / n
    var_d = (counts.sum_d2 - n * mean_d * mean_d) / (n - 1)
    var_n = (counts.sum_n2 - n * mean_n * mean_n) / (n - 1)
    cov = (counts.sum_dn - n * mean_d * mean_n) / (n - 1)
    variance = max(var_d - 2 * r * cov + r * r * var_n, 0.0) / (n * mean_n * mean_n)
    se = math.sqrt(variance)
    if se == 0:
        p = 1.0 if r == 0 else 0.0
        return CreditDifference(r, 0.0, r, r, p)
    t = r / se
    crit = float(sps.t.ppf(1 - alpha / 2, n - 1))
    p = float(2 * sps.t.sf(abs(t), n - 1))
    return CreditDifference(r, se, r - crit * se, r + crit * se, p)


def interleaving_sample_size(
    share: float, *, alpha: float = 0.05, power: float = 0.8, decisive_share: float = 1.0
) -> int:
    """Users needed for the two-sided sign test at ``alpha`` to detect a preference share ``share`` with ``power``:
    ``m = ((z_{1-alpha/2} / 2 + z_power sqrt(p (1 - p))) / (p - 1/2))**2`` decisive users (module doc), divided by
    ``decisive_share`` (the share of users whose clicks show a preference) and rounded up.

    Raises ValueError for a share of exactly 1/2 or outside (0, 1), alpha or power outside (0, 1), or a
    decisive share outside (0, 1].
    """
    for label, value in (("share", share), ("alpha", alpha), ("power", power)):
        if isinstance(value, bool) or not 0 < value < 1:
            raise ValueError(f"{label} must be strictly between 0 and 1, got {value!r}")
    if share == 0.5:
        raise ValueError("a preference share of exactly 0.5 is no preference: nothing to detect")
    if isinstance(decisive_share, bool) or not 0 < decisive_share <= 1:
        raise ValueError(f"decisive_share must be in (0, 1], got {decisive_share!r}")
    z_a = float(sps.norm.ppf(1 - alpha / 2))
    z_b = float(sps.norm.ppf(power))
    decisive = ((z_a * 0.5 + z_b * math.sqrt(share * (1 - share))) / (share - 0.5)) ** 2
    return math.ceil(decisive / decisive_share - 1e-9)


def sequential_preference(counts: PairCounts, *, planned: float, alpha: float = 0.05) -> Preference:
    """The preference share with its always-valid interval and p-value (module doc), ``planned`` = the planned
    number of decisive users (the confidence sequence is tightest there). NaN interval without decisive users;
    a share of 0 or 1 uses the variance of a share of 1/2 (the largest) so the interval is not empty."""
    t = counts.wins + counts.losses
    if t == 0:
        return Preference(math.nan, math.nan, math.nan, 1.0)
    if isinstance(planned, bool) or not planned > 0:
        raise ValueError(f"planned must be a number of users > 0, got {planned!r}")
    share = counts.wins / t
    variance = (share * (1 - share) if 0 < share < 1 else 0.25) / t
    rho2 = sequential_rho2(alpha, planned)
    half = sequential_halfwidth(variance, t, rho2, alpha)
    p = _always_valid_p(share - 0.5, variance, t, rho2, "two-sided")
    return Preference(share, share - half, share + half, p)
