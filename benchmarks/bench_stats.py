"""Benchmark: per-call latency of the abcore.stats functions (``pytest benchmarks/bench_stats.py -m bench -s``).

The analysis page calls these once per metric x treatment; the simulation tests call them
tens of thousands of times. Target: every function well under 100 microseconds per call.
"""

from __future__ import annotations

import timeit

import pytest

from abcore.stats import (
    BinarySummary,
    CovariateSummary,
    MeanSummary,
    adjust_pvalues,
    bayes_mean,
    bayes_proportion,
    cuped,
    mean_test,
    proportion_test,
    sample_size_proportion,
    sequential_test,
    srm_test,
)

A = CovariateSummary(10_000, 52_000.0, 410_000.0, 50_000.0, 400_000.0, 380_000.0)
B = CovariateSummary(10_100, 53_500.0, 420_000.0, 50_400.0, 402_000.0, 386_000.0)
CASES = {
    "proportion_test": lambda: proportion_test(1000, 10_000, 1080, 10_000),
    "proportion_test(pooled)": lambda: proportion_test(1000, 10_000, 1080, 10_000, pooled=True),
    "mean_test": lambda: mean_test(5.2, 3.1, 10_000, 5.3, 3.2, 10_100),
    "sequential_test(binary)": lambda: sequential_test(
        BinarySummary(10_000, 1000), BinarySummary(10_000, 1080), planned_n=20_000
    ),
    "sequential_test(mean)": lambda: sequential_test(
        MeanSummary(10_000, 52_000.0, 410_000.0), MeanSummary(10_100, 53_500.0, 420_000.0), planned_n=20_000
    ),
    "bayes_proportion": lambda: bayes_proportion(1000, 10_000, 1080, 10_000),
    "bayes_mean": lambda: bayes_mean(5.2, 3.1, 10_000, 5.3, 3.2, 10_100),
    "cuped": lambda: cuped(A, B),
    "srm_test": lambda: srm_test([10_000, 10_100, 9_950], [1, 1, 1]),
    "adjust_pvalues(12)": lambda: adjust_pvalues([0.001 * i for i in range(1, 13)]),
    "sample_size_proportion": lambda: sample_size_proportion(0.1, 0.02),
}


@pytest.mark.bench
def test_bench_stats_latency() -> None:
    print()
    for name, fn in CASES.items():
        number = 2000
        best = min(timeit.repeat(fn, number=number, repeat=3)) / number
        print(f"{name:28s} {best * 1e6:8.1f} us/call")
        assert best < 1e-3
