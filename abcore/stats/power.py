"""Sample size and power for two-arm tests (normal approximation).

Proportions follow R ``power.prop.test`` (with its default ``strict = FALSE``) and
statsmodels ``samplesize_proportions_2indep_onetail``: the variance of the difference is
the *pooled* one under H0 and the *unpooled* one under H1, and a two-sided test counts
only the tail in the direction of the effect (the far tail is negligible). Means use the
two-sample normal approximation of statsmodels ``normal_sample_size_one_tail`` (equal to
``NormalIndPower().solve_power`` up to that same far tail).

``ratio`` is ``n_treatment / n_control``; every function works in users of the
**control** arm; the treatment arm needs ``ceil(ratio * n_control)``.
"""

from __future__ import annotations

import math

from ._common import check_alpha, check_alternative, norm_cdf, norm_ppf

__all__ = [
    "power_mean",
    "power_proportion",
    "sample_size_mean",
    "sample_size_mean_float",
    "sample_size_proportion",
    "sample_size_proportion_float",
]


def _tail_alpha(alpha: float, alternative: str) -> float:
    return alpha / 2.0 if alternative == "two-sided" else alpha


def _check_ratio(ratio: float) -> float:
    r = float(ratio)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"ratio (n_treatment / n_control) must be a positive number, got {ratio!r}")
    return r


def _check_power(power: float, tail_alpha: float) -> float:
    p = float(power)
    if not tail_alpha < p < 1.0:
        raise ValueError(f"power must be in (alpha, 1), got {power!r}")
    return p


def _treatment_rate(baseline: float, mde: float, relative: bool) -> tuple[float, float]:
    p1 = float(baseline)
    if not 0.0 < p1 < 1.0:
        raise ValueError(f"baseline must be a rate in (0, 1), got {baseline!r}")
    if not math.isfinite(float(mde)):
        raise ValueError(f"mde must be finite, got {mde!r}")
    p2 = p1 * (1.0 + mde) if relative else p1 + mde
    if not 0.0 < p2 < 1.0:
        raise ValueError(
            f"treatment rate baseline {'* (1 + mde)' if relative else '+ mde'} = {p2!r} is not in (0, 1)"
        )
    return p1, p2


def _check_direction(delta: float, alternative: str) -> None:
    if delta == 0:
        raise ValueError("mde must be non-zero")
    if alternative == "larger" and delta < 0:
        raise ValueError("alternative='larger' needs a positive mde")
    if alternative == "smaller" and delta > 0:
        raise ValueError("alternative='smaller' needs a negative mde")


def _prop_sds(p1: float, p2: float, ratio: float) -> tuple[float, float]:
    """Per-unit sd of the difference under H0 (pooled rate) and H1 (unpooled), control-arm units."""
    pbar = (p1 + ratio * p2) / (1.0 + ratio)
    sd0 = math.sqrt(pbar * (1.0 - pbar) * (1.0 + 1.0 / ratio))
    sd1 = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2) / ratio)
    return sd0, sd1


def _ceil(n: float) -> int:
    # absorb floating-point noise such as 3841.0000000000005 from an exact 3841
    return max(1, math.ceil(n - 1e-9 * max(1.0, n)))


def sample_size_proportion_float(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Unrounded control-arm sample size behind :func:`sample_size_proportion`."""
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ratio = _check_ratio(ratio)
    tail = _tail_alpha(alpha, alternative)
    power = _check_power(power, tail)
    p1, p2 = _treatment_rate(baseline, mde, relative)
    delta = p2 - p1
    _check_direction(delta, alternative)
    sd0, sd1 = _prop_sds(p1, p2, ratio)
    return ((-norm_ppf(tail) * sd0 + norm_ppf(power) * sd1) / delta) ** 2


def sample_size_proportion(
    baseline: float,
    mde: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> int:
    """Users needed in the **control** arm to detect ``mde`` on a conversion rate.

    ``n = ((z_{1-a} sd0 + z_{power} sd1) / delta)^2`` rounded up, with ``a = alpha/2``
    two-sided (``alpha`` one-sided), ``sd0^2 = pbar (1 - pbar) (1 + 1/ratio)`` (pooled
    ``pbar = (p1 + ratio p2) / (1 + ratio)``) and ``sd1^2 = p1 q1 + p2 q2 / ratio``
    (Fleiss, Levin & Paik 2003, eq. 4.14; R ``power.prop.test``; statsmodels
    ``samplesize_proportions_2indep_onetail``).

    Parameters
    ----------
    baseline : float
        Control conversion rate ``p1`` in (0, 1).
    mde : float
        Minimum detectable effect: absolute (``p2 = baseline + mde``) or, with
        ``relative=True``, relative (``p2 = baseline * (1 + mde)``).
    alpha : float, default 0.05
    power : float, default 0.8
    alternative : {"two-sided", "larger", "smaller"}
        One-sided designs need ``mde`` of the matching sign.
    ratio : float, default 1.0
        ``n_treatment / n_control``.

    Returns
    -------
    int
        Control-arm users (``ceil``); the treatment arm needs ``ceil(ratio * n)``.

    Raises
    ------
    ValueError
        Rates outside (0, 1), ``mde == 0`` or of the wrong sign for a one-sided
        design, ``power`` not in (alpha, 1), non-positive ``ratio``, invalid ``alpha``
        or ``alternative``.

    Examples
    --------
    >>> sample_size_proportion(0.1, 0.02)  # R: power.prop.test(p1=.1, p2=.12, power=.8) -> 3840.847
    3841
    """
    return _ceil(
        sample_size_proportion_float(
            baseline, mde, relative=relative, alpha=alpha, power=power, alternative=alternative, ratio=ratio
        )
    )


def power_proportion(
    baseline: float,
    mde: float,
    n_per_variant: float,
    *,
    relative: bool = False,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Power of the two-proportion z-test with ``n_per_variant`` control users.

    ``power = Phi((s delta sqrt(n) - z_{1-a} sd0) / sd1)`` with ``s = sign(delta)``
    two-sided, ``+1`` for ``larger``, ``-1`` for ``smaller`` and ``sd0``, ``sd1`` as in
    :func:`sample_size_proportion` (R ``power.prop.test(n=, p1=, p2=)``, ``strict =
    FALSE``). The treatment arm has ``ratio * n_per_variant`` users (default equal).
    ``mde = 0`` gives the size of the test (``alpha`` one-sided, ``alpha/2`` counted
    two-sided because the far tail is ignored).

    Examples
    --------
    >>> round(power_proportion(0.1, 0.02, 3841), 4)
    0.8
    """
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ratio = _check_ratio(ratio)
    n = float(n_per_variant)
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"n_per_variant must be positive, got {n_per_variant!r}")
    p1, p2 = _treatment_rate(baseline, mde, relative)
    delta = p2 - p1
    sd0, sd1 = _prop_sds(p1, p2, ratio)
    sign = {"two-sided": 1.0 if delta >= 0 else -1.0, "larger": 1.0, "smaller": -1.0}[alternative]
    crit = -norm_ppf(_tail_alpha(alpha, alternative))
    return norm_cdf((sign * delta * math.sqrt(n) - crit * sd0) / sd1)


def sample_size_mean_float(
    std: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Unrounded control-arm sample size behind :func:`sample_size_mean`."""
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ratio = _check_ratio(ratio)
    tail = _tail_alpha(alpha, alternative)
    power = _check_power(power, tail)
    sd = float(std)
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"std must be positive, got {std!r}")
    delta = float(mde)
    if not math.isfinite(delta):
        raise ValueError(f"mde must be finite, got {mde!r}")
    _check_direction(delta, alternative)
    return ((-norm_ppf(tail) + norm_ppf(power)) * sd / delta) ** 2 * (1.0 + 1.0 / ratio)


def sample_size_mean(
    std: float,
    mde: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> int:
    """Users needed in the **control** arm to detect an absolute difference ``mde`` in means.

    Two-sample normal approximation with a common per-user ``std`` in both arms:
    ``n = (z_{1-a} + z_{power})^2 std^2 (1 + 1/ratio) / mde^2`` rounded up, ``a = alpha/2``
    two-sided. This is statsmodels ``normal_sample_size_one_tail`` and, up to the
    negligible far tail of a two-sided test, ``NormalIndPower().solve_power(
    effect_size=mde/std, alpha=alpha, power=power, ratio=ratio, alternative=...)``. (The
    t-based ``TTestIndPower`` asks for about 1-2 more users; at A/B-test sizes the
    difference is immaterial.)

    Returns
    -------
    int
        Control-arm users; the treatment arm needs ``ceil(ratio * n)``.

    Raises
    ------
    ValueError
        ``std <= 0``, ``mde == 0`` or of the wrong sign for a one-sided design,
        ``power`` not in (alpha, 1), non-positive ``ratio``, invalid ``alpha`` or
        ``alternative``.

    Examples
    --------
    >>> sample_size_mean(1.0, 0.1)
    1570
    """
    return _ceil(
        sample_size_mean_float(std, mde, alpha=alpha, power=power, alternative=alternative, ratio=ratio)
    )


def power_mean(
    std: float,
    mde: float,
    n_per_variant: float,
    *,
    alpha: float = 0.05,
    alternative: str = "two-sided",
    ratio: float = 1.0,
) -> float:
    """Power of the two-sample z-test of means (inverse of :func:`sample_size_mean`).

    ``Phi(s mde sqrt(n / (1 + 1/ratio)) / std - z_{1-a})`` with ``s`` the sign as in
    :func:`power_proportion`; the far tail of a two-sided test is ignored.
    """
    alpha = check_alpha(alpha)
    check_alternative(alternative)
    ratio = _check_ratio(ratio)
    n = float(n_per_variant)
    sd = float(std)
    if not (math.isfinite(n) and n > 0):
        raise ValueError(f"n_per_variant must be positive, got {n_per_variant!r}")
    if not (math.isfinite(sd) and sd > 0):
        raise ValueError(f"std must be positive, got {std!r}")
    delta = float(mde)
    sign = {"two-sided": 1.0 if delta >= 0 else -1.0, "larger": 1.0, "smaller": -1.0}[alternative]
    crit = -norm_ppf(_tail_alpha(alpha, alternative))
    return norm_cdf(sign * delta * math.sqrt(n / (1.0 + 1.0 / ratio)) / sd - crit)
