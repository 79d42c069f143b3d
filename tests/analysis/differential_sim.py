"""Differential impact under the null and with one planted cell, simulated per user (tests and bench).

Each run: ``users`` split 50/50, four attributes with ten equally likely values each (40 cells), a per-user
value ``y ~ N(0, 1)``; with ``planted`` the treatment users of attribute ``a0`` = ``3`` get ``+planted``.
The per-segment sums go through :func:`abcore.analysis.differential.scan_cells` (BH at 0.05).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abcore.analysis.differential import scan_cells
from abcore.analysis.engines import MetricStatsRow
from abcore.analysis.results import VariantInfo
from abcore.metrics import MetricSpec

ATTRIBUTES, VALUES = 4, 10
VARIANTS = (VariantInfo(1, "A", True, 50.0, 0, 0), VariantInfo(2, "B", False, 50.0, 0, 0))
SPECS = {"y": MetricSpec(name="y", kind="mean")}


@dataclass(frozen=True)
class DifferentialCalibration:
    """Share of runs with any surviving cell (null: false discoveries), and with the planted cell found."""

    any_found: float
    planted_found: float
    tested: int


def _rows(values: np.ndarray, arm: np.ndarray, y: np.ndarray) -> list[MetricStatsRow]:
    out = []
    for v in (1, 2):
        mask = arm == v
        n = np.bincount(values[mask], minlength=VALUES)
        s = np.bincount(values[mask], weights=y[mask], minlength=VALUES)
        s2 = np.bincount(values[mask], weights=y[mask] ** 2, minlength=VALUES)
        out += [MetricStatsRow("y", "mean", v, str(c), int(n[c]), float(s[c]), float(s2[c]), 0.0, 0.0, 0.0, 0, None,
                               "sim") for c in range(VALUES)]
    return out


def simulate_differential(runs: int, seed: int, planted: float = 0.0, users: int = 4000) -> DifferentialCalibration:
    """Run ``runs`` scans and count discoveries (any cell) and the planted cell's discovery."""
    rng = np.random.default_rng(seed)
    any_found = planted_found = tested = 0
    for _ in range(runs):
        arm = rng.integers(1, 3, users)
        attrs = rng.integers(0, VALUES, (ATTRIBUTES, users))
        y = rng.normal(0, 1, users) + planted * ((arm == 2) & (attrs[0] == 3))
        scan = scan_cells({f"a{j}": _rows(attrs[j], arm, y) for j in range(ATTRIBUTES)}, lambda v: int(v),
                          VARIANTS, {"y": "primary"}, SPECS, 0.05)
        tested = scan.tested
        any_found += bool(scan.cells)
        planted_found += any((c.attribute, c.value) == ("a0", "3") for c in scan.cells)
    return DifferentialCalibration(any_found / runs, planted_found / runs, tested)
