"""Stratified (post-stratified) comparison: estimate the difference within each stratum, combine with weights.

Used for **epochs**: when the split or traffic share of a running experiment changed, each period between two
changes is a stratum; within it the arms were randomised with one fixed split, so its difference is unbiased,
while the pooled difference is not when the base rate drifts (Simpson's paradox).

With strata ``e = 1..E``, users ``n_e`` (both arms) and ``w_e = n_e / sum(n)``, arm means ``C_e``, ``T_e`` and
the variances of those means ``V(C_e)``, ``V(T_e)`` (each metric kind's own: ``p (1 - p) / n``, ``s^2 / n``, the
delta method for ratios, the order-statistic interval for quantiles)::

    C = sum_e w_e C_e        T = sum_e w_e T_e        diff = T - C
    V(C) = sum_e w_e^2 V(C_e)   V(T) = sum_e w_e^2 V(T_e)   SE(diff) = sqrt(V(C) + V(T))

and a two-sided z-test of ``diff / SE``; the relative lift ``T / C - 1`` and its interval by the delta method
(:func:`abcore.stats._common.lift_and_variance`). This is the post-stratification estimator with weights
proportional to stratum size and the Neyman variance of a stratified randomised experiment (Imbens & Rubin 2015,
*Causal Inference for Statistics, Social, and Biomedical Sciences*, ch. 9.4-9.5; Miratrix, Sekhon & Yu 2013,
"Adjusting treatment effect estimates by post-stratification in randomized experiments", JRSS-B 75(2)); it
estimates the effect averaged over the experiment's users, as the pooled figure means to. A stratum where an arm
has no users (or an undefined variance) carries no within-stratum comparison: it is left out and the weights of
the others renormalised (``dropped`` counts such strata).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ._common import NAN, check_alpha, is_finite
from .frequentist import TestResult
from .ratio_quantile import _z_result

__all__ = ["Stratum", "stratified_test", "stratum_weights"]


@dataclass(frozen=True)
class Stratum:
    """One stratum: its users (both arms), and each arm's estimate with the variance of that estimate."""

    n: float
    control: float
    var_control: float
    treatment: float
    var_treatment: float

    @property
    def usable(self) -> bool:
        """Both estimates and variances finite, variances non-negative and users > 0."""
        return (self.n > 0 and is_finite(self.control, self.var_control, self.treatment, self.var_treatment)
                and self.var_control >= 0 and self.var_treatment >= 0)


def stratum_weights(strata: Sequence[Stratum]) -> list[float]:
    """``w_e = n_e / sum(n)`` over the usable strata (0 for the others); all 0 when none is usable."""
    total = sum(s.n for s in strata if s.usable)
    return [s.n / total if s.usable and total > 0 else 0.0 for s in strata]


def stratified_test(strata: Sequence[Stratum], *, alpha: float = 0.05) -> TestResult:
    """The stratified difference ``T - C`` of the module docstring, its z-test and intervals (two-sided).

    ``error`` says when no stratum is usable (every field ``nan``) or how many were left out.
    """
    check_alpha(alpha)
    weights = stratum_weights(strata)
    used = [(w, s) for w, s in zip(weights, strata, strict=True) if w > 0]
    dropped = len(strata) - len(used)
    note = [f"{dropped} of {len(strata)} strata have no comparison (an arm without users) and are left out"] if dropped else []
    if not used:
        return _z_result(NAN, NAN, NAN, NAN, alpha, note or ["no strata"])
    control = math.fsum(w * s.control for w, s in used)
    treatment = math.fsum(w * s.treatment for w, s in used)
    var_control = math.fsum(w * w * s.var_control for w, s in used)
    var_treatment = math.fsum(w * w * s.var_treatment for w, s in used)
    return _z_result(control, treatment, var_control, var_treatment, alpha, note)
