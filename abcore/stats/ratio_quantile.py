"""Ratio metrics (delta method) and quantile metrics (order-statistic interval), over sufficient statistics.

* Ratio ``R = sum(x) / sum(y)`` over users (e.g. watch minutes per session). With per-user means
  ``mx, my``, variances ``vx, vy`` and covariance ``cxy``, the delta method gives
  ``Var(R) ~= (vx / my^2 - 2 mx cxy / my^3 + mx^2 vy / my^4) / n``
  (Deng, Knoblich & Lu 2018, "Applying the Delta Method in Metric Analytics", eq. 4; GrowthBook
  gbstats ``RatioStatistic.variance``). Two variants are compared with a z-test on ``R_b - R_a``.
* Quantile ``q`` of the event values: the outer order statistics of ranks
  ``n q -/+ z sqrt(n q (1 - q))`` give a distribution-free interval (Deng, Knoblich & Lu 2018,
  section 4 "quantile metrics"; the method GrowthBook documents); the standard error of the
  sample quantile is its width / (2 z). The SQL layer reads only the three order statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import NAN, check_alpha, is_finite, join_errors, lift_interval, norm_cdf, norm_ppf
from .frequentist import TestResult
from .summaries import _sample_cov, _sample_var

__all__ = ["QuantileSummary", "RatioSummary", "quantile_ranks", "quantile_test", "ratio_test"]


@dataclass(frozen=True)
class RatioSummary:
    """Per-user sums of a numerator ``x`` and denominator ``y`` metric over ``n`` users of one variant."""

    n: int
    sum_x: float
    sum_x2: float
    sum_y: float
    sum_y2: float
    sum_xy: float

    @property
    def mean(self) -> float:
        """``sum_x / sum_y`` (``nan`` when ``sum_y == 0``)."""
        return self.sum_x / self.sum_y if self.sum_y else NAN

    @property
    def variance(self) -> float:
        """Delta-method variance of :attr:`mean` (``nan`` for ``n <= 1`` or ``sum_y == 0``)."""
        if not self.n > 1 or not self.sum_y:
            return NAN
        mx, my = self.sum_x / self.n, self.sum_y / self.n
        vx = _sample_var(self.n, self.sum_x, self.sum_x2)
        vy = _sample_var(self.n, self.sum_y, self.sum_y2)
        cxy = _sample_cov(self.n, self.sum_x, self.sum_y, self.sum_xy)
        v = (vx / my**2 - 2 * mx * cxy / my**3 + mx**2 * vy / my**4) / self.n
        return max(v, 0.0)


def _z_result(control: float, treatment: float, var_a: float, var_b: float, alpha: float,
              errors: list[str]) -> TestResult:
    diff = treatment - control
    se = math.sqrt(var_a + var_b) if is_finite(var_a, var_b) else NAN
    crit = -norm_ppf(alpha / 2)
    if not (is_finite(diff, se) and se > 0):
        errors = [*errors, "standard error is undefined or zero"]
        return TestResult(control, treatment, diff, NAN, NAN, NAN, NAN, NAN, NAN, NAN, None, False,
                          error=join_errors(errors), alpha=alpha)
    z = diff / se
    p = 2 * (1 - norm_cdf(abs(z)))
    lift, lift_low, lift_high = lift_interval(control, var_a, treatment, var_b, crit, "two-sided")
    return TestResult(
        control=control, treatment=treatment, diff=diff, ci_low=diff - crit * se, ci_high=diff + crit * se,
        lift=lift, lift_ci_low=lift_low, lift_ci_high=lift_high, statistic=z, p_value=p, dof=None,
        significant=p < alpha, error=join_errors(errors), std_error=se, alpha=alpha,
    )


def ratio_test(a: RatioSummary, b: RatioSummary, *, alpha: float = 0.05) -> TestResult:
    """Two-sided z-test of ``R_b - R_a`` with delta-method variances (see the module docstring)."""
    check_alpha(alpha)
    return _z_result(a.mean, b.mean, a.variance, b.variance, alpha, [])


def quantile_ranks(n: int, q: float, *, alpha: float = 0.05) -> tuple[int, int, int]:
    """1-based ranks ``(lower, point, upper)`` of the order statistics for quantile ``q`` of ``n`` values:
    ``point = ceil(n q)`` (nearest rank), ``lower/upper = floor/ceil(n q -/+ z sqrt(n q (1 - q)))``, clipped to [1, n]."""
    check_alpha(alpha)
    if n < 1:
        return 0, 0, 0
    z = -norm_ppf(alpha / 2)
    half = z * math.sqrt(n * q * (1 - q))
    point = min(max(math.ceil(n * q), 1), n)
    lower = min(max(math.floor(n * q - half), 1), n)
    upper = min(max(math.ceil(n * q + half), 1), n)
    return lower, point, upper


@dataclass(frozen=True)
class QuantileSummary:
    """The order statistics of one variant for quantile ``q``: ``value`` at the point rank and
    ``lower``/``upper`` at the ranks of :func:`quantile_ranks` (computed with ``alpha``)."""

    n: int
    q: float
    value: float
    lower: float
    upper: float
    alpha: float = 0.05

    @property
    def mean(self) -> float:
        """The sample quantile (named ``mean`` like the other summaries' point estimate)."""
        return self.value

    @property
    def variance(self) -> float:
        """Variance of the sample quantile: ``((upper - lower) / (2 z))^2`` (``nan`` for ``n < 2``)."""
        if self.n < 2:
            return NAN
        z = -norm_ppf(self.alpha / 2)
        return ((self.upper - self.lower) / (2 * z)) ** 2


def quantile_test(a: QuantileSummary, b: QuantileSummary, *, alpha: float = 0.05) -> TestResult:
    """Two-sided z-test of ``quantile_b - quantile_a`` with order-statistic standard errors."""
    check_alpha(alpha)
    errors = [] if a.q == b.q else ["the two summaries are of different quantiles"]
    return _z_result(a.value, b.value, a.variance, b.variance, alpha, errors)
