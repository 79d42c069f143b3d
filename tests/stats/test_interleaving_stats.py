"""Interleaving statistics against independent sources: the binomial pmf summed by hand (sign test), an explicit
user-level resampling with numpy (bootstrap), scipy's one-sample t-test and numpy on per-user arrays (credit
difference), the exact power of the sign test from scipy's binomial distribution (sample size), and the
calibration of the preference test (false-positive rate, interval coverage) by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from abcore.stats.interleaving import (
    PairCounts,
    bootstrap_share_interval,
    credit_difference,
    interleaving_sample_size,
    preference,
    sign_test,
)


def _counts(d: np.ndarray, n: np.ndarray) -> PairCounts:
    return PairCounts(users=len(d), wins=int((d > 0).sum()), losses=int((d < 0).sum()), ties=0,
                      sum_d=float(d.sum()), sum_d2=float((d * d).sum()), sum_n=float(n.sum()),
                      sum_n2=float((n * n).sum()), sum_dn=float((d * n).sum()))


def test_sign_test_is_the_mid_p_binomial_tail_by_hand() -> None:
    # Two-sided mid-p at 1/2 (Lancaster 1961): 2 * (sum of pmf below k + half the pmf at k), k = min(wins, losses),
    # pmf = comb(m, j) / 2**m summed by hand; and it lies below scipy's exact binomtest p-value.
    for wins, losses in [(7, 3), (30, 12), (5, 5), (0, 9), (120, 95)]:
        m, k = wins + losses, min(wins, losses)
        pmf = [math.comb(m, j) / 2**m for j in range(m + 1)]
        by_hand = min(1.0, 2 * (sum(pmf[:k]) + pmf[k] / 2))
        assert sign_test(wins, losses) == pytest.approx(by_hand, rel=1e-9)
        assert sign_test(wins, losses) <= stats.binomtest(wins, m, 0.5).pvalue
    assert sign_test(0, 0) == 1.0


def test_bootstrap_interval_matches_explicit_user_resampling() -> None:
    wins, losses, ties = 130, 95, 40
    users = np.array([1] * wins + [-1] * losses + [0] * ties)
    rng = np.random.default_rng(5)
    shares = []
    for _ in range(4000):  # resample users with replacement, the share of wins among decisive ones
        s = users[rng.integers(0, len(users), len(users))]
        shares.append((s == 1).sum() / (s != 0).sum())
    low, high = np.quantile(shares, [0.025, 0.975])
    got = bootstrap_share_interval(wins, losses, ties)
    assert got[0] == pytest.approx(low, abs=0.006) and got[1] == pytest.approx(high, abs=0.006)
    assert bootstrap_share_interval(0, 0, 10) == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_credit_difference_with_one_impression_each_is_the_one_sample_t_test() -> None:
    rng = np.random.default_rng(2)
    d = rng.integers(-2, 3, 400).astype(float) + 0.1 * (rng.random(400) < 0.3)
    got = credit_difference(_counts(d, np.ones(400)))
    t = stats.ttest_1samp(d, 0.0)
    ci = t.confidence_interval(0.95)
    assert got.estimate == pytest.approx(d.mean(), rel=1e-12)
    assert got.p_value == pytest.approx(t.pvalue, rel=1e-9)
    assert (got.ci_low, got.ci_high) == (pytest.approx(ci.low, rel=1e-9), pytest.approx(ci.high, rel=1e-9))


def test_credit_difference_ratio_matches_numpy_linearisation() -> None:
    # Delta method from raw per-user arrays: Var(r) = var(D - r N) / (n mean(N)^2) (Deng et al. 2018), numpy.
    rng = np.random.default_rng(3)
    n_imp = rng.integers(1, 6, 500).astype(float)
    d = rng.binomial(n_imp.astype(int), 0.3) - rng.binomial(n_imp.astype(int), 0.25)
    d = d.astype(float)
    r = d.sum() / n_imp.sum()
    se = math.sqrt(np.var(d - r * n_imp, ddof=1) / (len(d) * n_imp.mean() ** 2))
    got = credit_difference(_counts(d, n_imp))
    assert got.estimate == pytest.approx(r, rel=1e-12) and got.se == pytest.approx(se, rel=1e-9)
    assert math.isnan(credit_difference(PairCounts(1, 1, 0, 0, 1, 1, 1, 1, 1)).estimate)


def test_sample_size_gives_the_power_asked_by_the_exact_binomial() -> None:
    # The exact power of the two-sided sign test at the returned size (scipy binom), near the 80 % asked.
    for share in (0.55, 0.6, 0.7):
        m = interleaving_sample_size(share)
        crit_low = stats.binom.ppf(0.025, m, 0.5) - 1  # largest k with P(X <= k) <= 0.025
        power = stats.binom.cdf(crit_low, m, share) + stats.binom.sf(m - crit_low - 1, m, share)
        assert 0.76 <= power <= 0.84, (share, m, power)
    assert interleaving_sample_size(0.6, decisive_share=0.25) == pytest.approx(4 * interleaving_sample_size(0.6), abs=4)
    for bad in (0.5, 0.0, 1.0, True):
        with pytest.raises(ValueError):
            interleaving_sample_size(bad)  # type: ignore[arg-type]


#: Calibration figures (published in docs/guides/interleaving.md; the 2,000-run version is
#: benchmarks/bench_interleaving.py). Small here: 400 runs, bands of about 3 standard errors.
CALIBRATION_RUNS = 400


def test_preference_test_false_positive_rate_under_no_preference() -> None:
    rng = np.random.default_rng(17)
    rejections = 0
    for _ in range(CALIBRATION_RUNS):
        outcome = rng.multinomial(300, [0.3, 0.3, 0.4])  # wins, losses, ties of 300 clicking users, no preference
        p = preference(PairCounts(300, int(outcome[0]), int(outcome[1]), int(outcome[2])), seed=1)
        rejections += p.p_value < 0.05 and (p.ci_low > 0.5 or p.ci_high < 0.5)
    rate = rejections / CALIBRATION_RUNS
    assert 0.02 <= rate <= 0.075, rate


def test_preference_interval_coverage() -> None:
    rng = np.random.default_rng(23)
    covered = 0
    true_share = 0.36 / (0.36 + 0.24)
    for _ in range(CALIBRATION_RUNS):
        outcome = rng.multinomial(300, [0.36, 0.24, 0.4])
        low, high = bootstrap_share_interval(int(outcome[0]), int(outcome[1]), int(outcome[2]), resamples=2000, seed=2)
        covered += low <= true_share <= high
    assert 0.92 <= covered / CALIBRATION_RUNS <= 0.98


def test_aa_under_random_clicks_through_team_draft_small() -> None:
    # The full path (team-draft lists of two different rankers, random clicks, credit, test): 150 runs of 300
    # users; the 2,000-run figure is in benchmarks/bench_interleaving.py. Band: about 3 standard errors.
    from tests.stats.interleaving_sim import simulate_interleaving

    rejected = 0
    for s in range(150):
        p = preference(simulate_interleaving(300, 0.5, 1.0, seed=s, random_clicks=0.1), seed=s)
        rejected += p.p_value < 0.05 and (p.ci_low > 0.5 or p.ci_high < 0.5)
    assert rejected / 150 <= 0.11


def test_preference_follows_ndcg_small() -> None:
    # Ranker A (noise 0.5) has a higher NDCG@10 than B (noise 1.0) by about 0.1 on the simulation: 20 runs of
    # 1,200 users prefer A at least 19 times (the share is about 0.56, its standard error about 0.016).
    from tests.stats.interleaving_sim import ndcg_difference, simulate_interleaving

    assert ndcg_difference(0.5, 1.0, queries=2000) > 0.08
    assert sum(preference(simulate_interleaving(1200, 0.5, 1.0, seed=s)).share > 0.5 for s in range(20)) >= 19


def test_sequential_preference_is_the_normal_mixture_boundary_by_hand() -> None:
    # Waudby-Smith et al. 2024 eq. 9 with rho^2 from eq. 161, written out: t = 300 decisive users, share 0.6.
    from abcore.stats.interleaving import sequential_preference

    alpha, planned, t, share = 0.05, 1000.0, 300, 0.6
    la = -2 * math.log(alpha)
    rho2 = (la + math.log(la + 1)) / planned
    var = share * (1 - share) / t
    half = math.sqrt(var * t * 2 * (t * rho2 + 1) / (t * t * rho2) * math.log(math.sqrt(t * rho2 + 1) / alpha))
    q = (share - 0.5) ** 2 * t * rho2 / (2 * var * (t * rho2 + 1))
    got = sequential_preference(PairCounts(400, 180, 120, 100), planned=planned, alpha=alpha)
    assert (got.ci_low, got.ci_high) == (pytest.approx(share - half, rel=1e-12), pytest.approx(share + half, rel=1e-12))
    assert got.p_value == pytest.approx(min(1.0, math.sqrt(t * rho2 + 1) * math.exp(-q)), rel=1e-12)
    assert (got.p_value < alpha) == (got.ci_low > 0.5)


def test_sequential_preference_survives_daily_peeking() -> None:
    # 300 runs, 20 looks each under no preference: the share of runs ever rejected stays below alpha.
    from abcore.stats.interleaving import sequential_preference

    rng = np.random.default_rng(8)
    ever = 0
    for _ in range(300):
        outcomes = rng.random(2000) < 0.5
        for look in range(100, 2001, 100):
            wins = int(outcomes[:look].sum())
            if sequential_preference(PairCounts(look, wins, look - wins, 0), planned=2000).p_value < 0.05:
                ever += 1
                break
    assert ever / 300 <= 0.05
