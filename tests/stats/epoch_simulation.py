"""The Simpson A/A simulation of epochs, over sufficient statistics (shared by the calibration test and its bench).

Each simulated experiment: ``users`` users over 14 days (uniform), the split changed from 10/90 to 50/50 at the
start of day 7 (two epochs), a base rate that falls from 20 % to 5 % at the change and swings by weekday
(``x (1 + 0.3 sin(2 pi day / 7))``), identical arms (or the treatment ``effect`` higher in absolute terms).
Per (day, arm) the users come from a binomial split and the conversions from a binomial draw at the day's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from statsmodels.stats.contingency_tables import StratifiedTable

from abcore.stats import (
    BinarySummary,
    Stratum,
    proportion_test_from,
    srm_test,
    srm_test_strata,
    stratified_test,
)

DAYS = 14
CHANGE_DAY = 7
SPLITS = ((10.0, 90.0), (50.0, 50.0))  # control / treatment percent, per epoch


def base_rate(day: int) -> float:
    """The control rate on ``day``: 20 % before the change, 5 % after, swinging by weekday."""
    level = 0.20 if day < CHANGE_DAY else 0.05
    return level * (1 + 0.3 * math.sin(2 * math.pi * day / 7))


@dataclass(frozen=True)
class Figures:
    """Rates over the simulated experiments: rejections at ``alpha`` and SRM flags (p < 0.001)."""

    runs: int
    pooled_fpr: float
    stratified_fpr: float
    cmh_fpr: float
    stratified_coverage: float
    epoch_srm_rate: float
    pooled_srm_rate: float


def _draw(rng: np.random.Generator, runs: int, users: int, effect: float) -> np.ndarray:
    """Per run, epoch and arm: ``[users, conversions]`` (shape ``runs x 2 epochs x 2 arms x 2``)."""
    out = np.zeros((runs, 2, 2, 2), dtype=np.int64)
    per_day = rng.multinomial(users, [1 / DAYS] * DAYS, size=runs)
    for day in range(DAYS):
        epoch = int(day >= CHANGE_DAY)
        treated = rng.binomial(per_day[:, day], SPLITS[epoch][1] / 100)
        for arm, n in ((0, per_day[:, day] - treated), (1, treated)):
            rate = base_rate(day) + (effect if arm == 1 else 0.0)
            out[:, epoch, arm, 0] += n
            out[:, epoch, arm, 1] += rng.binomial(n, rate)
    return out


def _stratum(cells: np.ndarray) -> Stratum:
    a = BinarySummary(int(cells[0, 0]), int(cells[0, 1]))
    b = BinarySummary(int(cells[1, 0]), int(cells[1, 1]))
    return Stratum(a.n + b.n, a.mean, a.variance / a.n if a.n else math.nan, b.mean,
                   b.variance / b.n if b.n else math.nan)


def simulate(runs: int, *, users: int = 2000, seed: int = 2026, alpha: float = 0.05, effect: float = 0.01,
             with_cmh: bool = True) -> Figures:
    """A/A false-positive rates (pooled Wald = today's figure, epoch-stratified, CMH on the epoch 2x2 tables with
    statsmodels), the stratified CI's coverage of a planted ``effect`` and the SRM flag rates."""
    rng = np.random.default_rng(seed)
    null, planted = _draw(rng, runs, users, 0.0), _draw(rng, runs, users, effect)
    pooled = stratified = cmh = covered = epoch_srm = pooled_srm = 0
    for r in range(runs):
        cells = null[r]
        totals = cells.sum(axis=0)
        a, b = BinarySummary(int(totals[0, 0]), int(totals[0, 1])), BinarySummary(int(totals[1, 0]), int(totals[1, 1]))
        pooled += proportion_test_from(a, b, alpha=alpha).p_value < alpha
        stratified += stratified_test([_stratum(cells[e]) for e in range(2)], alpha=alpha).p_value < alpha
        if with_cmh:
            tables = [np.array([[c[1, 1], c[1, 0] - c[1, 1]], [c[0, 1], c[0, 0] - c[0, 1]]]) for c in cells]
            cmh += StratifiedTable(tables).test_null_odds(correction=False).pvalue < alpha
        test = stratified_test([_stratum(planted[r][e]) for e in range(2)], alpha=alpha)
        covered += test.ci_low <= effect <= test.ci_high
        combined, _ = srm_test_strata([cells[e][:, 0].tolist() for e in range(2)], [list(s) for s in SPLITS])
        epoch_srm += combined.mismatch
        pooled_srm += srm_test(totals[:, 0].tolist(), list(SPLITS[-1])).mismatch
    return Figures(runs, pooled / runs, stratified / runs, cmh / runs if with_cmh else math.nan, covered / runs,
                   epoch_srm / runs, pooled_srm / runs)
