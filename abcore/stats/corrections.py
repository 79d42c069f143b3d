"""Multiple-comparison adjustment of p-values (Holm, Bonferroni, Benjamini-Hochberg).

The adjusted values equal those of ``statsmodels.stats.multitest.multipletests`` with
``method="holm"``, ``"bonferroni"`` and ``"fdr_bh"``; rejecting where the adjusted value
is ``< alpha`` (or ``<= alpha``) controls the family-wise error rate (Holm, Bonferroni)
or the false discovery rate (BH) at ``alpha``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["METHODS", "adjust_pvalues"]

METHODS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh")


def adjust_pvalues(p_values: Iterable[float], method: str = "holm") -> list[float]:
    """Adjust a family of p-values for multiple comparisons.

    Parameters
    ----------
    p_values : iterable of float
        Raw p-values, each in [0, 1]. ``nan`` entries (e.g. from a degenerate test)
        are left out of the family and come back as ``nan``.
    method : {"holm", "bonferroni", "fdr_bh"}, default "holm"
        * ``holm`` -- Holm (1979) step-down: with sorted ``p_(1) <= ... <= p_(m)``,
          ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``.
        * ``bonferroni`` -- ``min(1, m p)``.
        * ``fdr_bh`` -- Benjamini & Hochberg (1995) step-up:
          ``adj_(i) = min_{j >= i} min(1, m p_(j) / j)``.

    Returns
    -------
    list of float
        Adjusted p-values in the input order; each is ``>= `` its raw value and the
        ordering of the raw p-values is preserved.

    Raises
    ------
    ValueError
        Unknown ``method`` or a p-value outside [0, 1].

    Examples
    --------
    >>> adjust_pvalues([0.01, 0.04, 0.03], method="holm")
    [0.03, 0.06, 0.06]
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    values = [float(p) for p in p_values]
    for p in values:
        if not math.isnan(p) and not 0.0 <= p <= 1.0:
            raise ValueError(f"p-values must be in [0, 1], got {p!r}")
    idx = [i for i, p in enumerate(values) if not math.isnan(p)]
    out = [math.nan] * len(values)
    m = len(idx)
    if m == 0:
        return out
    order = sorted(idx, key=lambda i: values[i])
    if method == "bonferroni":
        for i in idx:
            out[i] = min(1.0, m * values[i])
    elif method == "holm":
        running = 0.0
        for rank, i in enumerate(order):  # rank 0 .. m-1 -> multiplier m - rank
            running = max(running, min(1.0, (m - rank) * values[i]))
            out[i] = running
    else:  # fdr_bh
        running = 1.0
        for rank in range(m - 1, -1, -1):
            i = order[rank]
            running = min(running, min(1.0, m * values[i] / (rank + 1)))
            out[i] = max(values[i], running)  # m / rank >= 1; guard against rounding below p
    return out
