"""Sample-ratio mismatch (SRM) check: chi-square goodness of fit against the allocation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import special

from ._common import NAN, as_float

__all__ = ["SRM_THRESHOLD", "SRMResult", "srm_test", "srm_test_strata"]

SRM_THRESHOLD = 0.001
"""p-value below which a sample-ratio mismatch is flagged (Fabijan et al. 2019, KDD,
"Diagnosing Sample Ratio Mismatch in Online Controlled Experiments")."""


@dataclass(frozen=True)
class SRMResult:
    """Result of :func:`srm_test`.

    Attributes
    ----------
    statistic : float
        Pearson chi-square statistic ``sum (observed - expected)^2 / expected``.
    p_value : float
        Upper-tail chi-square probability with ``dof`` degrees of freedom.
    mismatch : bool
        ``p_value < threshold`` (default 0.001). ``False`` when the test is undefined.
    dof : int
        ``k - 1`` for ``k`` variants with positive weight.
    expected : tuple of float
        Expected counts ``total * weight / sum(weights)``.
    error : str or None
        Message when the input is degenerate (no users, negative or non-finite counts).
    """

    statistic: float
    p_value: float
    mismatch: bool
    dof: int = 0
    expected: tuple[float, ...] = ()
    error: str | None = None


def srm_test(
    observed: Sequence[int], weights: Sequence[float], *, threshold: float = SRM_THRESHOLD
) -> SRMResult:
    """Chi-square goodness-of-fit test of observed users per variant against the allocation.

    Parameters
    ----------
    observed : sequence of int
        Users per variant.
    weights : sequence of float
        Configured traffic weights, same order and length; normalised to sum to 1
        (so percentages or fractions both work).
    threshold : float, default 0.001
        Flag a mismatch when ``p_value < threshold``.

    Returns
    -------
    SRMResult
        Same statistic and p-value as ``scipy.stats.chisquare(observed, expected)``.
        A variant with weight 0 is left out when it has no users; if it has users the
        mismatch is certain (``statistic = inf``, ``p_value = 0``). Degenerate data
        (no users at all, negative or non-finite counts) and degenerate configurations
        (fewer than 2 variants, or only one variant with a positive weight, or all
        weights 0) give ``error`` set, ``nan`` statistic and p-value and
        ``mismatch=False``.

    Raises
    ------
    ValueError
        Lengths differ, negative / non-finite weights, or ``threshold`` outside (0, 1).

    Examples
    --------
    >>> r = srm_test([5000, 5200], [0.5, 0.5])
    >>> round(r.p_value, 4), r.mismatch
    (0.0477, False)
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
    if len(observed) != len(weights):
        raise ValueError(f"observed ({len(observed)}) and weights ({len(weights)}) differ in length")
    w = [as_float(x) for x in weights]
    if any(not math.isfinite(x) or x < 0 for x in w):
        raise ValueError(f"weights must be finite and non-negative, got {list(weights)!r}")
    if len(w) < 2:
        return SRMResult(NAN, NAN, False, error="SRM check needs at least 2 variants")
    if sum(w) <= 0:
        return SRMResult(NAN, NAN, False, error="every variant has allocation 0")
    obs = [as_float(x) for x in observed]
    if any(not math.isfinite(x) or x < 0 for x in obs):
        return SRMResult(
            NAN, NAN, False, error=f"observed counts must be finite and non-negative: {list(observed)!r}"
        )
    total = sum(obs)
    wsum = sum(w)
    expected = tuple(total * x / wsum for x in w)
    if total <= 0:
        return SRMResult(NAN, NAN, False, expected=expected, error="no users observed")
    if any(x == 0 and o > 0 for x, o in zip(w, obs, strict=True)):
        return SRMResult(
            math.inf,
            0.0,
            True,
            dof=sum(x > 0 for x in w) - 1,
            expected=expected,
            error=None,
        )
    cells = [(o, e) for o, e in zip(obs, expected, strict=True) if e > 0]
    dof = len(cells) - 1
    if dof < 1:
        return SRMResult(NAN, NAN, False, expected=expected, error="only one variant has a positive weight")
    stat = sum((o - e) * (o - e) / e for o, e in cells)
    p = float(special.chdtrc(dof, stat))
    return SRMResult(stat, p, bool(p < threshold), dof=dof, expected=expected, error=None)


def srm_test_strata(
    observed: Sequence[Sequence[int]], weights: Sequence[Sequence[float]], *, threshold: float = SRM_THRESHOLD
) -> tuple[SRMResult, tuple[SRMResult, ...]]:
    """SRM per stratum (each against its own split, :func:`srm_test`) and their combination.

    Strata are independent, so under no mismatch the sum of their chi-square statistics is chi-square with the
    sum of their degrees of freedom (the additivity of independent chi-square variables; e.g. Agresti 2013,
    *Categorical Data Analysis*, 3rd ed., section 1.5). Strata whose test is undefined (no users) are left out;
    the combination is undefined (``error``) when every stratum is.
    """
    each = tuple(srm_test(o, w, threshold=threshold) for o, w in zip(observed, weights, strict=True))
    defined = [r for r in each if r.error is None]
    if not defined:
        return SRMResult(NAN, NAN, False, error="no stratum with users"), each
    dof = sum(r.dof for r in defined)
    stat = math.fsum(r.statistic for r in defined)
    p = 0.0 if math.isinf(stat) else float(special.chdtrc(dof, stat))
    return SRMResult(stat, p, bool(p < threshold), dof=dof), each
