"""Interactions between two overlapping experiments, pure: assignment dependence and effect interaction.

Two experiments overlap when users can be in both (different layers, or no layer). Two questions per pair:

* **assignment dependence** — are the arms of one independent of the arms of the other? Pearson chi-square
  test of independence on the r x c table of users by (arm of A, arm of B) (Agresti, *Categorical Data
  Analysis*, 3rd ed., sec. 3.2.1; no continuity correction; ``scipy.stats.chi2_contingency(correction=False)``).
* **effect interaction** — does A's lift differ across B's arms? For a treatment ``a`` of A and ``b`` of B, the
  interaction contrast ``(mean[a,b] - mean[0,b]) - (mean[a,0] - mean[0,0])`` (the difference-in-differences of
  the four cell means, 0 when the effects add up) with the unpooled standard error
  ``sqrt(sum s_i^2 / n_i)`` over the four cells (sample variances, ``ddof = 1``), a two-sided z-test (Montgomery,
  *Design and Analysis of Experiments*, 2x2 factorial; the unpooled variance equals the HC2 sandwich variance of
  the interaction coefficient in the saturated regression ``y ~ A * B``, MacKinnon and White 1985).

Many pairs and metrics are scanned at once: :mod:`abcore.analysis.interactions` adjusts the p-values with
Benjamini-Hochberg (:func:`abcore.stats.corrections.adjust_pvalues`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

from ._common import NAN

__all__ = ["CellStats", "DependenceResult", "InteractionResult", "assignment_dependence", "effect_interaction"]


@dataclass(frozen=True)
class CellStats:
    """Sufficient statistics of one (arm of A, arm of B) cell: users, sum and sum of squares of their values."""

    n: int
    total: float
    total_sq: float

    @property
    def mean(self) -> float:
        """The cell's mean value (NaN without users)."""
        return self.total / self.n if self.n > 0 else NAN

    @property
    def variance(self) -> float:
        """The sample variance (``ddof = 1``; NaN below two users; never below 0)."""
        if self.n < 2:
            return NAN
        return max(0.0, (self.total_sq - self.total * self.total / self.n) / (self.n - 1))


@dataclass(frozen=True)
class DependenceResult:
    """Pearson chi-square test of independence of the arms: statistic, degrees of freedom, p-value."""

    statistic: float
    dof: int
    p_value: float
    message: str = ""


@dataclass(frozen=True)
class InteractionResult:
    """The interaction contrast (difference of A's lift between two arms of B), its standard error, z and p."""

    difference: float
    std_error: float
    z: float
    p_value: float
    message: str = ""


def assignment_dependence(counts: Sequence[Sequence[int]]) -> DependenceResult:
    """Chi-square test of independence on the table ``counts[i][j]`` = users in arm ``i`` of A and ``j`` of B.

    Rows or columns without users are dropped first; fewer than two of either leaves nothing to test
    (p-value NaN, with a message).
    """
    rows = [list(map(float, r)) for r in counts if sum(r) > 0]
    if not rows:
        return DependenceResult(NAN, 0, NAN, "no user is in both experiments")
    keep = [j for j in range(len(rows[0])) if sum(r[j] for r in rows) > 0]
    table = [[r[j] for j in keep] for r in rows]
    if len(table) < 2 or len(keep) < 2:
        return DependenceResult(NAN, 0, NAN, "the users in both experiments are in one arm of one of them")
    total = sum(map(sum, table))
    row_sums = [sum(r) for r in table]
    col_sums = [sum(r[j] for r in table) for j in range(len(keep))]
    statistic = sum(
        (table[i][j] - row_sums[i] * col_sums[j] / total) ** 2 / (row_sums[i] * col_sums[j] / total)
        for i in range(len(table))
        for j in range(len(keep))
    )
    dof = (len(table) - 1) * (len(keep) - 1)
    return DependenceResult(statistic, dof, float(stats.chi2.sf(statistic, dof)))


def effect_interaction(control_control: CellStats, treated_control: CellStats, control_treated: CellStats,
                       treated_treated: CellStats) -> InteractionResult:
    """z-test of ``(mean[a,b] - mean[0,b]) - (mean[a,0] - mean[0,0])`` = 0; cells named (arm of A)_(arm of B).

    Each cell needs two users and the standard error must be above 0; otherwise the result is NaN with a message.
    """
    cells = (control_control, treated_control, control_treated, treated_treated)
    if any(c.n < 2 for c in cells):
        return InteractionResult(NAN, NAN, NAN, NAN, "every cell needs at least two users")
    difference = (treated_treated.mean - control_treated.mean) - (treated_control.mean - control_control.mean)
    std_error = math.sqrt(sum(c.variance / c.n for c in cells))
    if not std_error > 0:
        return InteractionResult(difference, std_error, NAN, NAN, "no variation in the values")
    z = difference / std_error
    return InteractionResult(difference, std_error, z, float(2.0 * stats.norm.sf(abs(z))))
