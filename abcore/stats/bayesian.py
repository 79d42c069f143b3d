"""Bayesian summaries: chance to beat control, expected loss, credible interval of the lift.

Everything is closed form (fast and deterministic), following GrowthBook's gbstats
Bayesian engine: the posterior of each arm's mean is summarised by its mean and
variance, and the difference ``D = treatment - control`` is approximated as normal,
``D ~ N(mu, s^2)``. Then

* chance to beat control ``= P(D > 0) = Phi(mu / s)``;
* expected loss of shipping the treatment ``= E[max(-D, 0)] = s phi(mu/s) - mu Phi(-mu/s)``
  (and of keeping the control ``= E[max(D, 0)] = s phi(mu/s) + mu Phi(mu/s)``), the
  "risk" of Stucchio (2015), "Bayesian A/B Testing at VWO", section 3, here in closed
  form for the normal approximation;
* the relative lift ``treatment / control - 1``: when both posterior means are positive,
  ``log(m_b / m_a)`` is taken as normal with delta-method variance ``v_b / m_b^2 +
  v_a / m_a^2`` (a log-normal ratio, as in earlier gbstats versions), which keeps the
  right skew of a ratio -- the symmetric interval on the ratio itself can include 0 while
  the chance to beat control is above 97.5 %; otherwise the symmetric delta-method
  interval ``var_b / m_a^2 + m_b^2 var_a / m_a^4`` (Deng et al. 2018) is used.

Proportions: independent ``Beta(1 + c, 1 + n - c)`` posteriors (uniform ``Beta(1, 1)``
priors, configurable), whose means and variances feed the normal approximation. The
approximation is good once each arm has about 10 conversions and 10 non-conversions;
the exact ``P(B > A)`` for Beta posteriors (Evan Miller, "Formulas for Bayesian A/B
Testing") costs O(conversions) and is impractical at 10^8 users.

Means: flat prior, so each mean's posterior is ``N(mean, std^2 / n)`` (the large-sample
normal approximation; gbstats does the same without an informative prior).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._common import NAN, as_float, is_finite, join_errors, lift_and_variance, norm_cdf, norm_pdf, norm_ppf
from .frequentist import _check_counts, _check_mean_arm
from .summaries import BinarySummary, MeanSummary

__all__ = [
    "BayesResult",
    "bayes_mean",
    "bayes_mean_from",
    "bayes_proportion",
    "bayes_proportion_from",
]


@dataclass(frozen=True)
class BayesResult:
    """Posterior summaries of treatment ``b`` versus control ``a``.

    Attributes
    ----------
    chance_to_beat_control : float
        ``P(treatment mean > control mean | data)``.
    expected_loss : float
        Expected loss of choosing the treatment, ``E[max(control - treatment, 0)]``, in
        the metric's absolute units.
    lift_ci_low, lift_ci_high : float
        Equal-tailed credible interval of the relative lift at ``credible_level``.
    lift : float
        Posterior mean of the relative lift (first order: ``m_b / m_a - 1``).
    expected_loss_control : float
        Expected loss of keeping the control, ``E[max(treatment - control, 0)]``.
    diff, diff_ci_low, diff_ci_high : float
        Posterior mean and credible interval of ``treatment - control``.
    control, treatment : float
        Posterior means of the two arms.
    credible_level : float
        Level of the credible intervals.
    error : str or None
        Message when the input is degenerate; undefined fields are ``nan``.
    """

    chance_to_beat_control: float
    expected_loss: float
    lift_ci_low: float
    lift_ci_high: float
    lift: float = NAN
    expected_loss_control: float = NAN
    diff: float = NAN
    diff_ci_low: float = NAN
    diff_ci_high: float = NAN
    control: float = NAN
    treatment: float = NAN
    credible_level: float = 0.95
    error: str | None = None


def _check_level(credible_level: float) -> float:
    try:
        level = float(credible_level)
    except (TypeError, ValueError):
        raise ValueError(f"credible_level must be in (0, 1), got {credible_level!r}") from None
    if not 0.0 < level < 1.0:
        raise ValueError(f"credible_level must be in (0, 1), got {credible_level!r}")
    return level


def _failed(errors: list[str], level: float, control: float = NAN, treatment: float = NAN) -> BayesResult:
    return BayesResult(
        chance_to_beat_control=NAN,
        expected_loss=NAN,
        lift_ci_low=NAN,
        lift_ci_high=NAN,
        control=control,
        treatment=treatment,
        diff=treatment - control,
        credible_level=level,
        error=join_errors(errors),
    )


def _normal_posterior(m_a: float, v_a: float, m_b: float, v_b: float, level: float) -> BayesResult:
    mu = m_b - m_a
    s = math.sqrt(v_a + v_b)
    if not s > 0:
        return _failed(["zero posterior variance: both arms have no spread"], level, m_a, m_b)
    z = mu / s
    chance = norm_cdf(z)
    dens = s * norm_pdf(z)
    loss_treatment = max(0.0, dens - mu * norm_cdf(-z))
    loss_control = max(0.0, dens + mu * norm_cdf(z))
    crit = norm_ppf(0.5 + level / 2.0)
    errors: list[str] = []
    lift, var_lift = lift_and_variance(m_a, v_a, m_b, v_b)
    if math.isnan(lift):
        errors.append("control mean is 0 (or too close to 0): relative lift undefined")
        lift_low = lift_high = NAN
    elif m_a > 0 and m_b > 0:
        # log-normal approximation of the ratio: log(m_b / m_a) with delta-method variance
        # v_b / m_b^2 + v_a / m_a^2; keeps the skew of a ratio (checked against Monte Carlo)
        log_ratio = math.log(m_b) - math.log(m_a)
        half = crit * math.sqrt(v_b / m_b / m_b + v_a / m_a / m_a)
        lift_low, lift_high = _expm1(log_ratio - half), _expm1(log_ratio + half)
    else:
        half = crit * math.sqrt(var_lift)
        lift_low, lift_high = lift - half, lift + half
    return BayesResult(
        chance_to_beat_control=chance,
        expected_loss=loss_treatment,
        lift_ci_low=lift_low,
        lift_ci_high=lift_high,
        lift=lift,
        expected_loss_control=loss_control,
        diff=mu,
        diff_ci_low=mu - crit * s,
        diff_ci_high=mu + crit * s,
        control=m_a,
        treatment=m_b,
        credible_level=level,
        error=join_errors(errors),
    )


def _expm1(x: float) -> float:
    """``exp(x) - 1`` that returns ``inf`` instead of raising ``OverflowError``."""
    return math.expm1(x) if x < 700.0 else math.inf


def _beta_moments(a: float, b: float) -> tuple[float, float]:
    total = a + b
    return a / total, a * b / (total * total * (total + 1.0))


def bayes_proportion(
    conversions_a: int,
    n_a: int,
    conversions_b: int,
    n_b: int,
    *,
    credible_level: float = 0.95,
    prior_alpha: float = 1.0,
    prior_beta: float = 1.0,
) -> BayesResult:
    """Bayesian comparison of two conversion rates with Beta priors.

    Parameters
    ----------
    conversions_a, n_a : int
        Converted users and users in the control.
    conversions_b, n_b : int
        Converted users and users in the treatment.
    credible_level : float, default 0.95
        Level of the lift and diff credible intervals.
    prior_alpha, prior_beta : float, default 1.0
        ``Beta(prior_alpha, prior_beta)`` prior for each rate (default uniform).

    Returns
    -------
    BayesResult
        Posterior ``Beta(prior_alpha + c, prior_beta + n - c)`` per arm, combined by the
        normal approximation described in the module docstring; ``control`` and
        ``treatment`` are posterior means. With the prior every quantity is defined
        even for 0 % or 100 % in both arms (the chance to beat control is then about
        0.5 and the interval wide). ``error`` is set for fewer than 2 users in an arm,
        negative or non-finite counts, or ``conversions > n``.

    Raises
    ------
    ValueError
        ``credible_level`` outside (0, 1) or non-positive prior parameters.

    Examples
    --------
    >>> r = bayes_proportion(100, 1000, 130, 1000)
    >>> round(r.chance_to_beat_control, 3)
    0.982
    """
    level = _check_level(credible_level)
    pa, pb = float(prior_alpha), float(prior_beta)
    if not (math.isfinite(pa) and math.isfinite(pb) and pa > 0 and pb > 0):
        raise ValueError(f"prior parameters must be positive, got {prior_alpha!r}, {prior_beta!r}")
    ca, na, cb, nb = (as_float(v) for v in (conversions_a, n_a, conversions_b, n_b))
    errors = _check_counts("control", ca, na) + _check_counts("treatment", cb, nb)
    if errors:
        return _failed(errors, level)
    m_a, v_a = _beta_moments(pa + ca, pb + na - ca)
    m_b, v_b = _beta_moments(pa + cb, pb + nb - cb)
    return _normal_posterior(m_a, v_a, m_b, v_b, level)


def bayes_proportion_from(a: BinarySummary, b: BinarySummary, *, credible_level: float = 0.95) -> BayesResult:
    """:func:`bayes_proportion` on two :class:`BinarySummary` objects (``a`` control)."""
    return bayes_proportion(a.conversions, a.n, b.conversions, b.n, credible_level=credible_level)


def bayes_mean(
    mean_a: float,
    std_a: float,
    n_a: int,
    mean_b: float,
    std_b: float,
    n_b: int,
    *,
    credible_level: float = 0.95,
) -> BayesResult:
    """Bayesian comparison of two means (flat prior, normal posteriors).

    Parameters
    ----------
    mean_a, std_a, n_a : float, float, int
        Mean, sample standard deviation and users of the control.
    mean_b, std_b, n_b : float, float, int
        The same for the treatment.
    credible_level : float, default 0.95

    Returns
    -------
    BayesResult
        Each mean's posterior is ``N(mean, std^2 / n)``. ``error`` is set for fewer
        than 2 users, negative or non-finite input, zero variance in both arms, or a
        control mean of 0 (lift fields only).

    Examples
    --------
    >>> r = bayes_mean(10.0, 2.0, 500, 10.3, 2.0, 500)
    >>> round(r.chance_to_beat_control, 3)
    0.991
    """
    level = _check_level(credible_level)
    ma, sa, na, mb, sb, nb = (as_float(v) for v in (mean_a, std_a, n_a, mean_b, std_b, n_b))
    errors = _check_mean_arm("control", ma, sa, na) + _check_mean_arm("treatment", mb, sb, nb)
    if errors:
        return _failed(errors, level, ma if math.isfinite(ma) else NAN, mb if math.isfinite(mb) else NAN)
    if not is_finite(sa * sa / na, sb * sb / nb):
        return _failed(["variance overflow"], level, ma, mb)
    return _normal_posterior(ma, sa * sa / na, mb, sb * sb / nb, level)


def bayes_mean_from(a: MeanSummary, b: MeanSummary, *, credible_level: float = 0.95) -> BayesResult:
    """:func:`bayes_mean` on two :class:`MeanSummary` objects (``a`` control)."""
    return bayes_mean(a.mean, a.std, a.n, b.mean, b.std, b.n, credible_level=credible_level)
