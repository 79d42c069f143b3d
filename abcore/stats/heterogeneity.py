"""Heterogeneous effects: does the effect in one group of users differ from the effect in the others?

:func:`effect_difference` compares two treatment-vs-control differences estimated on disjoint users
(a segment cell and the rest of the population): ``delta = diff_cell - diff_rest`` with standard error
``sqrt(se_cell^2 + se_rest^2)`` (independent samples) and a two-sided normal (Wald) test; the
interaction test of a two-group subgroup analysis (e.g. Altman & Bland 2003, "Interaction revisited:
the difference between two estimates", BMJ 326:219). Pure; degenerate input gives ``nan``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import NAN, check_alpha, is_finite, norm_cdf, norm_ppf
from .frequentist import TestResult

__all__ = ["EffectDifference", "effect_difference"]


@dataclass(frozen=True)
class EffectDifference:
    """``delta = cell.diff - rest.diff``, its ``1 - alpha`` Wald interval, z statistic and two-sided p-value."""

    delta: float
    ci_low: float
    ci_high: float
    statistic: float
    p_value: float
    std_error: float


def effect_difference(cell: TestResult, rest: TestResult, *, alpha: float = 0.05) -> EffectDifference:
    """The difference between the effect ``cell`` (a treatment-vs-control test on one group of users)
    and ``rest`` (the same test on the other, disjoint users): z = delta / sqrt(se_cell^2 + se_rest^2),
    p = 2 Phi(-|z|); ``nan`` everywhere when either standard error or difference is not finite or
    both standard errors are 0."""
    check_alpha(alpha)
    delta = cell.diff - rest.diff
    se = math.sqrt(cell.std_error**2 + rest.std_error**2) if is_finite(cell.std_error, rest.std_error) else NAN
    if not is_finite(delta, se) or se <= 0:
        return EffectDifference(NAN, NAN, NAN, NAN, NAN, NAN)
    z = delta / se
    crit = norm_ppf(1 - alpha / 2)
    p = min(1.0, 2.0 * norm_cdf(-abs(z)))
    return EffectDifference(delta, delta - crit * se, delta + crit * se, z, p, se)
