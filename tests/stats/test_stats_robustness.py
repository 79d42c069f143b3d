"""Any data, however degenerate, gives a result (with ``error`` set) and never an exception.

Also runs the docstring examples of every abcore.stats module.
"""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from abcore.stats import (
    CovariateSummary,
    bayes_mean,
    bayes_proportion,
    cuped,
    mean_test,
    proportion_test,
    sequential_mean_test,
    sequential_proportion_test,
    srm_test,
)

anything = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
    st.sampled_from([0, 1, 2, -1, 0.5, 1e-300, 1e300]),
)
ALTS = st.sampled_from(["two-sided", "larger", "smaller"])


def _check_result(r: object) -> None:
    p = r.p_value  # type: ignore[attr-defined]
    assert math.isnan(p) or 0.0 <= p <= 1.0
    if r.error is None:  # type: ignore[attr-defined]
        assert not math.isnan(p)
    assert r.significant in (True, False)  # type: ignore[attr-defined]


@settings(max_examples=200, deadline=None)
@given(anything, anything, anything, anything, ALTS, st.booleans())
def test_proportion_functions_never_raise(
    ca: float, na: float, cb: float, nb: float, alt: str, pooled: bool
) -> None:
    _check_result(proportion_test(ca, na, cb, nb, alternative=alt, pooled=pooled))
    _check_result(sequential_proportion_test(ca, na, cb, nb, planned_n=1000, alternative=alt))
    b = bayes_proportion(ca, na, cb, nb)
    assert math.isnan(b.chance_to_beat_control) or 0.0 <= b.chance_to_beat_control <= 1.0


@settings(max_examples=200, deadline=None)
@given(anything, anything, anything, anything, anything, anything, ALTS)
def test_mean_functions_never_raise(
    ma: float, sa: float, na: float, mb: float, sb: float, nb: float, alt: str
) -> None:
    _check_result(mean_test(ma, sa, na, mb, sb, nb, alternative=alt))
    _check_result(sequential_mean_test(ma, sa, na, mb, sb, nb, planned_n=1000, alternative=alt))
    b = bayes_mean(ma, sa, na, mb, sb, nb)
    assert math.isnan(b.chance_to_beat_control) or 0.0 <= b.chance_to_beat_control <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(anything, min_size=12, max_size=12), ALTS)
def test_cuped_never_raises(v: list[float], alt: str) -> None:
    a = CovariateSummary(*v[:6])  # type: ignore[arg-type]
    b = CovariateSummary(*v[6:])  # type: ignore[arg-type]
    _check_result(cuped(a, b, alternative=alt))


@settings(max_examples=200, deadline=None)
@given(st.lists(anything, min_size=2, max_size=5))
def test_srm_never_raises_on_observed(observed: list[float]) -> None:
    r = srm_test(observed, [1.0] * len(observed))
    assert math.isnan(r.p_value) or 0.0 <= r.p_value <= 1.0


@pytest.mark.parametrize(
    "module",
    ["summaries", "frequentist", "sequential", "bayesian", "srm", "power", "corrections", "cuped"],
)
def test_docstring_examples(module: str) -> None:
    mod = importlib.import_module(f"abcore.stats.{module}")
    result = doctest.testmod(mod, extraglobs=vars(importlib.import_module("abcore.stats")))
    assert result.failed == 0
