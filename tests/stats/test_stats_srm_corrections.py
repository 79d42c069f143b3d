"""srm_test against scipy.stats.chisquare; adjust_pvalues against statsmodels multipletests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from abcore.stats import SRMResult, adjust_pvalues, srm_test

SRM_CASES = [
    ([5000, 5200], [0.5, 0.5]),
    ([5000, 5000], [50, 50]),  # percentages are normalised
    ([1000, 2100, 2900], [1, 2, 3]),
    ([10, 30], [0.2, 0.8]),
    ([1, 0], [0.5, 0.5]),
    ([10**8, 10**8 + 30_000], [0.5, 0.5]),
    ([4900, 5100, 5000, 5050], [0.25, 0.25, 0.25, 0.25]),
    ([900, 100], [0.9, 0.1]),
]


@pytest.mark.parametrize(("observed", "weights"), SRM_CASES)
def test_srm_matches_scipy_chisquare(observed: list[int], weights: list[float]) -> None:
    r = srm_test(observed, weights)
    total = sum(observed)
    expected = [total * w / sum(weights) for w in weights]
    ref = stats.chisquare(observed, expected)  # scipy: Pearson chi-square GOF, dof = k - 1
    assert r.statistic == pytest.approx(ref.statistic, rel=1e-9, abs=1e-12)
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert r.mismatch == (ref.pvalue < 0.001)
    assert r.dof == len(observed) - 1
    assert r.error is None
    assert r.expected == pytest.approx(expected)


def test_srm_flags_clear_mismatch_and_threshold() -> None:
    r = srm_test([5000, 5300], [0.5, 0.5])
    assert r.p_value < 0.01
    assert r.mismatch is (r.p_value < 0.001)
    assert srm_test([5000, 5300], [0.5, 0.5], threshold=0.05).mismatch is True
    assert srm_test([10_000, 10_600], [0.5, 0.5]).mismatch is True


def test_srm_zero_weight_variants() -> None:
    # a 0-weight variant without users is ignored
    r = srm_test([500, 520, 0], [0.5, 0.5, 0.0])
    ref = stats.chisquare([500, 520])
    assert r.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    # ... but users in a 0-weight variant are a certain mismatch
    r = srm_test([500, 520, 3], [0.5, 0.5, 0.0])
    assert r.mismatch is True and r.p_value == 0.0 and math.isinf(r.statistic)


@pytest.mark.parametrize("observed", [[0, 0], [-1, 10], [float("nan"), 10], [None, 3]])
def test_srm_degenerate_observed_sets_error(observed: list) -> None:
    r = srm_test(observed, [0.5, 0.5])
    assert isinstance(r, SRMResult)
    assert r.error and r.mismatch is False and math.isnan(r.p_value)


@pytest.mark.parametrize(
    ("observed", "weights"),
    [([1, 2], [1.0]), ([1, 2], [-1, 2]), ([1, 2], [float("nan"), 1])],
)
def test_srm_invalid_parameters_raise(observed: list, weights: list) -> None:
    with pytest.raises(ValueError):
        srm_test(observed, weights)


@pytest.mark.parametrize(
    ("observed", "weights"), [([10], [1.0]), ([1, 2], [0, 0]), ([0, 0], [1, 0]), ([], [])]
)
def test_srm_degenerate_configuration_sets_error(observed: list, weights: list) -> None:
    r = srm_test(observed, weights)
    assert r.error and r.mismatch is False and math.isnan(r.p_value)


def test_srm_invalid_threshold_raises() -> None:
    with pytest.raises(ValueError, match="threshold"):
        srm_test([1, 2], [1, 1], threshold=0.0)


# ---------------------------------------------------------------- adjust_pvalues
SM_METHOD = {"holm": "holm", "bonferroni": "bonferroni", "fdr_bh": "fdr_bh"}


def _families() -> list[list[float]]:
    rng = np.random.default_rng(20261124)
    fams = [
        [0.01, 0.04, 0.03],
        [0.05],
        [0.0, 1.0, 0.5, 0.5],
        [0.001, 0.001, 0.001, 0.2],  # ties
        [0.9, 0.8, 0.7, 0.6],
        [1e-12, 0.049, 0.051],
    ]
    for k in (2, 5, 12, 40):
        fams.append(rng.uniform(0, 1, size=k).tolist())
        fams.append((rng.uniform(0, 0.05, size=k) ** 2).tolist())
    return fams


@pytest.mark.parametrize("method", list(SM_METHOD))
@pytest.mark.parametrize("family", _families())
def test_adjust_matches_statsmodels_multipletests(method: str, family: list[float]) -> None:
    ref = multipletests(family, method=SM_METHOD[method])[1]
    assert adjust_pvalues(family, method=method) == pytest.approx(list(ref), rel=1e-12, abs=1e-15)


def test_adjust_default_is_holm_and_nan_passthrough() -> None:
    assert adjust_pvalues([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    out = adjust_pvalues([0.01, float("nan"), 0.04, 0.03], method="holm")
    assert math.isnan(out[1])
    assert [out[0], out[2], out[3]] == pytest.approx([0.03, 0.06, 0.06])
    assert adjust_pvalues([]) == []


def test_adjust_invalid_input_raises() -> None:
    with pytest.raises(ValueError, match="method"):
        adjust_pvalues([0.1], method="sidak")
    with pytest.raises(ValueError):
        adjust_pvalues([1.5])
    with pytest.raises(ValueError):
        adjust_pvalues([-0.1])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=30),
    st.sampled_from(list(SM_METHOD)),
)
def test_adjusted_are_monotone_and_not_below_raw(ps: list[float], method: str) -> None:
    adj = adjust_pvalues(ps, method=method)
    assert len(adj) == len(ps)
    for p, a in zip(ps, adj, strict=True):
        assert p <= a <= 1.0
    order = sorted(range(len(ps)), key=lambda i: ps[i])
    for i, j in zip(order, order[1:], strict=False):
        assert adj[i] <= adj[j]
