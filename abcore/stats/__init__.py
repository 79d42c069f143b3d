"""abcore.stats: pure statistics over sufficient statistics (no SQL, no pandas).

Conventions: ``a`` is the control, ``b`` the treatment; ``diff = treatment - control``;
``lift = treatment / control - 1``; ``alternative`` is ``"two-sided"``, ``"larger"``
(treatment > control) or ``"smaller"``. Degenerate data never raises: results carry an
``error`` message and ``nan`` where undefined. Invalid parameters raise ``ValueError``.
``error`` can be set while the test itself is valid (a control mean of 0 only makes the
lift undefined): check ``math.isnan(result.p_value)`` to know whether the test failed.

API (all keyword arguments after ``*`` are keyword-only)::

    proportion_test(conversions_a, n_a, conversions_b, n_b, *, alpha=0.05,
                    alternative="two-sided", pooled=False) -> TestResult
    proportion_test_from(a: BinarySummary, b: BinarySummary, *, alpha, alternative, pooled) -> TestResult
    proportion_variances(conversions_a, n_a, conversions_b, n_b) -> (var_a, var_b)  # Wald, pooled when 0
    mean_test(mean_a, std_a, n_a, mean_b, std_b, n_b, *, alpha=0.05, alternative="two-sided") -> TestResult
    mean_test_from(a: MeanSummary, b: MeanSummary, *, alpha, alternative) -> TestResult
    sequential_test(a, b, *, planned_n, alpha=0.05, alternative="two-sided") -> SequentialResult
        # a, b both BinarySummary or both MeanSummary; planned_n = planned users per variant
    sequential_proportion_test(conversions_a, n_a, conversions_b, n_b, *, planned_n, alpha, alternative)
    sequential_mean_test(mean_a, std_a, n_a, mean_b, std_b, n_b, *, planned_n, alpha, alternative)
    bayes_proportion(conversions_a, n_a, conversions_b, n_b, *, credible_level=0.95,
                     prior_alpha=1.0, prior_beta=1.0) -> BayesResult
    bayes_mean(mean_a, std_a, n_a, mean_b, std_b, n_b, *, credible_level=0.95) -> BayesResult
    bayes_proportion_from(a, b, *, credible_level) / bayes_mean_from(a, b, *, credible_level)
    cuped(a: CovariateSummary, b: CovariateSummary, *, alpha=0.05, alternative="two-sided",
          theta=None) -> CupedResult
    srm_test(observed, weights, *, threshold=0.001) -> SRMResult
    srm_test_strata(observed_per_stratum, weights_per_stratum, *, threshold) -> (combined, per-stratum SRMResults)
    stratified_test(strata: Sequence[Stratum], *, alpha=0.05) -> TestResult   # epochs: size-weighted strata
    adjust_pvalues(p_values, method="holm") -> list[float]      # "holm" | "bonferroni" | "fdr_bh"
    sample_size_proportion(baseline, mde, *, relative=False, alpha=0.05, power=0.8,
                           alternative="two-sided", ratio=1.0) -> int   # control-arm users
    sample_size_mean(std, mde, *, alpha=0.05, power=0.8, alternative="two-sided", ratio=1.0) -> int
    power_proportion(baseline, mde, n_per_variant, *, relative=False, alpha=0.05,
                     alternative="two-sided", ratio=1.0) -> float
    power_mean(std, mde, n_per_variant, *, alpha=0.05, alternative="two-sided", ratio=1.0) -> float

    ratio_test(a: RatioSummary, b: RatioSummary, *, alpha) -> TestResult      # delta method
    quantile_ranks(n, q, *, alpha) -> (lower, point, upper) ranks; quantile_test(a, b, *, alpha) -> TestResult

``SequentialResult`` and ``CupedResult`` are subclasses of ``TestResult`` (same fields,
plus their own), so callers can treat every frequentist result alike.
"""

from .bayesian import BayesResult, bayes_mean, bayes_mean_from, bayes_proportion, bayes_proportion_from
from .corrections import adjust_pvalues
from .cuped import CupedResult, cuped, cuped_theta
from .frequentist import (
    TestResult,
    mean_test,
    mean_test_from,
    proportion_test,
    proportion_test_from,
    proportion_variances,
    welch_dof,
)
from .power import (
    power_mean,
    power_proportion,
    sample_size_mean,
    sample_size_mean_float,
    sample_size_proportion,
    sample_size_proportion_float,
)
from .ratio_quantile import QuantileSummary, RatioSummary, quantile_ranks, quantile_test, ratio_test
from .sequential import (
    SequentialResult,
    sequential_halfwidth,
    sequential_mean_test,
    sequential_proportion_test,
    sequential_rho2,
    sequential_test,
)
from .srm import SRM_THRESHOLD, SRMResult, srm_test, srm_test_strata
from .stratified import Stratum, stratified_test, stratum_weights
from .summaries import BinarySummary, CovariateSummary, MeanSummary

__all__ = [
    "SRM_THRESHOLD",
    "BayesResult",
    "BinarySummary",
    "CovariateSummary",
    "CupedResult",
    "MeanSummary",
    "QuantileSummary",
    "RatioSummary",
    "SRMResult",
    "SequentialResult",
    "Stratum",
    "TestResult",
    "adjust_pvalues",
    "bayes_mean",
    "bayes_mean_from",
    "bayes_proportion",
    "bayes_proportion_from",
    "cuped",
    "cuped_theta",
    "mean_test",
    "mean_test_from",
    "power_mean",
    "power_proportion",
    "proportion_test",
    "proportion_test_from",
    "proportion_variances",
    "quantile_ranks",
    "quantile_test",
    "ratio_test",
    "sample_size_mean",
    "sample_size_mean_float",
    "sample_size_proportion",
    "sample_size_proportion_float",
    "sequential_halfwidth",
    "sequential_mean_test",
    "sequential_proportion_test",
    "sequential_rho2",
    "sequential_test",
    "srm_test",
    "srm_test_strata",
    "stratified_test",
    "stratum_weights",
    "welch_dof",
]
