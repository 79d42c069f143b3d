"""Differential impact calibration (simulated users, the scan of abcore.analysis.differential.scan_cells).

Small runs here; ``benchmarks/bench_novelty.py`` repeats them with 2,000 runs and prints the published figures.
"""

from __future__ import annotations

from tests.analysis.differential_sim import simulate_differential


def test_null_scan_of_40_cells_keeps_false_discoveries_at_the_fdr_level() -> None:
    """No effect anywhere: a run with any surviving cell is a false discovery; Benjamini-Hochberg keeps their
    share at the FDR level 0.05 under the complete null (Benjamini & Hochberg 1995, Theorem 1)."""
    null = simulate_differential(300, seed=1)
    assert null.tested == 40
    assert null.any_found <= 0.05 + 0.03  # 300 runs: binomial sd 0.013


def test_planted_cell_is_found_with_the_stated_power() -> None:
    """+0.45 sd for treatment users of one cell (about 200 per arm of 4,000 users): found in about 88 %."""
    planted = simulate_differential(300, seed=2, planted=0.45)
    assert planted.planted_found >= 0.80
