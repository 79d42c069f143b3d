"""Calibration figures of the effect over time and the differential impact scan (published in the statistics docs).

``pytest benchmarks/bench_novelty.py -m bench -s`` (a few minutes): 2,000 simulated experiments per figure.
Known curve ``tau(d) = tau_inf + (tau_0 - tau_inf) exp(-d / 1.5)``, 2,000 users per arm entering over 28 days,
daily noise sd 1 and per-user level sd 1 (``tests/stats/novelty_sim.py``); differential impact over 40 cells
of 4,000 users (``tests/analysis/differential_sim.py``).
"""

from __future__ import annotations

import pytest

from tests.analysis.differential_sim import simulate_differential
from tests.stats.novelty_sim import simulate_curve

RUNS = 2000


@pytest.mark.bench
def test_known_curve_figures() -> None:
    decaying = simulate_curve(runs=RUNS, seed=101, tau_0=0.2, tau_inf=0.05, lam=1.5)
    constant = simulate_curve(runs=RUNS, seed=102, tau_0=0.05, tau_inf=0.05, lam=1.5)
    print(f"\ndecaying: per-day CI coverage {decaying.day_coverage:.4f}, flagged {decaying.flagged:.4f}, "
          f"long-run CI coverage {decaying.long_run_coverage:.4f}")
    print(f"constant: per-day CI coverage {constant.day_coverage:.4f}, flagged {constant.flagged:.4f}, "
          f"long-run CI coverage {constant.long_run_coverage:.4f}")
    assert 0.935 <= decaying.day_coverage <= 0.965 and 0.935 <= constant.day_coverage <= 0.965
    assert decaying.flagged >= 0.80 and constant.flagged <= 0.05 + 0.01
    assert 0.935 <= decaying.long_run_coverage <= 0.965 and 0.935 <= constant.long_run_coverage <= 0.965


@pytest.mark.bench
def test_differential_figures() -> None:
    null = simulate_differential(RUNS, seed=201)
    planted = simulate_differential(RUNS, seed=202, planted=0.45)
    print(f"\ndifferential impact, 40 cells: null runs with a discovery {null.any_found:.4f}; "
          f"planted +0.45 sd cell found {planted.planted_found:.4f}")
    assert null.any_found <= 0.05 + 0.01 and planted.planted_found >= 0.80
