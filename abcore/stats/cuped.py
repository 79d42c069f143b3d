"""CUPED: variance reduction with a pre-experiment covariate (Deng et al. 2013).

Deng, Xu, Kohavi & Walker, "Improving the Sensitivity of Online Controlled Experiments
by Utilizing Pre-Experiment Data", WSDM 2013, Section 3 (control variates): for a
covariate ``X`` unaffected by the treatment, ``Y - theta (X - E X)`` has the same mean as
``Y`` and variance ``Var(Y) (1 - rho^2)`` at ``theta = Cov(X, Y) / Var(X)``.

Here ``theta`` is estimated once from both arms pooled (summed sufficient statistics),
``E X`` is the pooled covariate mean, and each arm's adjusted mean is
``mean_y - theta (mean_x - pooled mean_x)``. The variance of the adjusted per-user value
is computed exactly from the arm's own sums,
``Var(Y) + theta^2 Var(X) - 2 theta Cov(X, Y)``, and the two adjusted means are compared
with Welch's t-test (:func:`abcore.stats.mean_test`). As usual (and as in Deng et al.
and GrowthBook), the sampling noise of ``theta`` itself is ignored; it is O(1/n).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from ._common import NAN, as_float, check_alpha, check_alternative, is_finite, join_errors
from .frequentist import TestResult, mean_test
from .summaries import CovariateSummary

__all__ = ["CupedResult", "cuped", "cuped_theta"]


@dataclass(frozen=True)
class CupedResult(TestResult):
    """A :class:`TestResult` for the CUPED-adjusted means, plus the adjustment.

    ``control`` / ``treatment`` are the adjusted means, ``diff`` their difference, and
    every interval and p-value is Welch's on the adjusted values.

    Attributes
    ----------
    theta : float
        ``Cov(x, y) / Var(x)`` on the pooled arms (or the value passed in).
    variance_reduction : float
        ``1 - Var(adjusted diff) / Var(unadjusted diff)``; about ``rho^2`` (0 = no gain;
        negative if a supplied ``theta`` is poor).
    correlation : float
        Pooled Pearson correlation of covariate and metric.
    unadjusted_diff : float
        ``mean_y_b - mean_y_a`` without adjustment.
    unadjusted_std_error : float
        Standard error of the unadjusted difference.
    """

    __test__ = False

    theta: float = NAN
    variance_reduction: float = NAN
    correlation: float = NAN
    unadjusted_diff: float = NAN
    unadjusted_std_error: float = NAN


def _arm_errors(label: str, s: CovariateSummary) -> list[str]:
    values = [as_float(v) for v in (s.n, s.sum_y, s.sum_y2, s.sum_x, s.sum_x2, s.sum_xy)]
    if not is_finite(*values):
        return [f"{label}: sufficient statistics must be finite numbers"]
    if values[0] < 2:
        return [f"{label}: needs at least 2 users (got {values[0]:g})"]
    if values[2] < 0 or values[4] < 0:
        return [f"{label}: sums of squares must be non-negative"]
    return []


def cuped_theta(a: CovariateSummary, b: CovariateSummary) -> float:
    """Pooled ``theta = Cov(x, y) / Var(x)`` over both arms; 0 when the covariate is constant."""
    pooled = a + b
    var_x = pooled.var_x
    if not (var_x > 0):
        return 0.0
    return pooled.cov_xy / var_x


def cuped(
    a: CovariateSummary,
    b: CovariateSummary,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    theta: float | None = None,
) -> CupedResult:
    """CUPED-adjusted Welch test of treatment ``b`` against control ``a``.

    Parameters
    ----------
    a, b : CovariateSummary
        Control and treatment sums of the metric ``y``, the pre-experiment covariate
        ``x`` and their products.
    alpha : float, default 0.05
    alternative : {"two-sided", "larger", "smaller"}
    theta : float, optional
        Use this coefficient instead of estimating it (e.g. from a previous period).

    Returns
    -------
    CupedResult
        A :class:`TestResult` on the adjusted means (``dof`` = Welch-Satterthwaite)
        plus ``theta``, ``variance_reduction``, ``correlation``, ``unadjusted_diff``
        and ``unadjusted_std_error``. Degenerate input (fewer than 2 users, non-finite
        sums, zero variance) sets ``error`` and ``nan`` as :func:`mean_test` does.
        A constant covariate gives ``theta = 0`` (no adjustment).

    Raises
    ------
    ValueError
        Invalid ``alpha`` or ``alternative``.

    Examples
    --------
    >>> a = CovariateSummary(n=4, sum_y=10, sum_y2=30, sum_x=8, sum_x2=20, sum_xy=24)
    >>> b = CovariateSummary(n=4, sum_y=14, sum_y2=54, sum_x=8, sum_x2=20, sum_xy=31)
    >>> round(cuped(a, b).theta, 3)
    0.875
    """
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    errors = _arm_errors("control", a) + _arm_errors("treatment", b)
    if errors:
        return _failed(a, b, errors, alpha=alpha, alternative=alternative)
    th = cuped_theta(a, b) if theta is None else _checked_theta(theta)
    x_bar = (a + b).mean_x
    mean_a, var_a = _adjusted(a, th, x_bar)
    mean_b, var_b = _adjusted(b, th, x_bar)
    res = mean_test(
        mean_a, math.sqrt(var_a), a.n, mean_b, math.sqrt(var_b), b.n, alpha=alpha, alternative=alternative
    )
    var_unadj = a.var_y / a.n + b.var_y / b.n
    var_adj = var_a / a.n + var_b / b.n
    reduction = 1.0 - var_adj / var_unadj if var_unadj > 0 else NAN
    base = {f.name: getattr(res, f.name) for f in fields(TestResult)}
    return CupedResult(
        **base,
        theta=th,
        variance_reduction=reduction,
        correlation=(a + b).corr,
        unadjusted_diff=b.mean_y - a.mean_y,
        unadjusted_std_error=math.sqrt(var_unadj),
    )


def _failed(
    a: CovariateSummary, b: CovariateSummary, errors: list[str], *, alpha: float, alternative: str
) -> CupedResult:
    """The result for degenerate input: the means of the arms that are valid, ``nan`` elsewhere, ``errors``."""
    mean_a = a.mean_y if not _arm_errors("", a) else NAN
    mean_b = b.mean_y if not _arm_errors("", b) else NAN
    return CupedResult(
        control=mean_a,
        treatment=mean_b,
        diff=mean_b - mean_a,
        ci_low=NAN,
        ci_high=NAN,
        lift=NAN,
        lift_ci_low=NAN,
        lift_ci_high=NAN,
        statistic=NAN,
        p_value=NAN,
        dof=NAN,
        significant=False,
        error=join_errors(errors),
        alpha=alpha,
        alternative=alternative,
    )


def _checked_theta(theta: float) -> float:
    """A supplied ``theta`` as a float; raises ``ValueError`` when it is not a finite number."""
    th = as_float(theta)
    if not math.isfinite(th):
        raise ValueError(f"theta must be a finite number, got {theta!r}")
    return th


def _adjusted(s: CovariateSummary, theta: float, x_bar: float) -> tuple[float, float]:
    """The arm's CUPED-adjusted mean and per-user variance (clipped at 0) for ``theta`` and pooled mean ``x_bar``."""
    mean = s.mean_y - theta * (s.mean_x - x_bar)
    var = s.var_y + theta * theta * s.var_x - 2.0 * theta * s.cov_xy
    return mean, max(var, 0.0)
