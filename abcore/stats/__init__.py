"""abcore.stats: pure statistics over sufficient statistics (no SQL, no pandas).

Conventions: ``a`` is the control, ``b`` the treatment; ``diff = treatment - control``;
``lift = treatment / control - 1``; ``alternative`` is ``"two-sided"``, ``"larger"``
(treatment > control) or ``"smaller"``. Degenerate data never raises: results carry an
``error`` message and ``nan`` where undefined. Invalid parameters raise ``ValueError``.
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
from .sequential import (
    SequentialResult,
    sequential_halfwidth,
    sequential_mean_test,
    sequential_proportion_test,
    sequential_rho2,
    sequential_test,
)
from .srm import SRM_THRESHOLD, SRMResult, srm_test
from .summaries import BinarySummary, CovariateSummary, MeanSummary

__all__ = [
    "SRM_THRESHOLD",
    "BayesResult",
    "BinarySummary",
    "CovariateSummary",
    "CupedResult",
    "MeanSummary",
    "SRMResult",
    "SequentialResult",
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
    "welch_dof",
]
