"""Private helpers shared by the statistics modules: parameter checks and distributions.

The normal and Student-t functions come from :mod:`scipy.special` (``ndtr``, ``ndtri``,
``stdtr``, ``stdtrit``): the same numerics as ``scipy.stats.norm`` / ``scipy.stats.t``
but roughly 50x cheaper per scalar call, which matters for the simulation tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from scipy import special

Alternative = Literal["two-sided", "larger", "smaller"]
ALTERNATIVES: tuple[str, ...] = ("two-sided", "larger", "smaller")
NAN = float("nan")
INF = float("inf")


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """Return ``alpha`` as float; raise ``ValueError`` unless ``0 < alpha < 1``."""
    try:
        a = float(alpha)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}") from None
    if not 0.0 < a < 1.0:
        raise ValueError(f"{name} must be in the open interval (0, 1), got {alpha!r}")
    return a


def check_alternative(alternative: str) -> str:
    """Raise ``ValueError`` unless ``alternative`` is one of ``two-sided``, ``larger``, ``smaller``."""
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, got {alternative!r}")
    return alternative


def as_float(value: object) -> float:
    """``float(value)``, or ``nan`` if that fails (bad input becomes an error result, not an exception)."""
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return NAN


def is_finite(*values: float) -> bool:
    """True if every value is a finite float."""
    return all(math.isfinite(v) for v in values)


def norm_ppf(q: float) -> float:
    """Standard normal quantile."""
    return float(special.ndtri(q))


def norm_cdf(x: float) -> float:
    """Standard normal CDF."""
    return float(special.ndtr(x))


def norm_pdf(x: float) -> float:
    """Standard normal density."""
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def t_cdf(dof: float, x: float) -> float:
    """Student-t CDF with ``dof`` degrees of freedom."""
    return float(special.stdtr(dof, x))


def t_ppf(dof: float, q: float) -> float:
    """Student-t quantile with ``dof`` degrees of freedom."""
    return float(special.stdtrit(dof, q))


def p_value_from_cdf(stat: float, cdf: Callable[[float], float], alternative: str) -> float:
    """p-value of ``stat`` under a symmetric null distribution with CDF ``cdf``.

    ``larger``: ``P(T >= stat)``; ``smaller``: ``P(T <= stat)``; two-sided: ``2 P(T >= |stat|)``.
    """
    if math.isnan(stat):
        return NAN
    if alternative == "larger":
        return cdf(-stat)
    if alternative == "smaller":
        return cdf(stat)
    return min(1.0, 2.0 * cdf(-abs(stat)))


def interval(estimate: float, se: float, crit: float, alternative: str) -> tuple[float, float]:
    """Confidence interval ``estimate +/- crit * se``; one-sided alternatives give a half-line.

    ``crit`` must already be the one- or two-sided critical value.
    """
    if math.isnan(estimate) or math.isnan(se) or math.isnan(crit):
        return NAN, NAN
    half = crit * se
    if alternative == "larger":
        return estimate - half, INF
    if alternative == "smaller":
        return -INF, estimate + half
    return estimate - half, estimate + half


def lift_and_variance(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float
) -> tuple[float, float]:
    """Relative lift ``mean_b / mean_a - 1`` and its delta-method variance.

    ``Var(mean_b / mean_a) ~= var_b / mean_a^2 + mean_b^2 var_a / mean_a^4`` where ``var_a``
    and ``var_b`` are the variances of the two (independent) means -- the first-order
    Taylor expansion used by GrowthBook's gbstats (``frequentist_variance_relative``,
    Deng et al. 2018, "Applying the Delta Method in Metric Analytics", eq. 3).
    Returns ``(nan, nan)`` when ``mean_a == 0`` or the result overflows.
    """
    if not (mean_a != 0 and is_finite(mean_a, mean_b, var_mean_a, var_mean_b)):
        return NAN, NAN
    ratio = mean_b / mean_a
    # same formula, arranged so that tiny or huge means overflow to inf instead of raising
    var = (var_mean_b + ratio * ratio * var_mean_a) / mean_a / mean_a
    if not is_finite(ratio, var):
        return NAN, NAN
    return ratio - 1.0, var


def lift_interval(
    mean_a: float, var_mean_a: float, mean_b: float, var_mean_b: float, crit: float, alternative: str,
) -> tuple[float, float, float]:
    """Relative lift ``mean_b / mean_a - 1`` and its Fieller interval ``(lift, low, high)`` at critical value
    ``crit`` (the two- or one-sided value of the caller's test: normal, Student t, or the confidence-sequence
    factor ``half-width / standard error`` of the sequential test).

    Fieller's interval (Fieller 1954, "Some problems in interval estimation", JRSS B 16, 175-185; for A/B
    lifts e.g. Kohavi, Tang & Xu 2020, *Trustworthy Online Controlled Experiments*, ch. 18) is the set of
    ratios ``r`` that the test of ``mean_b - r mean_a = 0`` does not reject:
    ``(mean_b - r mean_a)^2 <= crit^2 (var_b + r^2 var_a)``, a quadratic
    ``A r^2 - 2 mean_a mean_b r + (mean_b^2 - crit^2 var_b) <= 0`` with ``A = mean_a^2 - crit^2 var_a``, so
    ``r = (mean_a mean_b -/+ crit sqrt(mean_a^2 var_b + mean_b^2 var_a - crit^2 var_a var_b)) / A``.
    At ``r = 1`` the condition is the test of the difference itself (``|diff| / sqrt(var_a + var_b) <= crit``),
    so the lift interval excludes 0 exactly when that test rejects at ``crit``: it never vetoes a decisive
    result, unlike the linear delta-method interval ``lift -/+ crit sqrt(var_lift)``
    (:func:`lift_and_variance`), which covers 0 for a 5 % -> 60 % error rate when the control rate is
    small and the sequential boundary wide. One-sided ``alternative`` gives a half-line (``larger``:
    ``(low, inf)``, ``smaller``: ``(-inf, high)``). When the control mean is not distinguishable from 0 at
    this level (``A <= 0``) the set of ratios is unbounded: ``(-inf, inf)`` (the difference interval then
    speaks, see :func:`abcore.analysis.verdict.displayed_interval`). ``(nan, nan, nan)`` when
    ``mean_a == 0`` or the input is not finite.
    """
    lift, _var = lift_and_variance(mean_a, var_mean_a, mean_b, var_mean_b)
    if math.isnan(lift) or not is_finite(crit):
        return NAN, NAN, NAN
    c2 = crit * crit
    a = mean_a * mean_a - c2 * var_mean_a
    disc = mean_a * mean_a * var_mean_b + mean_b * mean_b * var_mean_a - c2 * var_mean_a * var_mean_b
    if not (a > 0 and disc >= 0 and is_finite(a, disc)):
        return lift, -INF, INF
    root = crit * math.sqrt(disc)
    low, high = (mean_a * mean_b - root) / a - 1.0, (mean_a * mean_b + root) / a - 1.0
    if alternative == "larger":
        return lift, low, INF
    if alternative == "smaller":
        return lift, -INF, high
    return lift, low, high


def join_errors(errors: list[str]) -> str | None:
    """``None`` if there are no messages, otherwise the messages joined with ``"; "``."""
    return "; ".join(errors) if errors else None
