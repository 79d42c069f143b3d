"""Numbers as every surface shows them: results page, ship dialog, CLI report, verdict reasons, watcher alerts.

Pure functions (no streamlit, no pandas) with one output style:

* a share or a relative change in percent, one decimal, a space before the sign:
  ``format_pct(0.1234) -> '12.3 %'``, ``format_pct(0.041, signed=True) -> '+4.1 %'``;
* a difference of two rates in percentage points: ``format_pp(0.0123) -> '+1.23 pp'``;
* a p-value with three decimals, ``< 0.001`` below a thousandth: ``'0.032'``, ``'< 0.001'``;
* an interval in brackets: ``format_interval(-0.012, 0.034) -> '[-1.2 %, +3.4 %]'``;
* counts with thousands separators: ``format_int(1234567) -> '1,234,567'``;
* a missing value (``None``, NaN, infinity) as :data:`MISSING` (``'n/a'``) everywhere.

Colours, badges and HTML stay in the dashboard (:mod:`abcore.dashboard.views.forms`).
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "MEAN_DIGITS",
    "MISSING",
    "RATE_DIGITS",
    "format_expected_loss",
    "format_fixed",
    "format_int",
    "format_interval",
    "format_number",
    "format_pct",
    "format_p_clause",
    "format_pp",
    "format_pvalue",
    "is_finite",
]

#: What a missing or non-finite number reads as.
MISSING = "n/a"
#: Decimals of every rate in percentage points and of every mean (tables and charts alike).
RATE_DIGITS = 2
MEAN_DIGITS = 3


def is_finite(value: Any) -> bool:
    """True for a real, finite number (``None``, NaN, infinity, text and bools are not)."""
    if value is None or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _sign(value: float, signed: bool) -> str:
    return "+" if signed and value > 0 else ""


def format_int(value: float | None) -> str:
    """A count, rounded, with thousands separators: ``1234567 -> '1,234,567'``."""
    if not is_finite(value):
        return MISSING
    return f"{round(float(value)):,}"  # type: ignore[arg-type]


def format_number(value: float | None, digits: int = 2) -> str:
    """A number with thousands separators and at most ``digits`` decimals, trailing zeros dropped."""
    if not is_finite(value):
        return MISSING
    text = f"{float(value):,.{digits}f}"  # type: ignore[arg-type]
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_fixed(value: float | None, digits: int = MEAN_DIGITS, *, signed: bool = False) -> str:
    """A number with exactly ``digits`` decimals (so a column lines up): ``8.7 -> '8.700'``."""
    if not is_finite(value):
        return MISSING
    v = float(value)  # type: ignore[arg-type]
    text = f"{_sign(v, signed)}{v:,.{digits}f}"
    return text.replace("-0." + "0" * digits, "0." + "0" * digits) if digits else text


def format_pct(value: float | None, digits: int = 1, *, signed: bool = False) -> str:
    """A share or relative change in percent: ``0.1234 -> '12.3 %'``; ``signed`` adds ``+`` to positive values."""
    if not is_finite(value):
        return MISSING
    v = float(value)  # type: ignore[arg-type]
    return f"{_sign(v, signed)}{v * 100:,.{digits}f} %"


def format_pp(diff: float | None, digits: int = RATE_DIGITS, *, signed: bool = True) -> str:
    """A difference of two rates in percentage points: ``0.0123 -> '+1.23 pp'``."""
    if not is_finite(diff):
        return MISSING
    v = float(diff)  # type: ignore[arg-type]
    return f"{_sign(v, signed)}{v * 100:,.{digits}f} pp"


def format_pvalue(p: float | None) -> str:
    """A p-value: ``'< 0.001'`` below a thousandth, else three decimals (``'0.032'``)."""
    if not is_finite(p):
        return MISSING
    return "< 0.001" if float(p) < 0.001 else f"{float(p):.3f}"  # type: ignore[arg-type]


def format_p_clause(p: float | None) -> str:
    """A p-value in a sentence: ``'p = 0.032'``, ``'p < 0.001'``, ``'p n/a'``."""
    text = format_pvalue(p)
    return f"p {text}" if text.startswith("<") or text == MISSING else f"p = {text}"


def format_interval(low: float | None, high: float | None, *, percent: bool = True, digits: int = 1) -> str:
    """An interval: relative changes in percent (``'[-1.2 %, +3.4 %]'``), else numbers with up to 4 decimals."""
    if low is None or high is None:
        return MISSING
    if percent:
        return f"[{format_pct(low, digits, signed=True)}, {format_pct(high, digits, signed=True)}]"
    return f"[{format_number(low, 4)}, {format_number(high, 4)}]"


def format_expected_loss(loss: float | None, *, binary: bool) -> str:
    """Expected loss of choosing a variant: percentage points for rates, the metric's unit for means.

    Tiny losses read ``< 0.01 pp`` (resp. ``< 0.001``) rather than a string of zeros.
    """
    if not is_finite(loss):
        return MISSING
    v = float(loss)  # type: ignore[arg-type]
    if binary:
        return "< 0.01 pp" if 0 < v * 100 < 0.005 else format_pp(v, signed=False)
    return f"< {10 ** -MEAN_DIGITS:.{MEAN_DIGITS}f}" if 0 < v < 0.5 * 10 ** -MEAN_DIGITS else format_fixed(v)
