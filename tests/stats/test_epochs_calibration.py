"""Calibration of the epoch-stratified analysis: the Simpson A/A of :mod:`tests.stats.epoch_simulation`.

Identical arms, the split changed 10/90 -> 50/50 mid-run while the base rate fell and swung by day: the pooled
test (today's figure without epochs) rejects almost always; the epoch-stratified test rejects at its level, its
interval covers a planted effect at 95 +/- 1.5 %, and the per-epoch SRM flags at its level (0.001) where the pooled
SRM flags every run. The figures are printed and published in docs/reference/statistics.md (the bench repeats
them with 20,000 runs: ``pytest benchmarks/bench_epochs.py -m bench -s``).
"""

from __future__ import annotations

from tests.stats.epoch_simulation import simulate


def test_simpson_aa_epoch_stratified_false_positive_rate_and_coverage() -> None:
    f = simulate(10_000, seed=1)
    print(f"\nSimpson A/A over {f.runs} runs: pooled FPR {f.pooled_fpr:.3f}, epoch-stratified FPR "
          f"{f.stratified_fpr:.4f}, CMH FPR {f.cmh_fpr:.4f}, stratified coverage {f.stratified_coverage:.4f}, "
          f"SRM flags per epoch {f.epoch_srm_rate:.4f} vs pooled {f.pooled_srm_rate:.3f}")
    assert f.pooled_fpr > 0.9  # the bias the epochs remove
    assert 0.04 <= f.stratified_fpr <= 0.06
    assert 0.935 <= f.stratified_coverage <= 0.965
    assert 0.04 <= f.cmh_fpr <= 0.06  # statsmodels' CMH on the same tables agrees
    assert f.epoch_srm_rate <= 0.0025  # level 0.001: 10 expected in 10,000
    assert f.pooled_srm_rate > 0.99
