"""Capping (winsorising): pooled bounds per metric, and per-user values clipped to them.

A ``percentile`` cap is the nearest-rank percentile (value at rank ``ceil(p N)``) of the per-user values of
all variants together; an ``absolute`` cap uses the given bounds. Either bound may be missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from abcore.analysis.sql.dialects import Dialect
from abcore.analysis.sql.source import literal

__all__ = ["cap_ctes", "clipped"]


def clipped(value: str, bounds: str, c: str) -> str:
    """``value`` clipped to the bounds ``<bounds>.<c>_hi`` / ``<bounds>.<c>_lo`` (a NULL bound does not clip)."""
    expr = f"CASE WHEN {bounds}.{c}_hi IS NOT NULL AND {value} > {bounds}.{c}_hi THEN {bounds}.{c}_hi ELSE {value} END"
    return f"CASE WHEN {bounds}.{c}_lo IS NOT NULL AND {value} < {bounds}.{c}_lo THEN {bounds}.{c}_lo ELSE {expr} END"


def _bounds_sql(d: Dialect, i: int, m: Any, columns: Sequence[str]) -> str:
    """The one-row SELECT of ``m<i>_cap``: ``<c>_hi`` and ``<c>_lo`` per column of ``m<i>_user``."""
    up, lo = getattr(m, "cap_upper", None), getattr(m, "cap_lower", None)
    if m.cap == "absolute":
        bounds: list[str] = []
        for c in columns:
            bounds.append(f"{d.double(literal(None if up is None else float(up), d))} AS {c}_hi")
            bounds.append(f"{d.double(literal(None if lo is None else float(lo), d))} AS {c}_lo")
        return "SELECT " + ", ".join(bounds)
    # Nearest-rank percentile of the per-user values pooled over variants: value at rank ceil(p N).
    parts = []
    for c in columns:
        ranked = f"SELECT {c} AS v, ROW_NUMBER() OVER (ORDER BY {c}) AS rn, COUNT(*) OVER () AS n FROM m{i}_user"
        for label, p in (("hi", up), ("lo", lo)):
            if p is None:
                parts.append(f"(SELECT {d.double('NULL')}) AS {c}_{label}")
            else:
                parts.append(f"(SELECT MIN(v) FROM ({ranked}) r WHERE rn >= {d.ceil(f'{float(p)!r} * n')}) AS {c}_{label}")
    return "SELECT " + ",\n    ".join(parts)


def cap_ctes(d: Dialect, i: int, m: Any, columns: Sequence[str]) -> list[tuple[str, str]]:
    """``m<i>_cap`` (bounds per column) and ``m<i>_capped`` (per-user values of ``m<i>_user`` clipped to them)."""
    if getattr(m, "cap", None) is None:
        return [(f"m{i}_capped", f"SELECT * FROM m{i}_user")]
    values = [f"{clipped(f'u.{c}', 'c', c)} AS {c}" for c in columns]
    others = [c for c in ("user_id", "variant", "segment", "x") if c not in columns]
    capped = f"SELECT {', '.join('u.' + o for o in others)}, {', '.join(values)}\n  FROM m{i}_user u CROSS JOIN m{i}_cap c"
    return [(f"m{i}_cap", _bounds_sql(d, i, m, columns)), (f"m{i}_capped", capped)]
