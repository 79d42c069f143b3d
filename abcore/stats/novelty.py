"""Novelty and primacy: does the effect change with the time users have been exposed?

Each analysed user contributes two per-user values: ``early``, the metric's mean daily value over the
first exposure days, and ``late``, its mean daily value over the later exposure days the user has been
observed (see :func:`abcore.analysis.sql.exposure_days.exposure_day_parts` for the days). Only users
observed into the late days count, so both values belong to the same users.

* The **change** ``(treatment - control)`` of ``early - late`` is a difference-in-differences: the
  effect on the early days minus the effect on the late days, compared within users (so the
  correlation between a user's days is accounted for) and between arms (so anything that moves both
  arms alike, e.g. every user's activity falling after their first day, cancels). Welch's t-test of the
  per-user differences between arms gives its CI and p-value; a p-value below ``alpha`` flags a
  **novelty** effect when the early effect is larger in size than the late one (the lift decays), or a
  **primacy** effect when it is smaller (the lift grows). The within-user difference follows
  Sadeghi et al. (2021), "Novelty and Primacy: A Long-Term Estimator for Online Experiments",
  arXiv:2102.12893 (a difference-in-differences over exposure age); abcore compares each user's
  early and late days rather than cohorts on a calendar day.
* The **long-run** estimate is the effect on the late days (Welch on ``late``), with its relative lift
  and delta-method CI. It estimates the lasting effect when the novelty has worn off by the first late
  day (for an effect ``tau(d) = tau_inf + (tau_0 - tau_inf) exp(-d / lambda)``: when ``exp(-L / lambda)``
  is small next to the estimate's standard error, ``L`` the first late day); the documented calibration
  (docs, statistics reference) shows its coverage.

Pure: sufficient statistics in, frozen results out; degenerate input gives ``nan`` and an ``error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import check_alpha
from .frequentist import TestResult, mean_test_from
from .summaries import MeanSummary

__all__ = ["EarlyLateSummary", "NoveltyResult", "novelty_test"]


@dataclass(frozen=True)
class EarlyLateSummary:
    """One arm's sums of the per-user ``early`` (e) and ``late`` (l) values over the users observed into
    the late exposure days: ``n``, sum e, sum e^2, sum l, sum l^2, sum e*l."""

    n: int
    sum_early: float
    sum_early2: float
    sum_late: float
    sum_late2: float
    sum_early_late: float

    @property
    def early(self) -> MeanSummary:
        """The per-user early values."""
        return MeanSummary(n=self.n, sum=self.sum_early, sum_squares=self.sum_early2)

    @property
    def late(self) -> MeanSummary:
        """The per-user late values."""
        return MeanSummary(n=self.n, sum=self.sum_late, sum_squares=self.sum_late2)

    @property
    def change(self) -> MeanSummary:
        """The per-user ``early - late``: sum e - sum l, and sum (e - l)^2 = sum e^2 - 2 sum e*l + sum l^2."""
        squares = max(self.sum_early2 - 2.0 * self.sum_early_late + self.sum_late2, 0.0)
        return MeanSummary(n=self.n, sum=self.sum_early - self.sum_late, sum_squares=squares)


@dataclass(frozen=True)
class NoveltyResult:
    """The novelty / primacy test of one metric and treatment.

    ``early`` and ``long_run`` are the treatment-vs-control tests on the early and late exposure days
    (``long_run.lift`` and its CI: the long-run estimate); ``change`` tests ``early effect - late effect``
    (difference-in-differences, Welch). ``detected``: ``change.p_value < alpha``; ``pattern``:
    ``"novelty"`` (the effect shrinks: the early effect is larger in size than the long-run one),
    ``"primacy"`` (it grows) or ``"none"``. ``users`` counts the users observed into the late days (both arms).
    """

    early: TestResult
    long_run: TestResult
    change: TestResult
    detected: bool
    pattern: str
    users: int
    alpha: float
    error: str | None = None


def novelty_test(a: EarlyLateSummary, b: EarlyLateSummary, *, alpha: float = 0.05) -> NoveltyResult:
    """Test for a change of the effect between the early and the late exposure days (``a`` control, ``b``
    treatment) and estimate the long-run effect; see the module docstring for the method and its source.

    The three tests are :func:`abcore.stats.mean_test_from` (Welch) on the arms' ``early``, ``late``
    and ``change`` summaries at level ``alpha`` (two-sided). Nothing is flagged when the late values do
    not vary (a one-time conversion happens on the first day by nature: no long-run effect to compare)."""
    check_alpha(alpha)
    early = mean_test_from(a.early, b.early, alpha=alpha)
    long_run = mean_test_from(a.late, b.late, alpha=alpha)
    change = mean_test_from(a.change, b.change, alpha=alpha)
    error = None
    if not math.isfinite(long_run.p_value):  # e.g. a one-time conversion: nobody acts on the late days
        error = "no variation in the late exposure days (a one-time metric): no long-run effect to compare"
    elif not math.isfinite(change.p_value):
        error = change.error or "the change is not computable"
    detected = bool(error is None and change.p_value < alpha)
    pattern = "none"
    if detected:
        pattern = "novelty" if abs(early.diff) > abs(long_run.diff) else "primacy"
    return NoveltyResult(early=early, long_run=long_run, change=change, detected=detected, pattern=pattern,
                         users=int(a.n + b.n), alpha=alpha, error=error)
