"""Sample size and power against statsmodels, R power.prop.test and the closed-form formulas."""

from __future__ import annotations

import math

import pytest
from scipy import stats
from statsmodels.stats.power import NormalIndPower, normal_sample_size_one_tail
from statsmodels.stats.proportion import power_proportions_2indep, samplesize_proportions_2indep_onetail

from abcore.stats import (
    power_mean,
    power_proportion,
    sample_size_mean,
    sample_size_mean_float,
    sample_size_proportion,
    sample_size_proportion_float,
)


def r_power_prop_test_n(p1: float, p2: float, power: float, sig_level: float = 0.05) -> float:
    """R power.prop.test (strict = FALSE) solved for n, re-derived with scipy (independent of abcore).

    R: power = pnorm((sqrt(n) * abs(p1 - p2) - qnorm(sig.level / 2, lower = FALSE) *
                     sqrt((p1 + p2) * (q1 + q2) / 2)) / sqrt(p1 * q1 + p2 * q2))
    """
    q1, q2 = 1 - p1, 1 - p2
    za = stats.norm.isf(sig_level / 2)
    zb = stats.norm.ppf(power)
    return (
        (za * math.sqrt((p1 + p2) * (q1 + q2) / 2) + zb * math.sqrt(p1 * q1 + p2 * q2)) / abs(p1 - p2)
    ) ** 2


def r_power_prop_test_power(n: float, p1: float, p2: float, sig_level: float = 0.05) -> float:
    q1, q2 = 1 - p1, 1 - p2
    za = stats.norm.isf(sig_level / 2)
    return stats.norm.cdf(
        (math.sqrt(n) * abs(p1 - p2) - za * math.sqrt((p1 + p2) * (q1 + q2) / 2))
        / math.sqrt(p1 * q1 + p2 * q2)
    )


def test_r_power_prop_test_hand_copied_values() -> None:
    # R: power.prop.test(p1 = 0.1, p2 = 0.12, power = 0.8) -> n = 3840.847
    assert sample_size_proportion_float(0.1, 0.02) == pytest.approx(3840.847, abs=5e-4)
    assert sample_size_proportion(0.1, 0.02) == 3841
    # R documentation example: power.prop.test(p1 = .50, p2 = .75, power = .90) -> n = 76.7 (as printed there)
    assert sample_size_proportion_float(0.5, 0.25, power=0.9) == pytest.approx(76.7, abs=0.05)
    assert sample_size_proportion(0.5, 0.25, power=0.9) == 77
    # R documentation example: power.prop.test(n = 50, p1 = .50, p2 = .75) -> power = 0.7401659
    assert power_proportion(0.5, 0.25, 50) == pytest.approx(0.7401659, abs=5e-8)


@pytest.mark.parametrize(
    ("p1", "p2", "power", "alpha"),
    [(0.1, 0.12, 0.8, 0.05), (0.5, 0.75, 0.9, 0.05), (0.02, 0.021, 0.8, 0.05), (0.3, 0.25, 0.95, 0.01)],
)
def test_matches_r_formula_rederived_in_scipy(p1: float, p2: float, power: float, alpha: float) -> None:
    n = sample_size_proportion_float(p1, p2 - p1, power=power, alpha=alpha)
    assert n == pytest.approx(r_power_prop_test_n(p1, p2, power, alpha), rel=1e-9)
    assert power_proportion(p1, p2 - p1, 1234, alpha=alpha) == pytest.approx(
        r_power_prop_test_power(1234, p1, p2, alpha), rel=1e-9
    )


PROP_DESIGNS = [
    # (baseline, mde, relative, alternative)
    (0.1, 0.02, False, "two-sided"),
    (0.1, -0.02, False, "two-sided"),
    (0.001, 0.0005, False, "two-sided"),
    (0.001, 0.1, True, "larger"),
    (0.999, -0.0005, False, "smaller"),
    (0.5, 0.05, True, "two-sided"),
    (0.05, 0.01, False, "larger"),
    (0.3, -0.03, False, "smaller"),
    (0.9, 0.02, False, "two-sided"),
]


@pytest.mark.parametrize("design", PROP_DESIGNS)
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0, 3.0])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.01, 0.9), (0.1, 0.5)])
def test_sample_size_proportion_matches_statsmodels(
    design: tuple[float, float, bool, str], ratio: float, alpha: float, power: float
) -> None:
    baseline, mde, relative, alternative = design
    p2 = baseline * (1 + mde) if relative else baseline + mde
    # statsmodels: sample 1 = control (returned nobs1), prop2 = treatment, nobs2 = ratio * nobs1
    ref = samplesize_proportions_2indep_onetail(
        baseline - p2, p2, power, ratio=ratio, alpha=alpha, alternative=alternative
    )
    got = sample_size_proportion_float(
        baseline, mde, relative=relative, alpha=alpha, power=power, alternative=alternative, ratio=ratio
    )
    assert got == pytest.approx(ref, rel=1e-9)
    n = sample_size_proportion(
        baseline, mde, relative=relative, alpha=alpha, power=power, alternative=alternative, ratio=ratio
    )
    assert n == math.ceil(ref)
    # power at the unrounded n is the target; at the rounded-up n it is at least the target
    assert power_proportion(
        baseline, mde, got, relative=relative, alpha=alpha, alternative=alternative, ratio=ratio
    ) == pytest.approx(power, rel=1e-9)
    assert (
        power_proportion(
            baseline, mde, n, relative=relative, alpha=alpha, alternative=alternative, ratio=ratio
        )
        >= power
    )


@pytest.mark.parametrize(
    ("baseline", "mde", "n"), [(0.1, 0.02, 3841), (0.2, -0.03, 2000), (0.01, 0.002, 50_000)]
)
def test_power_proportion_close_to_statsmodels_two_tailed_power(baseline: float, mde: float, n: int) -> None:
    # statsmodels power_proportions_2indep also counts the far tail of the two-sided test,
    # which R's default (strict = FALSE) and abcore ignore: agreement only up to that tail.
    ref = power_proportions_2indep(baseline - (baseline + mde), baseline + mde, n, ratio=1.0, alpha=0.05)
    assert power_proportion(baseline, mde, n) == pytest.approx(ref.power, abs=1e-5)


@pytest.mark.parametrize("std", [1.0, 0.3, 25.0])
@pytest.mark.parametrize("mde", [0.1, 0.5, 3.0])
@pytest.mark.parametrize("ratio", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("alternative", ["two-sided", "larger"])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.01, 0.95)])
def test_sample_size_mean_matches_statsmodels(
    std: float, mde: float, ratio: float, alternative: str, alpha: float, power: float
) -> None:
    got = sample_size_mean_float(std, mde, alpha=alpha, power=power, alternative=alternative, ratio=ratio)
    tail = alpha / 2 if alternative == "two-sided" else alpha
    # statsmodels normal_sample_size_one_tail: same closed form, sd of the difference per control unit
    ref = normal_sample_size_one_tail(mde, power, tail, std_null=std * math.sqrt(1 + 1 / ratio))
    assert got == pytest.approx(ref, rel=1e-9)
    # NormalIndPower solves numerically (its root finder needs n >= 2) and, two-sided, counts
    # the far tail: agreement to ~1e-5
    if got > 5:
        nip = NormalIndPower().solve_power(
            effect_size=mde / std, alpha=alpha, power=power, ratio=ratio, alternative=alternative
        )
        assert got == pytest.approx(nip, rel=1e-5)
    assert power_mean(std, mde, got, alpha=alpha, alternative=alternative, ratio=ratio) == pytest.approx(
        power, rel=1e-9
    )
    n = sample_size_mean(std, mde, alpha=alpha, power=power, alternative=alternative, ratio=ratio)
    assert n == math.ceil(ref) or (n == math.ceil(ref) - 1 and ref - math.floor(ref) < 1e-6)


def test_sample_size_mean_smaller() -> None:
    assert sample_size_mean(2.0, -0.5, alternative="smaller") == sample_size_mean(
        2.0, 0.5, alternative="larger"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"baseline": 0.0, "mde": 0.1},
        {"baseline": 1.0, "mde": -0.1},
        {"baseline": 0.1, "mde": 0.0},
        {"baseline": 0.1, "mde": 0.95},  # p2 > 1
        {"baseline": 0.1, "mde": -0.02, "alternative": "larger"},
        {"baseline": 0.1, "mde": 0.02, "alternative": "smaller"},
        {"baseline": 0.1, "mde": 0.02, "alpha": 1.0},
        {"baseline": 0.1, "mde": 0.02, "power": 1.0},
        {"baseline": 0.1, "mde": 0.02, "power": 0.01},
        {"baseline": 0.1, "mde": 0.02, "ratio": 0.0},
        {"baseline": 0.1, "mde": 0.02, "alternative": "both"},
        {"baseline": 0.1, "mde": float("nan")},
    ],
)
def test_sample_size_proportion_invalid_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        sample_size_proportion(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"std": 0.0, "mde": 1.0},
        {"std": -1.0, "mde": 1.0},
        {"std": 1.0, "mde": 0.0},
        {"std": 1.0, "mde": -1.0, "alternative": "larger"},
        {"std": 1.0, "mde": 1.0, "ratio": -2},
        {"std": float("inf"), "mde": 1.0},
    ],
)
def test_sample_size_mean_invalid_parameters(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        sample_size_mean(**kwargs)


def test_power_invalid_n() -> None:
    with pytest.raises(ValueError):
        power_proportion(0.1, 0.02, 0)
    with pytest.raises(ValueError):
        power_mean(1.0, 0.1, -5)


def test_power_proportion_wrong_direction_is_below_alpha() -> None:
    assert power_proportion(0.1, -0.02, 3841, alternative="larger") < 0.05
    assert power_proportion(0.1, 0.0, 3841, alternative="larger") == pytest.approx(0.05, rel=1e-9)
