"""A known effect curve over exposure days, simulated per user (shared by the tests and the bench).

Each run: ``users`` per arm enter uniformly over a 28-day experiment (staggered entry), so a user is
observed for ``k`` complete exposure days, ``k`` uniform in 1..28. A user's value on exposure day ``d``
is ``u + tau(d) [treatment] + e`` with a per-user level ``u ~ N(0, 1)`` (days of one user correlate) and
daily noise ``e ~ N(0, 1)``; ``tau(d) = tau_inf + (tau_0 - tau_inf) exp(-d / lam)``. The early value is
exposure day 0, the late value the mean of days 7 .. k - 1 (users with k > 7), as in
:mod:`abcore.analysis.exposure_days`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abcore.stats import EarlyLateSummary, MeanSummary, mean_test_from, novelty_test

DAYS = 28
LATE_FROM = 7


@dataclass(frozen=True)
class CurveCalibration:
    """Share of per-day CIs covering tau(d), of runs flagged, of long-run CIs covering tau_inf."""

    day_coverage: float
    flagged: float
    long_run_coverage: float


def _arm(rng: np.random.Generator, users: int, tau: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = rng.integers(1, DAYS + 1, users)
    y = rng.normal(0, 1, (users, 1)) + tau[None, :] + rng.normal(0, 1, (users, DAYS))
    observed = np.arange(DAYS)[None, :] < k[:, None]
    return np.where(observed, y, np.nan), k


def _early_late(y: np.ndarray, k: np.ndarray) -> EarlyLateSummary:
    keep = k > LATE_FROM
    e = y[keep, 0]
    late = np.nanmean(y[keep, LATE_FROM:], axis=1)
    return EarlyLateSummary(int(keep.sum()), float(e.sum()), float((e * e).sum()), float(late.sum()),
                            float((late * late).sum()), float((e * late).sum()))


def simulate_curve(runs: int, seed: int, tau_0: float, tau_inf: float, lam: float,
                   users: int = 2000, alpha: float = 0.05) -> CurveCalibration:
    """Run ``runs`` simulated experiments and measure the three calibration shares."""
    rng = np.random.default_rng(seed)
    d = np.arange(DAYS)
    tau = tau_inf + (tau_0 - tau_inf) * np.exp(-d / lam)
    covered = tests = flagged = long_covered = 0
    for _ in range(runs):
        ya, ka = _arm(rng, users, np.zeros(DAYS))
        yb, kb = _arm(rng, users, tau)
        for day in range(DAYS):
            a, b = ya[:, day][ka > day], yb[:, day][kb > day]
            if len(a) < 2 or len(b) < 2:
                continue
            t = mean_test_from(MeanSummary.from_values(a), MeanSummary.from_values(b), alpha=alpha)
            tests += 1
            covered += t.ci_low <= tau[day] <= t.ci_high
        result = novelty_test(_early_late(ya, ka), _early_late(yb, kb), alpha=alpha)
        flagged += result.detected
        long_covered += result.long_run.ci_low <= tau_inf <= result.long_run.ci_high
    return CurveCalibration(covered / tests, flagged / runs, long_covered / runs)
