"""abcore.formatting: the one output style of numbers on every surface (page, CLI, verdict, watcher)."""

from __future__ import annotations

import math

from abcore import formatting as fmt


def test_percent_pvalue_interval_and_missing() -> None:
    assert fmt.format_int(1234567) == "1,234,567"
    assert fmt.format_number(1234.5) == "1,234.5"
    assert fmt.format_number(100.0) == "100"
    assert fmt.format_pct(0.1234) == "12.3 %"
    assert fmt.format_pct(0.041, signed=True) == "+4.1 %"
    assert fmt.format_pct(-0.021, signed=True) == "-2.1 %"
    assert fmt.format_pvalue(0.0004) == "< 0.001"
    assert fmt.format_pvalue(0.04567) == "0.046"
    assert fmt.format_interval(-0.012, 0.034) == "[-1.2 %, +3.4 %]"
    assert fmt.format_interval(-0.5, 1.25, percent=False) == "[-0.5, 1.25]"


def test_every_formatter_says_n_a_for_a_missing_number() -> None:
    for missing in (None, math.nan, math.inf, -math.inf):
        assert fmt.format_int(missing) == fmt.MISSING == "n/a"
        assert fmt.format_number(missing) == "n/a"
        assert fmt.format_fixed(missing) == "n/a"
        assert fmt.format_pct(missing) == "n/a"
        assert fmt.format_pp(missing) == "n/a"
        assert fmt.format_pvalue(missing) == "n/a"
        assert fmt.format_expected_loss(missing, binary=True) == "n/a"
    assert fmt.format_interval(None, 0.1) == "n/a"
    assert not fmt.is_finite(True) and not fmt.is_finite("x") and fmt.is_finite(0)


def test_p_value_in_a_sentence() -> None:
    assert fmt.format_p_clause(0.0321) == "p = 0.032"
    assert fmt.format_p_clause(0.00001) == "p < 0.001"
    assert fmt.format_p_clause(math.nan) == "p n/a"
