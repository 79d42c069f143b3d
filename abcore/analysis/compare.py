"""The test step of the analysis: one variant's sufficient statistics in the shape its test needs, and the
test of each metric kind (pure; no SQL).

binomial -> z-test (unpooled), count and mean -> Welch, ratio and event_mean -> delta method, quantile -> order-statistic
z-test; CUPED, sequential and Bayesian variants where they apply (:mod:`abcore.stats`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from abcore import stats
from abcore.analysis.engines import MetricStatsRow
from abcore.metrics import RATIO_KINDS, MetricSpec
from abcore.stats import BayesResult, TestResult

__all__ = ["FAMILY", "Arm", "arm_estimate", "compare", "summaries"]


#: The test family of each definition kind (``MetricResult.kind``, what pages and exports read).
FAMILY: dict[str, str] = {"binomial": "binary", "count": "mean", "mean": "mean", "ratio": "ratio",
                           "event_mean": "ratio", "quantile": "quantile"}
@dataclass(frozen=True)
class Arm:
    """One variant's statistics of one metric, in the shape its test needs."""

    kind: str
    row: MetricStatsRow | None
    binary: stats.BinarySummary
    mean: stats.MeanSummary
    covariate: stats.CovariateSummary
    ratio: stats.RatioSummary
    quantile: stats.QuantileSummary
    value: float
    std: float


def summaries(row: MetricStatsRow | None, spec: MetricSpec, variant_id: int, alpha: float) -> Arm:
    """The summaries of ``row`` (``None``: no users in the variant)."""
    n = row.n if row else 0
    sy, sy2, sx, sx2, sxy = (row.sum_y, row.sum_y2, row.sum_x, row.sum_x2, row.sum_xy) if row else (0.0,) * 5
    binary = stats.BinarySummary(n=n, conversions=int(round(sy)))
    mean = stats.MeanSummary(n=n, sum=sy, sum_squares=sy2)
    covariate = stats.CovariateSummary(n=n, sum_y=sy, sum_y2=sy2, sum_x=sx, sum_x2=sx2, sum_xy=sxy)
    # ratio_test's summary names the numerator x and the denominator y (the query: y and x).
    ratio = stats.RatioSummary(n=n, sum_x=sy, sum_x2=sy2, sum_y=sx, sum_y2=sx2, sum_xy=sxy)
    q = float(spec.quantile or 0.5)
    qv = (row.q_value, row.q_lower, row.q_upper) if row else (None, None, None)
    quantile = stats.QuantileSummary(
        n=row.q_n if row else 0, q=q, value=math.nan if qv[0] is None else qv[0],
        lower=math.nan if qv[1] is None else qv[1], upper=math.nan if qv[2] is None else qv[2], alpha=alpha,
    )
    if spec.kind == "binomial":
        value, std = binary.mean, binary.std
    elif spec.kind in RATIO_KINDS:
        value, std = ratio.mean, math.nan
    elif spec.kind == "quantile":
        value, std = quantile.value, math.nan
    else:
        value, std = mean.mean, mean.std
    return Arm(spec.kind, row, binary, mean, covariate, ratio, quantile, value, std)


def compare(
    spec: MetricSpec, a: Arm, b: Arm, *, method: str, cuped: bool, alpha: float, planned_n: float
) -> tuple[TestResult, BayesResult | None]:
    """The test of ``spec``'s kind: z-test (binomial), Welch (count, mean), delta method (ratio),
    order-statistic z-test (quantile); CUPED, sequential and Bayesian variants where they apply."""
    if spec.kind in RATIO_KINDS:  # ratio and event_mean (values over events): delta method over users
        return stats.ratio_test(a.ratio, b.ratio, alpha=alpha), None
    if spec.kind == "quantile":
        return stats.quantile_test(a.quantile, b.quantile, alpha=alpha), None
    binary = spec.kind == "binomial"
    sa: Any = a.binary if binary else a.mean
    sb: Any = b.binary if binary else b.mean
    bayes: BayesResult | None = None
    if cuped:
        test: TestResult = stats.cuped(a.covariate, b.covariate, alpha=alpha)
    elif method == "sequential":
        test = stats.sequential_test(sa, sb, planned_n=planned_n, alpha=alpha)
    elif binary:
        test = stats.proportion_test_from(sa, sb, alpha=alpha)
    else:
        test = stats.mean_test_from(sa, sb, alpha=alpha)
    if method == "bayesian":
        if binary:
            bayes = stats.bayes_proportion_from(sa, sb, credible_level=1 - alpha)
        else:
            bayes = stats.bayes_mean_from(sa, sb, credible_level=1 - alpha)
    return test, bayes


def arm_estimate(arm: Arm) -> tuple[float, float]:
    """The arm's estimate and the variance of that estimate, as its kind's fixed-horizon test uses them:
    binomial ``p (1 - p) / n`` (unpooled z-test), count / mean ``s^2 / n`` (Welch), ratio and mean per event the
    delta method,
    quantile ``((upper - lower) / (2 z))^2`` (``nan`` where undefined). The input of a stratum of
    :func:`abcore.stats.stratified_test`."""
    if arm.kind in RATIO_KINDS:
        return arm.ratio.mean, arm.ratio.variance
    if arm.kind == "quantile":
        return arm.quantile.value, arm.quantile.variance
    if arm.kind == "binomial":
        n = arm.binary.n
        return arm.binary.mean, arm.binary.variance / n if n > 0 else math.nan
    n = arm.mean.n
    return arm.mean.mean, arm.mean.variance / n if n > 1 else math.nan
