"""Fixed-horizon frequentist tests: two-proportion z-test and Welch's t-test.

Conventions (shared by every test in :mod:`abcore.stats`)
---------------------------------------------------------
* ``a`` is the control, ``b`` the treatment; ``diff = treatment - control`` and
  ``lift = treatment / control - 1``.
* ``alternative`` is ``"two-sided"``, ``"larger"`` (treatment > control) or ``"smaller"``
  (treatment < control). One-sided alternatives give one-sided intervals (an infinite
  end), so the interval excludes 0 exactly when ``p_value < alpha``.
* Degenerate data (too few users, zero variance, impossible counts, NaN) never raise:
  the result carries a message in ``error`` and ``nan`` where a number is undefined.
  Invalid *parameters* (``alpha`` outside (0, 1), unknown ``alternative``) raise
  ``ValueError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import (
    NAN,
    as_float,
    check_alpha,
    check_alternative,
    interval,
    is_finite,
    join_errors,
    lift_interval,
    norm_cdf,
    norm_ppf,
    p_value_from_cdf,
    t_cdf,
    t_ppf,
)
from .summaries import BinarySummary, MeanSummary

__all__ = [
    "TestResult",
    "mean_test",
    "mean_test_from",
    "proportion_test",
    "proportion_test_from",
    "proportion_variances",
]


@dataclass(frozen=True)
class TestResult:
    """Result of a two-sample comparison (control ``a`` vs treatment ``b``).

    Attributes
    ----------
    control, treatment : float
        Estimated mean (rate for proportions) of each arm.
    diff : float
        ``treatment - control``.
    ci_low, ci_high : float
        Confidence interval of ``diff`` at level ``1 - alpha``; one-sided alternatives
        give ``(ci_low, inf)`` (``larger``) or ``(-inf, ci_high)`` (``smaller``).
    lift : float
        Relative lift ``treatment / control - 1`` (``nan`` if the control mean is 0).
    lift_ci_low, lift_ci_high : float
        Delta-method confidence interval of ``lift`` (same sidedness as the diff CI).
    statistic : float
        z (proportions) or t (Welch) statistic of ``diff``.
    p_value : float
        p-value for ``alternative``.
    dof : float or None
        Welch-Satterthwaite degrees of freedom; ``None`` for z-tests.
    significant : bool
        ``p_value < alpha`` (``False`` whenever ``p_value`` is ``nan``).
    error : str or None
        ``None`` when every field is defined, otherwise a human-readable message
        explaining which fields are ``nan`` and why.
    std_error : float
        Standard error of ``diff`` used for the interval.
    alpha : float
        Significance level used.
    alternative : str
        Alternative used.
    """

    __test__ = False  # not a pytest test class despite the name

    control: float
    treatment: float
    diff: float
    ci_low: float
    ci_high: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    statistic: float
    p_value: float
    dof: float | None
    significant: bool
    error: str | None = None
    std_error: float = NAN
    alpha: float = 0.05
    alternative: str = "two-sided"


def _critical(alpha: float, alternative: str, dof: float | None = None) -> float:
    """Positive critical value: ``alpha/2`` upper quantile two-sided, ``alpha`` one-sided."""
    tail = alpha / 2.0 if alternative == "two-sided" else alpha
    if dof is None:
        return -norm_ppf(tail)
    return -t_ppf(dof, tail)


def _failed(
    errors: list[str],
    *,
    control: float = NAN,
    treatment: float = NAN,
    alpha: float,
    alternative: str,
    z_test: bool,
) -> TestResult:
    diff = treatment - control
    return TestResult(
        control=control,
        treatment=treatment,
        diff=diff,
        ci_low=NAN,
        ci_high=NAN,
        lift=(treatment / control - 1.0) if (control != 0 and is_finite(control, treatment)) else NAN,
        lift_ci_low=NAN,
        lift_ci_high=NAN,
        statistic=NAN,
        p_value=NAN,
        dof=None if z_test else NAN,
        significant=False,
        error=join_errors(errors),
        std_error=NAN,
        alpha=alpha,
        alternative=alternative,
    )


def _assemble(
    *,
    mean_a: float,
    var_mean_a: float,
    mean_b: float,
    var_mean_b: float,
    statistic: float,
    p_value: float,
    dof: float | None,
    crit: float,
    alpha: float,
    alternative: str,
    errors: list[str],
) -> TestResult:
    """Build a :class:`TestResult` from the two means and the variances of the means."""
    diff = mean_b - mean_a
    se = math.sqrt(var_mean_a + var_mean_b)
    ci_low, ci_high = interval(diff, se, crit, alternative)
    lift, lift_low, lift_high = lift_interval(
        mean_a, var_mean_a, mean_b, var_mean_b, crit, alternative
    )
    if math.isnan(lift):
        errors = [*errors, "control mean is 0 (or too close to 0): relative lift undefined"]
    return TestResult(
        control=mean_a,
        treatment=mean_b,
        diff=diff,
        ci_low=ci_low,
        ci_high=ci_high,
        lift=lift,
        lift_ci_low=lift_low,
        lift_ci_high=lift_high,
        statistic=statistic,
        p_value=p_value,
        dof=dof,
        significant=bool(p_value < alpha),
        error=join_errors(errors),
        std_error=se,
        alpha=alpha,
        alternative=alternative,
    )


def _observed_rate(conversions: float, n: float) -> float:
    """``conversions / n`` whenever the counts are valid and ``n >= 1`` (even below the test's 2 users), else nan."""
    if not is_finite(conversions, n) or n < 1 or conversions < 0 or conversions > n:
        return NAN
    return conversions / n


def _check_counts(label: str, conversions: float, n: float, minimum: float = 2) -> list[str]:
    """The problems of one arm's counts (``minimum`` users needed: 2 for the sequential test, 1 for the z-test)."""
    if not is_finite(conversions, n):
        return [f"{label}: counts must be finite numbers (got conversions={conversions}, n={n})"]
    if n < 0 or conversions < 0:
        return [f"{label}: counts must be non-negative (got conversions={conversions:g}, n={n:g})"]
    if conversions > n:
        return [f"{label}: conversions ({conversions:g}) exceed users ({n:g})"]
    if n < minimum:
        return [f"{label}: needs at least {minimum:g} user{'s' if minimum != 1 else ''} (got {n:g})"]
    return []


def proportion_test(
    conversions_a: int,
    n_a: int,
    conversions_b: int,
    n_b: int,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    pooled: bool = False,
) -> TestResult:
    """Two-proportion z-test of treatment ``b`` against control ``a``.

    Parameters
    ----------
    conversions_a, n_a : int
        Converted users and users in the control.
    conversions_b, n_b : int
        Converted users and users in the treatment.
    alpha : float, default 0.05
        Significance level, in (0, 1).
    alternative : {"two-sided", "larger", "smaller"}
        ``larger``: H1 is treatment rate > control rate.
    pooled : bool, default False
        ``False`` (default): the statistic, the p-value and the interval use the same
        variance (so the interval excludes 0 exactly when ``p < alpha``): the unpooled (Wald)
        variance ``p_a (1-p_a)/n_a + p_b (1-p_b)/n_b`` (statsmodels
        ``test_proportions_2indep(method="wald")``) whenever it is positive, otherwise the
        pooled one (see :func:`proportion_variances`).
        ``True``: the statistic and p-value use the pooled variance
        ``p (1-p) (1/n_a + 1/n_b)``, ``p = (c_a + c_b) / (n_a + n_b)``, i.e. the classic
        test of statsmodels ``proportions_ztest``; the interval stays as above (so the two
        may disagree near the threshold).

    Returns
    -------
    TestResult
        ``dof`` is ``None``. The interval of ``diff`` is the Wald interval
        (statsmodels ``confint_proportions_2indep(method="wald")`` for two-sided);
        the lift interval is :func:`abcore.stats._common.lift_interval` with the same
        critical value. ``error`` is set (and undefined fields are ``nan``) for an arm
        without users, negative or non-finite counts, ``conversions > n``, no variation at
        all (0 % in both arms or 100 % in both arms), or a control rate of 0 (lift only).
        Each arm needs one user: 0/1 against 1/1 gives ``diff = 1.0`` and the pooled test's
        ``p = 0.157`` (the Wald variance of those two users is 0, which would claim a
        certain difference; the pooled one is not).

    Examples
    --------
    >>> r = proportion_test(100, 1000, 130, 1000)
    >>> round(r.diff, 3), round(r.p_value, 4)
    (0.03, 0.0353)
    """
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ca, na, cb, nb = (as_float(v) for v in (conversions_a, n_a, conversions_b, n_b))
    errors = _check_counts("control", ca, na, 1) + _check_counts("treatment", cb, nb, 1)
    rate_a, rate_b = _observed_rate(ca, na), _observed_rate(cb, nb)
    if errors:
        return _failed(errors, control=rate_a, treatment=rate_b, alpha=alpha, alternative=alternative, z_test=True)
    var_a, var_b = proportion_variances(ca, na, cb, nb)
    se = math.sqrt(var_a + var_b)
    se_test = _pooled_std_error(ca, na, cb, nb) if pooled else se
    if not (se > 0 and se_test > 0):
        zero = ["zero variance: every user of both arms has the same outcome (0 % or 100 %)"]
        return _failed(zero, control=rate_a, treatment=rate_b, alpha=alpha, alternative=alternative, z_test=True)
    z = (rate_b - rate_a) / se_test
    return _assemble(
        mean_a=rate_a, var_mean_a=var_a, mean_b=rate_b, var_mean_b=var_b,
        statistic=z, p_value=p_value_from_cdf(z, norm_cdf, alternative), dof=None,
        crit=_critical(alpha, alternative), alpha=alpha, alternative=alternative, errors=[],
    )


def proportion_variances(ca: float, na: float, cb: float, nb: float) -> tuple[float, float]:
    """The variances of the two observed rates that the z-test and its interval use.

    The unpooled (Wald) ``p_a (1-p_a) / n_a`` and ``p_b (1-p_b) / n_b`` when their sum is positive.
    When it is 0 (every arm at 0 % or 100 %, e.g. 0/1 against 1/1 or 0/50 against 50/50) the Wald
    variance claims a certain difference from data that may be two users; then the variances are
    the pooled ``p (1-p) / n_a`` and ``p (1-p) / n_b`` with ``p = (c_a + c_b) / (n_a + n_b)``, the
    variance of statsmodels ``proportions_ztest`` (its default; Agresti, *Categorical Data
    Analysis*, 3rd ed., section 3.1.6), which is positive unless both arms share one rate (no
    variation at all: both sums 0). Counts must be valid with ``n >= 1`` per arm.
    """
    rate_a, rate_b = ca / na, cb / nb
    var_a, var_b = rate_a * (1.0 - rate_a) / na, rate_b * (1.0 - rate_b) / nb
    if var_a + var_b > 0:
        return var_a, var_b
    p = (ca + cb) / (na + nb)
    return p * (1.0 - p) / na, p * (1.0 - p) / nb


def _pooled_std_error(ca: float, na: float, cb: float, nb: float) -> float:
    """Standard error of the difference under H0 (one pooled rate): ``sqrt(p (1-p) (1/n_a + 1/n_b))``."""
    p = (ca + cb) / (na + nb)
    return math.sqrt(p * (1.0 - p) * (1.0 / na + 1.0 / nb))


def proportion_test_from(
    a: BinarySummary,
    b: BinarySummary,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    pooled: bool = False,
) -> TestResult:
    """:func:`proportion_test` on two :class:`BinarySummary` objects (``a`` control, ``b`` treatment)."""
    return proportion_test(
        a.conversions, a.n, b.conversions, b.n, alpha=alpha, alternative=alternative, pooled=pooled
    )


def _check_mean_arm(label: str, mean: float, std: float, n: float) -> list[str]:
    if math.isfinite(n) and n < 2:
        return [f"{label}: needs at least 2 users (got {n:g})"]
    if not is_finite(mean, std, n):
        return [f"{label}: mean, std and n must be finite (got mean={mean}, std={std}, n={n})"]
    if std < 0:
        return [f"{label}: std must be non-negative (got {std:g})"]
    return []


def welch_dof(var_a: float, n_a: float, var_b: float, n_b: float) -> float:
    """Welch-Satterthwaite degrees of freedom.

    ``(v_a/n_a + v_b/n_b)^2 / ((v_a/n_a)^2/(n_a-1) + (v_b/n_b)^2/(n_b-1))``
    (Welch 1947, Satterthwaite 1946), with ``v`` the sample variances.
    """
    qa, qb = var_a / n_a, var_b / n_b
    # written with the share w = qa / (qa + qb) so that tiny or huge variances neither
    # underflow to 0 / 0 nor overflow: dof = 1 / (w^2 / (n_a - 1) + (1 - w)^2 / (n_b - 1))
    if not (qa + qb > 0):
        return math.nan
    w = qa / (qa + qb)
    return 1.0 / (w * w / (n_a - 1.0) + (1.0 - w) * (1.0 - w) / (n_b - 1.0))


def mean_test(
    mean_a: float,
    std_a: float,
    n_a: int,
    mean_b: float,
    std_b: float,
    n_b: int,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> TestResult:
    """Welch's unequal-variance t-test of treatment ``b`` against control ``a``.

    Parameters
    ----------
    mean_a, std_a, n_a : float, float, int
        Mean, *sample* standard deviation (divisor ``n - 1``) and users of the control.
    mean_b, std_b, n_b : float, float, int
        The same for the treatment.
    alpha : float, default 0.05
        Significance level, in (0, 1).
    alternative : {"two-sided", "larger", "smaller"}
        ``larger``: H1 is treatment mean > control mean.

    Returns
    -------
    TestResult
        ``statistic`` is ``t = diff / sqrt(s_a^2/n_a + s_b^2/n_b)`` and ``dof`` the
        Welch-Satterthwaite degrees of freedom (:func:`welch_dof`); the p-value is
        that of ``scipy.stats.ttest_ind_from_stats(..., equal_var=False)``. The
        interval of ``diff`` is ``diff +/- t_{dof} * se`` (one-sided for one-sided
        alternatives); the lift interval is the delta-method interval with the same
        critical value. ``error`` is set for fewer than 2 users in an arm, negative
        or non-finite inputs, zero variance in both arms, or a control mean of 0
        (lift fields only).

    Examples
    --------
    >>> r = mean_test(10.0, 2.0, 50, 11.0, 3.0, 60)
    >>> round(r.statistic, 4), round(r.dof, 2)
    (2.0851, 103.33)
    """
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ma, sa, na, mb, sb, nb = (as_float(v) for v in (mean_a, std_a, n_a, mean_b, std_b, n_b))
    errors = _check_mean_arm("control", ma, sa, na) + _check_mean_arm("treatment", mb, sb, nb)
    if errors:
        control, treatment = (ma if math.isfinite(ma) else NAN), (mb if math.isfinite(mb) else NAN)
        return _failed(
            errors, control=control, treatment=treatment, alpha=alpha, alternative=alternative, z_test=False
        )
    var_a, var_b = sa * sa / na, sb * sb / nb
    se = math.sqrt(var_a + var_b)
    if not math.isfinite(se) or not se > 0:
        problem = (
            "variance overflows a float" if not math.isfinite(se) else "zero variance: both arms have standard deviation 0"
        )
        return _failed([problem], control=ma, treatment=mb, alpha=alpha, alternative=alternative, z_test=False)
    dof = welch_dof(sa * sa, na, sb * sb, nb)
    t = (mb - ma) / se
    return _assemble(
        mean_a=ma, var_mean_a=var_a, mean_b=mb, var_mean_b=var_b,
        statistic=t, p_value=p_value_from_cdf(t, lambda x: t_cdf(dof, x), alternative), dof=dof,
        crit=_critical(alpha, alternative, dof), alpha=alpha, alternative=alternative, errors=[],
    )


def mean_test_from(
    a: MeanSummary,
    b: MeanSummary,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
) -> TestResult:
    """:func:`mean_test` on two :class:`MeanSummary` objects (``a`` control, ``b`` treatment)."""
    return mean_test(a.mean, a.std, a.n, b.mean, b.std, b.n, alpha=alpha, alternative=alternative)
