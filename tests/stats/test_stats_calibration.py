"""Calibration by simulation (fixed seeds, vectorised draws over sufficient statistics).

The default run uses 2,000 simulated experiments per check and stays within a few
seconds; the ``bench`` variants repeat the checks with 20,000 and print the figures
(``pytest -m bench -s tests/stats``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest

from abcore.stats import (
    CovariateSummary,
    cuped,
    mean_test,
    proportion_test,
    sample_size_proportion,
    sequential_mean_test,
    sequential_proportion_test,
)


def aa_proportions_fpr(
    n_sims: int, seed: int = 11, n: int = 5000, p: float = 0.1, pooled: bool = False
) -> float:
    rng = np.random.default_rng(seed)
    ca = rng.binomial(n, p, size=n_sims)
    cb = rng.binomial(n, p, size=n_sims)
    return float(
        np.mean(
            [
                proportion_test(int(a), n, int(b), n, pooled=pooled).significant
                for a, b in zip(ca, cb, strict=True)
            ]
        )
    )


def aa_means_fpr(n_sims: int, seed: int = 12, n: int = 400) -> float:
    """A/A on skewed (exponential) per-user values; sums drawn per user, vectorised."""
    rng = np.random.default_rng(seed)
    xa = rng.exponential(3.0, size=(n_sims, n))
    xb = rng.exponential(3.0, size=(n_sims, n))
    ma, sa = xa.mean(axis=1), xa.std(axis=1, ddof=1)
    mb, sb = xb.mean(axis=1), xb.std(axis=1, ddof=1)
    hits = [mean_test(ma[i], sa[i], n, mb[i], sb[i], n).significant for i in range(n_sims)]
    return float(np.mean(hits))


def design_power(n_sims: int, seed: int = 13, baseline: float = 0.1, mde: float = 0.02) -> tuple[int, float]:
    n = sample_size_proportion(baseline, mde, power=0.8)
    rng = np.random.default_rng(seed)
    ca = rng.binomial(n, baseline, size=n_sims)
    cb = rng.binomial(n, baseline + mde, size=n_sims)
    return n, float(
        np.mean([proportion_test(int(a), n, int(b), n).significant for a, b in zip(ca, cb, strict=True)])
    )


@dataclass(frozen=True)
class PeekingFigures:
    naive_fpr: float
    sequential_fpr: float
    sequential_final_fpr: float
    sequential_larger_fpr: float


def peeking(n_sims: int, seed: int = 14, looks: int = 20, batch: int = 500, p: float = 0.1) -> PeekingFigures:
    """A/A experiments checked after each of ``looks`` batches; stop at the first significant look."""
    rng = np.random.default_rng(seed)
    ca = rng.binomial(batch, p, size=(n_sims, looks)).cumsum(axis=1)
    cb = rng.binomial(batch, p, size=(n_sims, looks)).cumsum(axis=1)
    planned = batch * looks
    naive = np.zeros(n_sims, dtype=bool)
    seq = np.zeros(n_sims, dtype=bool)
    seq_final = np.zeros(n_sims, dtype=bool)
    seq_larger = np.zeros(n_sims, dtype=bool)
    for i in range(n_sims):
        for k in range(looks):
            n = batch * (k + 1)
            a, b = int(ca[i, k]), int(cb[i, k])
            if not naive[i] and proportion_test(a, n, b, n).significant:
                naive[i] = True
            if not seq[i]:
                r = sequential_proportion_test(a, n, b, n, planned_n=planned)
                if r.significant:
                    seq[i] = True
                    if k == looks - 1:
                        seq_final[i] = True
            if not seq_larger[i]:
                r = sequential_proportion_test(a, n, b, n, planned_n=planned, alternative="larger")
                seq_larger[i] = r.significant
    return PeekingFigures(
        float(naive.mean()), float(seq.mean()), float(seq_final.mean()), float(seq_larger.mean())
    )


def peeking_means(n_sims: int, seed: int = 15, looks: int = 20, batch: int = 100) -> float:
    """Sequential FPR for means with 20 looks (exponential values, sums per batch)."""
    rng = np.random.default_rng(seed)
    xa = rng.exponential(2.0, size=(n_sims, looks, batch))
    xb = rng.exponential(2.0, size=(n_sims, looks, batch))
    sa, sb = xa.sum(axis=2).cumsum(axis=1), xb.sum(axis=2).cumsum(axis=1)
    qa, qb = (xa * xa).sum(axis=2).cumsum(axis=1), (xb * xb).sum(axis=2).cumsum(axis=1)
    hits = 0
    for i in range(n_sims):
        for k in range(looks):
            n = batch * (k + 1)
            ma, mb = sa[i, k] / n, sb[i, k] / n
            va, vb = (qa[i, k] - n * ma * ma) / (n - 1), (qb[i, k] - n * mb * mb) / (n - 1)
            if sequential_mean_test(
                ma, math.sqrt(va), n, mb, math.sqrt(vb), n, planned_n=batch * looks
            ).significant:
                hits += 1
                break
    return hits / n_sims


@dataclass(frozen=True)
class CupedFigures:
    variance_ratio: float
    mean_reported_reduction: float
    mean_adjusted_diff: float
    se_of_mean_adjusted_diff: float
    mean_unadjusted_diff: float
    aa_fpr: float


def cuped_simulation(
    n_sims: int, seed: int = 16, n: int = 500, rho: float = 0.7, effect: float = 0.1
) -> CupedFigures:
    """Per-user (x, y) with corr(x, y) = rho; sums vectorised over simulations."""
    rng = np.random.default_rng(seed)

    def arm(shift: float) -> tuple[np.ndarray, ...]:
        x = rng.normal(0.0, 1.0, size=(n_sims, n))
        y = 2.0 + shift + rho * x + math.sqrt(1 - rho * rho) * rng.normal(size=(n_sims, n))
        return n, y.sum(1), (y * y).sum(1), x.sum(1), (x * x).sum(1), (x * y).sum(1)

    a, b = arm(0.0), arm(effect)
    b0 = arm(0.0)  # second control for the A/A false-positive check
    adj, unadj, red, aa = [], [], [], []
    for i in range(n_sims):
        sa = CovariateSummary(a[0], *(float(v[i]) for v in a[1:]))
        sb = CovariateSummary(b[0], *(float(v[i]) for v in b[1:]))
        r = cuped(sa, sb)
        adj.append(r.diff)
        unadj.append(r.unadjusted_diff)
        red.append(r.variance_reduction)
        s0 = CovariateSummary(b0[0], *(float(v[i]) for v in b0[1:]))
        aa.append(cuped(sa, s0).significant)
    adj_a, unadj_a = np.array(adj), np.array(unadj)
    return CupedFigures(
        variance_ratio=float(adj_a.var(ddof=1) / unadj_a.var(ddof=1)),
        mean_reported_reduction=float(np.mean(red)),
        mean_adjusted_diff=float(adj_a.mean()),
        se_of_mean_adjusted_diff=float(adj_a.std(ddof=1) / math.sqrt(n_sims)),
        mean_unadjusted_diff=float(unadj_a.mean()),
        aa_fpr=float(np.mean(aa)),
    )


# ---------------------------------------------------------------- default run (2,000 sims)
N_SIMS = 2000


def test_aa_false_positive_rate_proportions() -> None:
    assert 0.04 <= aa_proportions_fpr(N_SIMS) <= 0.06
    assert 0.04 <= aa_proportions_fpr(N_SIMS, seed=21, pooled=True) <= 0.06


def test_aa_false_positive_rate_means() -> None:
    assert 0.04 <= aa_means_fpr(N_SIMS) <= 0.06


def test_power_of_sample_size_design() -> None:
    n, power = design_power(N_SIMS)
    assert n == 3841  # R: power.prop.test(p1 = 0.1, p2 = 0.12, power = 0.8) -> 3840.847
    assert 0.77 <= power <= 0.83


def test_peeking_inflates_naive_but_not_sequential() -> None:
    f = peeking(N_SIMS)
    assert f.naive_fpr > 0.1
    assert f.sequential_fpr <= 0.05
    assert f.sequential_larger_fpr <= 0.05  # one-sided boundary


def test_peeking_sequential_means() -> None:
    assert peeking_means(1000) <= 0.05


def test_cuped_variance_reduction_and_unbiased() -> None:
    f = cuped_simulation(N_SIMS)
    assert 0.4 <= f.variance_ratio <= 0.6  # theory: 1 - rho^2 = 0.51
    assert 0.4 <= f.mean_reported_reduction <= 0.6
    assert abs(f.mean_adjusted_diff - 0.1) < 4 * f.se_of_mean_adjusted_diff
    assert 0.03 <= f.aa_fpr <= 0.07


# ---------------------------------------------------------------- bench (20,000 sims, printed)
BENCH_SIMS = 20_000


@pytest.mark.bench
def test_bench_calibration_figures() -> None:
    fpr_p = aa_proportions_fpr(BENCH_SIMS)
    fpr_pooled = aa_proportions_fpr(BENCH_SIMS, seed=21, pooled=True)
    fpr_m = aa_means_fpr(BENCH_SIMS // 4)
    n, power = design_power(BENCH_SIMS)
    print(f"\nA/A FPR proportions (unpooled) over {BENCH_SIMS}: {fpr_p:.4f}")
    print(f"A/A FPR proportions (pooled)   over {BENCH_SIMS}: {fpr_pooled:.4f}")
    print(f"A/A FPR means (Welch, exponential, n=400) over {BENCH_SIMS // 4}: {fpr_m:.4f}")
    print(f"power of n={n}/arm design (0.10 -> 0.12, target 0.80) over {BENCH_SIMS}: {power:.4f}")
    assert 0.045 <= fpr_p <= 0.055 and 0.045 <= fpr_pooled <= 0.055
    assert 0.78 <= power <= 0.82


@pytest.mark.bench
def test_bench_peeking_and_cuped_figures() -> None:
    f = peeking(BENCH_SIMS // 2)
    print(
        f"\npeeking, 20 looks, {BENCH_SIMS // 2} A/A sims: naive FPR {f.naive_fpr:.4f}, "
        f"sequential FPR {f.sequential_fpr:.4f} (at final look only {f.sequential_final_fpr:.4f}), "
        f"one-sided 'larger' sequential FPR {f.sequential_larger_fpr:.4f}"
    )
    pm = peeking_means(BENCH_SIMS // 10)
    print(f"sequential FPR for means, 20 looks, {BENCH_SIMS // 10} sims: {pm:.4f}")
    c = cuped_simulation(BENCH_SIMS // 4)
    print(
        f"CUPED rho=0.7, {BENCH_SIMS // 4} sims: variance ratio {c.variance_ratio:.4f} (theory 0.51), "
        f"reported reduction {c.mean_reported_reduction:.4f}, mean adjusted diff {c.mean_adjusted_diff:.5f} "
        f"+/- {c.se_of_mean_adjusted_diff:.5f} (true 0.1), unadjusted {c.mean_unadjusted_diff:.5f}, A/A FPR {c.aa_fpr:.4f}"
    )
    assert f.naive_fpr > 0.1 and f.sequential_fpr <= 0.05 and pm <= 0.05
