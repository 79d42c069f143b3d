"""Always-valid inference: asymptotic confidence sequences (safe to peek).

A confidence sequence (CS) is a sequence of intervals that covers the true difference at
*every* sample size simultaneously with probability ``1 - alpha``, so results may be
checked after every batch of data and the experiment stopped whenever the interval
excludes 0, without inflating the false-positive rate.

Method
------
The asymptotic Gaussian-mixture CS of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences" (arXiv:2103.06476,
Annals of Statistics 2024), eq. (9) of the arXiv version (v7) -- the two-sided
normal-mixture boundary of Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences" (Annals of Statistics 49, 2021) with
the variance estimated from the data. For an estimate ``theta_t`` with per-observation
variance ``sigma^2`` after ``t`` observations::

    theta_t +/- sigma * sqrt( 2 (t rho^2 + 1) / (t^2 rho^2) * log( sqrt(t rho^2 + 1) / alpha ) )

and the mixing parameter chosen to make the boundary tightest at the planned sample
size ``T`` (Waudby-Smith et al., appendix, eq. (161) of the arXiv version)::

    rho^2 = ( -2 log(alpha) + log(-2 log(alpha) + 1) ) / T

This is the CS GrowthBook uses for its sequential testing (gbstats
``SequentialTwoSidedTTest``, which cites the same two equations).

One-sided alternatives replace ``log(sqrt(t rho^2 + 1) / alpha)`` by
``log(1 + sqrt(t rho^2 + 1) / (2 alpha))``, the closed-form bound on the one-sided
normal-mixture boundary of Howard et al. (2021). Why it is valid: the one-sided
(half-normal) mixture martingale is ``M = (2 / c) exp(x^2 / 2) Phi(x)`` with ``x`` the
standardised sum and ``c = sqrt(t rho^2 + 1)``; since ``exp(x^2 / 2) Phi(-x) <= 1`` for
``x >= 0``, ``M >= (2 / c) (exp(x^2 / 2) - 1)``, so crossing this boundary implies
``M >= 1 / alpha`` and Ville's inequality bounds the error by ``alpha``. The boundary lies
between the two-sided boundaries at ``alpha`` and at ``2 alpha``.

Two-sample mapping: the time index is the mean users per arm ``t = (n_a + n_b) / 2`` and
``sigma^2 = t * Var(diff)`` (for equal arms: the variance of one treatment-minus-control
pair); ``T = planned_n`` is the planned users **per variant**. Only ``t / T`` enters the
width, so counting total users on both sides gives the same result.

Always-valid p-value: with ``rho`` fixed by the nominal ``alpha`` and ``planned_n``, the
smallest level ``alpha'`` at which the CS excludes 0, in closed form: two-sided (the
reciprocal ``1 / M_t`` of the mixture martingale)
``p = min(1, sqrt(t rho^2 + 1) * exp(-Q))`` with
``Q = diff^2 t^2 rho^2 / (2 sigma^2 (t rho^2 + 1))``; one-sided
``p = min(1, sqrt(t rho^2 + 1) / (2 (exp(Q) - 1)))`` in the direction of the
alternative, 1 otherwise. Hence ``p_value < alpha`` exactly when the interval excludes 0.
The two-sided p-value is eq. (155) of arXiv:2103.06476 (``1 / e-value``), as in gbstats
``SequentialTwoSidedTTest.p_value``; ``tests/stats/test_stats_gbstats.py`` checks the
interval and p-value against gbstats 0.8.0 to 1e-9 when gbstats is installed.

The functions are stateless: each call gives the CS at the current sample size. Callers
that keep the history may intersect intervals across looks (still valid) and take the
running minimum of the p-value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import (
    INF,
    NAN,
    as_float,
    check_alpha,
    check_alternative,
    is_finite,
    join_errors,
    lift_interval,
)
from .frequentist import TestResult, _check_counts, _check_mean_arm
from .summaries import BinarySummary, MeanSummary

__all__ = [
    "SequentialResult",
    "sequential_halfwidth",
    "sequential_mean_test",
    "sequential_proportion_test",
    "sequential_rho2",
    "sequential_test",
]


@dataclass(frozen=True)
class SequentialResult(TestResult):
    """A :class:`TestResult` whose intervals and p-value are always valid.

    Same fields as :class:`TestResult` (``dof`` is ``None``; ``statistic`` is the plain
    z-statistic ``diff / std_error`` for information; ``ci_*`` / ``lift_ci_*`` are the
    confidence-sequence intervals and ``p_value`` the always-valid p-value), plus:

    Attributes
    ----------
    planned_n : float
        The tuning parameter: planned users per variant.
    rho2 : float
        Mixing parameter ``rho^2`` (per mean-users-per-arm unit).
    """

    __test__ = False

    planned_n: float = NAN
    rho2: float = NAN


def sequential_rho2(alpha: float, planned_n: float) -> float:
    """``rho^2 = (-2 log a + log(-2 log a + 1)) / planned_n`` (Waudby-Smith et al., eq. (161) of arXiv:2103.06476)."""
    la = -2.0 * math.log(alpha)
    return (la + math.log(la + 1.0)) / planned_n


def _log_term(t: float, rho2: float, alpha: float, two_sided: bool) -> float:
    root = math.sqrt(t * rho2 + 1.0)
    if two_sided:
        return math.log(root / alpha)
    return math.log1p(root / (2.0 * alpha))


def sequential_halfwidth(
    var_estimate: float, t: float, rho2: float, alpha: float, *, two_sided: bool = True
) -> float:
    """Half-width of the normal-mixture CS for an estimate with variance ``var_estimate`` at time ``t``.

    ``sqrt(sigma^2 * 2 (t rho^2 + 1) / (t^2 rho^2) * log(...))`` with ``sigma^2 = t *
    var_estimate`` (see the module docstring for the log term and the sources).
    """
    s2 = var_estimate * t
    return math.sqrt(s2 * 2.0 * (t * rho2 + 1.0) / (t * t * rho2) * _log_term(t, rho2, alpha, two_sided))


def _always_valid_p(diff: float, var_diff: float, t: float, rho2: float, alternative: str) -> float:
    q = diff * diff * t * rho2 / (2.0 * var_diff * (t * rho2 + 1.0))
    half_log_root = 0.5 * math.log1p(t * rho2)
    if alternative == "two-sided":
        return min(1.0, math.exp(half_log_root - q))
    if (alternative == "larger" and diff <= 0) or (alternative == "smaller" and diff >= 0):
        return 1.0
    if q <= 0:
        return 1.0
    log_expm1 = q + math.log(-math.expm1(-q))  # log(exp(q) - 1), stable for large q
    return min(1.0, math.exp(half_log_root - math.log(2.0) - log_expm1))


def _interval(est: float, hw: float, alternative: str) -> tuple[float, float]:
    if alternative == "larger":
        return est - hw, INF
    if alternative == "smaller":
        return -INF, est + hw
    return est - hw, est + hw


def _check_params(alpha: float, alternative: str, planned_n: float) -> tuple[float, float]:
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    try:
        planned = float(planned_n)
    except (TypeError, ValueError):
        raise ValueError(f"planned_n must be a positive number, got {planned_n!r}") from None
    if not (math.isfinite(planned) and planned > 0):
        raise ValueError(f"planned_n (planned users per variant) must be positive, got {planned_n!r}")
    return alpha, planned


def _failed(
    errors: list[str], *, control: float, treatment: float, alpha: float, alternative: str, planned: float
) -> SequentialResult:
    return SequentialResult(
        control=control,
        treatment=treatment,
        diff=treatment - control,
        ci_low=NAN,
        ci_high=NAN,
        lift=(treatment / control - 1.0) if (control != 0 and is_finite(control, treatment)) else NAN,
        lift_ci_low=NAN,
        lift_ci_high=NAN,
        statistic=NAN,
        p_value=NAN,
        dof=None,
        significant=False,
        error=join_errors(errors),
        std_error=NAN,
        alpha=alpha,
        alternative=alternative,
        planned_n=planned,
        rho2=NAN,
    )


def _core(
    mean_a: float,
    var_mean_a: float,
    n_a: float,
    mean_b: float,
    var_mean_b: float,
    n_b: float,
    *,
    alpha: float,
    alternative: str,
    planned: float,
) -> SequentialResult:
    var_diff = var_mean_a + var_mean_b
    if not math.isfinite(var_diff):
        return _failed(
            ["variance overflows a float"],
            control=mean_a,
            treatment=mean_b,
            alpha=alpha,
            alternative=alternative,
            planned=planned,
        )
    if not var_diff > 0:
        return _failed(
            ["zero variance: every user within each arm has the same value"],
            control=mean_a,
            treatment=mean_b,
            alpha=alpha,
            alternative=alternative,
            planned=planned,
        )
    t = (n_a + n_b) / 2.0
    rho2 = sequential_rho2(alpha, planned)
    two_sided = alternative == "two-sided"
    diff = mean_b - mean_a
    se = math.sqrt(var_diff)
    hw = sequential_halfwidth(var_diff, t, rho2, alpha, two_sided=two_sided)
    ci_low, ci_high = _interval(diff, hw, alternative)
    errors: list[str] = []
    lift, lift_low, lift_high = lift_interval(
        mean_a, var_mean_a, mean_b, var_mean_b,
        sequential_halfwidth(1.0, t, rho2, alpha, two_sided=two_sided), alternative,
    )
    if math.isnan(lift):
        errors.append("control mean is 0 (or too close to 0): relative lift undefined")
    p = _always_valid_p(diff, var_diff, t, rho2, alternative)
    return SequentialResult(
        control=mean_a,
        treatment=mean_b,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        lift=lift,
        lift_ci_low=lift_low,
        lift_ci_high=lift_high,
        statistic=diff / se,
        p_value=p,
        dof=None,
        significant=bool(p < alpha),
        error=join_errors(errors),
        std_error=se,
        alpha=alpha,
        alternative=alternative,
        planned_n=planned,
        rho2=rho2,
    )


def sequential_proportion_test(
    conversions_a: int,
    n_a: int,
    conversions_b: int,
    n_b: int,
    *,
    planned_n: float,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> SequentialResult:
    """Always-valid comparison of two conversion rates (unpooled Bernoulli variances).

    Parameters
    ----------
    conversions_a, n_a, conversions_b, n_b : int
        As in :func:`abcore.stats.proportion_test` (``a`` control, ``b`` treatment).
    planned_n : float
        Planned users per variant (the tuning parameter: the CS is tightest there;
        any positive value gives valid inference).
    alpha : float, default 0.05
    alternative : {"two-sided", "larger", "smaller"}

    Returns
    -------
    SequentialResult
        Same degenerate-input rules as :func:`proportion_test` (``error`` set, ``nan``).
    """
    alpha, planned = _check_params(alpha, alternative, planned_n)
    ca, na, cb, nb = (as_float(v) for v in (conversions_a, n_a, conversions_b, n_b))
    errors = _check_counts("control", ca, na) + _check_counts("treatment", cb, nb)
    rate_a = ca / na if not _check_counts("", ca, na) else NAN
    rate_b = cb / nb if not _check_counts("", cb, nb) else NAN
    if errors:
        return _failed(
            errors, control=rate_a, treatment=rate_b, alpha=alpha, alternative=alternative, planned=planned
        )
    return _core(
        rate_a,
        rate_a * (1.0 - rate_a) / na,
        na,
        rate_b,
        rate_b * (1.0 - rate_b) / nb,
        nb,
        alpha=alpha,
        alternative=alternative,
        planned=planned,
    )


def sequential_mean_test(
    mean_a: float,
    std_a: float,
    n_a: int,
    mean_b: float,
    std_b: float,
    n_b: int,
    *,
    planned_n: float,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> SequentialResult:
    """Always-valid comparison of two means (sample std per arm, as in :func:`mean_test`).

    Parameters
    ----------
    mean_a, std_a, n_a, mean_b, std_b, n_b
        As in :func:`abcore.stats.mean_test` (``a`` control, ``b`` treatment).
    planned_n : float
        Planned users per variant (tuning parameter).
    alpha : float, default 0.05
    alternative : {"two-sided", "larger", "smaller"}

    Returns
    -------
    SequentialResult
        Same degenerate-input rules as :func:`mean_test`.
    """
    alpha, planned = _check_params(alpha, alternative, planned_n)
    ma, sa, na, mb, sb, nb = (as_float(v) for v in (mean_a, std_a, n_a, mean_b, std_b, n_b))
    errors = _check_mean_arm("control", ma, sa, na) + _check_mean_arm("treatment", mb, sb, nb)
    if errors:
        return _failed(
            errors,
            control=ma if math.isfinite(ma) else NAN,
            treatment=mb if math.isfinite(mb) else NAN,
            alpha=alpha,
            alternative=alternative,
            planned=planned,
        )
    return _core(
        ma, sa * sa / na, na, mb, sb * sb / nb, nb, alpha=alpha, alternative=alternative, planned=planned
    )


def sequential_test(
    a: BinarySummary | MeanSummary,
    b: BinarySummary | MeanSummary,
    *,
    planned_n: float,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> SequentialResult:
    """Always-valid test of treatment ``b`` against control ``a`` from their summaries.

    Dispatches on the summary type: two :class:`BinarySummary` -> proportions
    (:func:`sequential_proportion_test`), two :class:`MeanSummary` -> means
    (:func:`sequential_mean_test`, sample std from the sums).

    Parameters
    ----------
    a, b : BinarySummary or MeanSummary
        Control and treatment, both of the same type.
    planned_n : float
        Planned users per variant: the confidence sequence is tightest at this size
        (Waudby-Smith et al., eq. (161) of arXiv:2103.06476); inference is valid for any value.
    alpha : float, default 0.05
    alternative : {"two-sided", "larger", "smaller"}

    Returns
    -------
    SequentialResult
        A :class:`TestResult` subclass (same fields plus ``planned_n`` and ``rho2``);
        ``significant`` is ``p_value < alpha``, equivalently the confidence sequence
        excludes 0.

    Raises
    ------
    TypeError
        ``a`` and ``b`` are not both BinarySummary or both MeanSummary.
    ValueError
        Invalid ``alpha``, ``alternative`` or ``planned_n``.

    Examples
    --------
    >>> from abcore.stats.summaries import BinarySummary
    >>> r = sequential_test(BinarySummary(5000, 500), BinarySummary(5000, 600), planned_n=10000)
    >>> r.significant, r.ci_low > 0
    (True, True)
    """
    if isinstance(a, BinarySummary) and isinstance(b, BinarySummary):
        return sequential_proportion_test(
            a.conversions, a.n, b.conversions, b.n, planned_n=planned_n, alpha=alpha, alternative=alternative
        )
    if isinstance(a, MeanSummary) and isinstance(b, MeanSummary):
        return sequential_mean_test(
            a.mean, a.std, a.n, b.mean, b.std, b.n, planned_n=planned_n, alpha=alpha, alternative=alternative
        )
    raise TypeError(
        f"sequential_test needs two BinarySummary or two MeanSummary, got {type(a).__name__}, {type(b).__name__}"
    )
