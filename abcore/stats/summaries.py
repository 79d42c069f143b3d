"""Sufficient statistics per variant, as small frozen dataclasses.

The SQL layer (``abcore.analysis.sql``) aggregates per user, then per variant, and hands
these objects to the statistics functions; nothing here ever touches a database.

Following GrowthBook's gbstats (``gbstats/models/statistics.py``), derived quantities
are properties that guard the degenerate cases: with ``n <= 1`` a sample variance is
undefined and the properties return ``nan`` instead of raising.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BinarySummary", "CovariateSummary", "MeanSummary"]

_NAN = float("nan")


def _sample_var(n: float, total: float, total_sq: float) -> float:
    """Unbiased sample variance ``(sum x^2 - (sum x)^2 / n) / (n - 1)`` from sums.

    Returns ``nan`` for ``n <= 1``; tiny negative values caused by floating-point
    cancellation are clipped to 0.
    """
    if not n > 1:
        return _NAN
    value = (total_sq - total * total / n) / (n - 1)
    if math.isnan(value):
        return _NAN
    return max(value, 0.0)


def _sample_cov(n: float, sum_x: float, sum_y: float, sum_xy: float) -> float:
    """Unbiased sample covariance ``(sum xy - sum x sum y / n) / (n - 1)``; ``nan`` for ``n <= 1``."""
    if not n > 1:
        return _NAN
    return (sum_xy - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True)
class BinarySummary:
    """Users and converted users of one variant (a 0/1 metric per user).

    Parameters
    ----------
    n : int
        Number of users in the variant.
    conversions : int
        Number of those users who converted (``0 <= conversions <= n``).

    Notes
    -----
    ``variance`` is the Bernoulli variance ``p (1 - p)`` (divisor ``n``), the one the
    Wald z-test uses; it is *not* the ``n - 1`` sample variance of the 0/1 values.
    """

    n: int
    conversions: int

    @property
    def mean(self) -> float:
        """Conversion rate ``conversions / n`` (``nan`` when ``n <= 0``)."""
        if not self.n > 0:
            return _NAN
        return self.conversions / self.n

    @property
    def rate(self) -> float:
        """Alias of :attr:`mean`."""
        return self.mean

    @property
    def variance(self) -> float:
        """Bernoulli variance ``p (1 - p)`` (``nan`` when ``n <= 0``)."""
        p = self.mean
        return p * (1.0 - p)

    @property
    def std(self) -> float:
        """``sqrt(variance)``."""
        v = self.variance
        return math.sqrt(v) if v >= 0 else _NAN

    @property
    def sum(self) -> float:
        """Sum of the 0/1 values (= ``conversions``)."""
        return float(self.conversions)

    @property
    def sum_squares(self) -> float:
        """Sum of squares of the 0/1 values (= ``conversions``)."""
        return float(self.conversions)


@dataclass(frozen=True)
class MeanSummary:
    """Users, sum and sum of squares of a per-user metric in one variant.

    Parameters
    ----------
    n : int
        Number of users.
    sum : float
        Sum over users of the per-user value.
    sum_squares : float
        Sum over users of the squared per-user value.

    Notes
    -----
    ``variance`` is the unbiased sample variance (divisor ``n - 1``), ``nan`` when
    ``n <= 1``. It is computed from raw sums, so for metrics with a huge mean relative
    to their spread some precision is lost to cancellation (negative results are
    clipped to 0).
    """

    n: int
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        """``sum / n`` (``nan`` when ``n <= 0``)."""
        if not self.n > 0:
            return _NAN
        return self.sum / self.n

    @property
    def variance(self) -> float:
        """Sample variance with divisor ``n - 1`` (``nan`` when ``n <= 1``)."""
        return _sample_var(self.n, self.sum, self.sum_squares)

    @property
    def std(self) -> float:
        """Sample standard deviation ``sqrt(variance)``."""
        return math.sqrt(self.variance) if not math.isnan(self.variance) else _NAN

    @classmethod
    def from_values(cls, values: object) -> MeanSummary:
        """Build a summary from an iterable of per-user values (convenience for tests)."""
        xs = [float(v) for v in values]  # type: ignore[attr-defined]
        return cls(n=len(xs), sum=math.fsum(xs), sum_squares=math.fsum(x * x for x in xs))


@dataclass(frozen=True)
class CovariateSummary:
    """Sufficient statistics of a metric ``y`` and a pre-experiment covariate ``x`` (CUPED).

    Parameters
    ----------
    n : int
        Number of users.
    sum_y, sum_y2 : float
        Sum and sum of squares of the in-experiment metric.
    sum_x, sum_x2 : float
        Sum and sum of squares of the pre-experiment covariate (0 for users without
        pre-period data is the usual convention).
    sum_xy : float
        Sum of the per-user products ``x * y``.
    """

    n: int
    sum_y: float
    sum_y2: float
    sum_x: float
    sum_x2: float
    sum_xy: float

    @property
    def mean_y(self) -> float:
        """Mean of ``y``."""
        return self.sum_y / self.n if self.n > 0 else _NAN

    @property
    def mean_x(self) -> float:
        """Mean of ``x``."""
        return self.sum_x / self.n if self.n > 0 else _NAN

    @property
    def var_y(self) -> float:
        """Sample variance of ``y`` (divisor ``n - 1``)."""
        return _sample_var(self.n, self.sum_y, self.sum_y2)

    @property
    def var_x(self) -> float:
        """Sample variance of ``x`` (divisor ``n - 1``)."""
        return _sample_var(self.n, self.sum_x, self.sum_x2)

    @property
    def cov_xy(self) -> float:
        """Sample covariance of ``x`` and ``y`` (divisor ``n - 1``)."""
        return _sample_cov(self.n, self.sum_x, self.sum_y, self.sum_xy)

    @property
    def corr(self) -> float:
        """Pearson correlation of ``x`` and ``y`` (``nan`` if either variance is 0)."""
        vx, vy = self.var_x, self.var_y
        denom = math.sqrt(vx) * math.sqrt(vy) if (vx > 0 and vy > 0) else 0.0
        if not (denom > 0 and math.isfinite(denom)):
            return _NAN
        return self.cov_xy / denom

    @property
    def y(self) -> MeanSummary:
        """The metric alone, as a :class:`MeanSummary`."""
        return MeanSummary(n=self.n, sum=self.sum_y, sum_squares=self.sum_y2)

    @property
    def x(self) -> MeanSummary:
        """The covariate alone, as a :class:`MeanSummary`."""
        return MeanSummary(n=self.n, sum=self.sum_x, sum_squares=self.sum_x2)

    def __add__(self, other: CovariateSummary) -> CovariateSummary:
        """Combine two groups of users (sums add)."""
        return CovariateSummary(
            n=self.n + other.n,
            sum_y=self.sum_y + other.sum_y,
            sum_y2=self.sum_y2 + other.sum_y2,
            sum_x=self.sum_x + other.sum_x,
            sum_x2=self.sum_x2 + other.sum_x2,
            sum_xy=self.sum_xy + other.sum_xy,
        )
