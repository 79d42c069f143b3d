"""Seeded A/A calibration through the analysis' own statistics path (``abcore.analysis.compare.summaries`` and
``compare``: the engine row -> summary -> test mapping ``analyze`` uses), for capped means and ratios.

Per-user values are simulated with numpy; the engine rows are built from them the way the SQL does
(sums, sums of squares and cross-products; for a ratio y = numerator, x = denominator). The pure
tests themselves are calibrated in tests/stats/test_stats_ratio_quantile.py; this checks the wiring.
False-positive rate must be in [0.04, 0.06] and CI coverage 95 +- 1.5 %.
"""

from __future__ import annotations

import numpy as np

from abcore.analysis.compare import compare as _test
from abcore.analysis.compare import summaries as _summaries
from abcore.analysis.engines import MetricStatsRow
from abcore.metrics import MetricSpec

REPS = 3000


def _row(y: np.ndarray, x: np.ndarray | None = None) -> MetricStatsRow:
    x = np.zeros_like(y) if x is None else x
    return MetricStatsRow(metric="m", kind="", variant=1, segment="(all)", n=len(y), sum_y=float(y.sum()),
                          sum_y2=float((y * y).sum()), sum_x=float(x.sum()), sum_x2=float((x * x).sum()),
                          sum_xy=float((x * y).sum()), q_n=0, q_value=None, engine="numpy")


def _check(name: str, fpr: float, coverage: float) -> None:
    print(f"\ncalibration through analysis ({name}): FPR {fpr:.4f}, coverage {coverage * 100:.2f} %")
    assert 0.04 <= fpr <= 0.06, (name, fpr)
    assert 0.935 <= coverage <= 0.965, (name, coverage)


def test_capped_mean_aa_through_the_analysis_path() -> None:
    rng = np.random.default_rng(21)
    spec = MetricSpec(name="m", kind="mean", cap="percentile", cap_upper=0.99)
    n, false_pos, covered = 800, 0, 0
    for _ in range(REPS):
        a, b = rng.lognormal(2, 1.2, n), rng.lognormal(2, 1.2, n)
        cap = np.quantile(np.concatenate([a, b]), 0.99, method="inverted_cdf")  # pooled, as the SQL
        t, _ = _test(spec, _summaries(_row(np.clip(a, None, cap)), spec, 1, 0.05),
                     _summaries(_row(np.clip(b, None, cap)), spec, 2, 0.05),
                     method="frequentist", cuped=False, alpha=0.05, planned_n=1.0)
        false_pos += t.p_value < 0.05
        covered += t.ci_low <= 0.0 <= t.ci_high
    _check("capped mean, pooled p99", false_pos / REPS, covered / REPS)


def test_ratio_aa_through_the_analysis_path() -> None:
    rng = np.random.default_rng(22)
    spec = MetricSpec(name="m", kind="ratio", numerator="revenue", denominator="sessions")
    n, false_pos, covered = 500, 0, 0
    for _ in range(REPS):
        da, db = rng.poisson(3, n) + 1.0, rng.poisson(3, n) + 1.0
        na, nb = da * rng.exponential(5, n), db * rng.exponential(5, n)
        t, _ = _test(spec, _summaries(_row(na, da), spec, 1, 0.05), _summaries(_row(nb, db), spec, 2, 0.05),
                     method="frequentist", cuped=False, alpha=0.05, planned_n=1.0)
        false_pos += t.p_value < 0.05
        covered += t.ci_low <= 0.0 <= t.ci_high
    _check("ratio, delta method", false_pos / REPS, covered / REPS)
