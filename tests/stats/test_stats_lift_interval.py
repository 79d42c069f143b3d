"""Calibration of the relative-lift interval (Fieller's, :func:`abcore.stats._common.lift_interval`) by simulation.

For two-proportion experiments with a small control rate (where the linear delta-method interval was
unstable) and a typical one, under the fixed-horizon z-test and the sequential test at its planned size:

* coverage: the share of runs whose lift interval contains the true lift ``p_b / p_a - 1`` (an unbounded
  interval contains it), which must be near 95 % (the sequential one is conservative: >= 95 %);
* agreement: the share of runs where "the interval shown excludes 0" equals "the test's p < alpha", which
  must be 100 % (Fieller's interval is the set of lifts the test does not reject). The interval shown is
  the lift interval, or the difference interval when the lift interval is unbounded (the control mean is
  not distinguishable from 0 at the test's critical value: ``abcore.analysis.verdict.displayed_interval``);
* unbounded: the share of runs with an unbounded lift interval;
* for comparison, the same figures of the linear delta-method interval ``lift -/+ crit sqrt(var_lift)``
  (Deng et al. 2018), computed here by hand from the counts.

The default run uses 400 simulated experiments per scenario (fixed seeds); the ``bench`` variant
repeats them with 20,000 and prints the figures that ``docs/reference/statistics.md`` publishes
(``pytest -m bench -s tests/stats/test_stats_lift_interval.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import stats

from abcore.stats import proportion_test, sequential_proportion_test
from abcore.stats.sequential import sequential_halfwidth, sequential_rho2

#: (name, control rate, treatment rate, users per arm)
SCENARIOS = [
    ("small control 5 % -> 6 %", 0.05, 0.06, 1000),
    ("small control 5 % -> 60 %", 0.05, 0.60, 200),
    ("typical 10 % -> 11 %", 0.10, 0.11, 5000),
]


@dataclass(frozen=True)
class LiftFigures:
    coverage: float
    agreement: float
    unbounded: float
    delta_coverage: float
    delta_agreement: float


def lift_calibration(n_sims: int, p_a: float, p_b: float, n: int, *, sequential: bool, seed: int = 26) -> LiftFigures:
    """Coverage and test agreement of the lift interval (and of the linear delta-method one) over ``n_sims`` runs."""
    rng = np.random.default_rng(seed)
    ca, cb = rng.binomial(n, p_a, size=n_sims), rng.binomial(n, p_b, size=n_sims)
    truth = p_b / p_a - 1
    if sequential:
        crit = sequential_halfwidth(1.0, n, sequential_rho2(0.05, n), 0.05)  # the CS factor at t = planned n
    else:
        crit = float(stats.norm.ppf(0.975))
    covered = agree = unbounded = d_covered = d_agree = 0
    for a, b in zip(ca.tolist(), cb.tolist(), strict=True):
        r = (sequential_proportion_test(a, n, b, n, planned_n=n) if sequential else proportion_test(a, n, b, n))
        rejects = r.p_value < 0.05
        covered += bool(r.lift_ci_low <= truth <= r.lift_ci_high)
        low, high = r.lift_ci_low, r.lift_ci_high
        if not (math.isfinite(low) or math.isfinite(high)):
            unbounded += 1
            low, high = r.ci_low, r.ci_high
        agree += bool((low > 0 or high < 0) == rejects)
        # the linear delta-method interval by hand (Deng et al. 2018, eq. 3): var_b / pa^2 + pb^2 var_a / pa^4
        pa, pb = a / n, b / n
        if pa == 0:
            continue
        half = crit * math.sqrt(pb * (1 - pb) / n / pa**2 + pb**2 * pa * (1 - pa) / n / pa**4)
        lift = pb / pa - 1
        d_covered += bool(lift - half <= truth <= lift + half)
        d_agree += bool((lift - half > 0 or lift + half < 0) == rejects)
    return LiftFigures(covered / n_sims, agree / n_sims, unbounded / n_sims, d_covered / n_sims, d_agree / n_sims)


@pytest.mark.parametrize(("name", "p_a", "p_b", "n"), SCENARIOS)
def test_fixed_horizon_lift_interval_covers_and_agrees_with_the_test(name: str, p_a: float, p_b: float, n: int) -> None:
    f = lift_calibration(400, p_a, p_b, n, sequential=False)
    assert f.agreement == 1.0, name
    assert 0.92 <= f.coverage <= 0.98, name  # 400 runs: 95 % +/- 2.2 % is 2 standard errors


@pytest.mark.parametrize(("name", "p_a", "p_b", "n"), SCENARIOS)
def test_sequential_lift_interval_covers_and_agrees_with_the_test(name: str, p_a: float, p_b: float, n: int) -> None:
    f = lift_calibration(400, p_a, p_b, n, sequential=True)
    assert f.agreement == 1.0, name
    assert f.coverage >= 0.95, name  # a confidence sequence at one look is conservative


def test_a_guardrail_going_from_5_to_60_percent_is_flagged() -> None:
    # 5 % -> 60 % errors, 200 users per arm, sequential tuned to 200: the test is decisive (p ~ 1e-40; the
    # pooled z-test of statsmodels proportions_ztest gives p < 1e-30 for the same counts) and the lift
    # interval now excludes 0; the linear delta-method interval (by hand) covered 0.
    from statsmodels.stats.proportion import proportions_ztest

    r = sequential_proportion_test(10, 200, 120, 200, planned_n=200)
    assert proportions_ztest([120, 10], [200, 200])[1] < 1e-30 and r.p_value < 1e-30
    assert r.significant and r.lift_ci_low > 0
    crit = sequential_halfwidth(1.0, 200, sequential_rho2(0.05, 200), 0.05)
    half = crit * math.sqrt(0.6 * 0.4 / 200 / 0.05**2 + 0.6**2 * 0.05 * 0.95 / 200 / 0.05**4)
    assert 11 - half < 0  # what the delta method showed


@pytest.mark.bench
def test_bench_lift_interval_figures() -> None:
    for sequential in (False, True):
        for name, p_a, p_b, n in SCENARIOS:
            f = lift_calibration(20_000, p_a, p_b, n, sequential=sequential, seed=261)
            label = "sequential" if sequential else "fixed"
            print(f"{label:10s} {name:28s} Fieller coverage {f.coverage:.3f} agreement {f.agreement:.4f} unbounded {f.unbounded:.3f} | "
                  f"delta coverage {f.delta_coverage:.3f} agreement {f.delta_agreement:.4f}")
            assert f.agreement == 1.0
