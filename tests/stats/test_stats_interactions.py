"""Interaction tests between overlapping experiments: oracles (scipy, statsmodels on raw rows) and the calibration.

Calibration (simulation; the figures are published in docs/reference/statistics.md): independent pairs of
50/50 experiments with no interaction are flagged (Benjamini-Hochberg at 5 % over the pairs of one scan) in
at most 5 % of pairs, and an interaction of 3 standard errors is found in at least 80 % of scans.
"""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from abcore.stats.corrections import adjust_pvalues
from abcore.stats.interactions import CellStats, assignment_dependence, effect_interaction


def _cell(values: np.ndarray) -> CellStats:
    return CellStats(len(values), float(values.sum()), float((values**2).sum()))


def test_dependence_equals_scipy_chi2_contingency() -> None:
    table = [[120, 95, 30], [80, 110, 41]]
    expected = stats.chi2_contingency(np.array(table), correction=False)  # oracle: scipy
    got = assignment_dependence(table)
    assert got.statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert got.p_value == pytest.approx(expected.pvalue, rel=1e-10) and got.dof == expected.dof
    assert np.isnan(assignment_dependence([[10, 0], [0, 0]]).p_value)  # one arm only: nothing to test


def test_effect_interaction_equals_the_hc2_interaction_coefficient_of_ols() -> None:
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2, 4000)
    b = rng.integers(0, 2, 4000)
    y = rng.normal(1.0, 2.0, 4000) + 0.3 * a + 0.1 * b + 0.25 * a * b * rng.uniform(0.5, 1.5, 4000)
    cells = {(i, j): _cell(y[(a == i) & (b == j)]) for i in (0, 1) for j in (0, 1)}
    got = effect_interaction(cells[0, 0], cells[1, 0], cells[0, 1], cells[1, 1])
    # oracle: statsmodels OLS y ~ a * b on the raw rows, HC2 sandwich variance of the a:b coefficient
    fit = smf.ols("y ~ a * b", data={"y": y, "a": a, "b": b}).fit(cov_type="HC2")
    assert got.difference == pytest.approx(fit.params["a:b"], rel=1e-9)
    assert got.std_error == pytest.approx(fit.bse["a:b"], rel=1e-9)
    assert got.p_value == pytest.approx(fit.pvalues["a:b"], rel=1e-6)
    assert np.isnan(effect_interaction(CellStats(1, 1, 1), *[cells[0, 0]] * 3).p_value)


def _scan(rng: np.random.Generator, pairs: int, n: int, shift_se: float) -> tuple[list[float], float]:
    """One scan: ``pairs`` independent pairs (the first with an interaction of ``shift_se`` standard errors);
    returns the BH-adjusted effect p-values and the raw p-value of the dependence test of the first pair."""
    pvalues = []
    dependence = float("nan")
    for k in range(pairs):
        a = rng.integers(0, 2, n)
        b = rng.integers(0, 2, n)
        y = rng.binomial(1, 0.1, n).astype(float)
        if k == 0 and shift_se:
            se = np.sqrt(4 * 0.09 / (n / 4))  # the contrast's standard error at p = 0.1 with n / 4 users a cell
            both = (a == 1) & (b == 1)
            y[both] = rng.binomial(1, 0.1 + shift_se * se, both.sum())
        cells = {(i, j): _cell(y[(a == i) & (b == j)]) for i in (0, 1) for j in (0, 1)}
        pvalues.append(effect_interaction(cells[0, 0], cells[1, 0], cells[0, 1], cells[1, 1]).p_value)
        if k == 0:
            dependence = assignment_dependence([[int(np.sum((a == i) & (b == j))) for j in (0, 1)] for i in (0, 1)]).p_value
    return adjust_pvalues(pvalues, "fdr_bh"), dependence


def test_calibration_false_flags_and_power() -> None:
    rng = np.random.default_rng(2026)
    runs, n = 400, 8000
    null_flags = null_pairs = 0
    dependence = []
    for _ in range(runs):
        adjusted, dep = _scan(rng, pairs=3, n=n, shift_se=0.0)
        null_flags += sum(p < 0.05 for p in adjusted)
        null_pairs += len(adjusted)
        dependence.append(dep)
    false_flag_rate = null_flags / null_pairs
    dependence_rate = float(np.mean(np.array(dependence) < 0.05))
    found = sum(_scan(rng, pairs=1, n=n, shift_se=3.0)[0][0] < 0.05 for _ in range(runs))
    power = found / runs
    print(f"interaction calibration: false flags {false_flag_rate:.3f}, dependence flags {dependence_rate:.3f},"
          f" power at 3 SE {power:.3f} ({runs} scans)")
    assert false_flag_rate <= 0.05
    assert dependence_rate <= 0.075  # 5 % expected; binomial sd over 400 scans ~1.1 %
    assert power >= 0.80
