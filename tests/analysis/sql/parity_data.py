"""One small deterministic data set for the engine parity suite, and a pandas/numpy oracle on its raw rows.

Every metric kind, delay and window, capping (absolute, pooled percentile), segments, CUPED
(pre-exposure events), NULL values, events before exposure / outside the window / after the end,
users assigned but never exposed, exposures of other experiments.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from abcore.metrics import MetricSpec

T0 = datetime(2026, 1, 1, tzinfo=UTC)
END = T0 + timedelta(days=10)
LOOKBACK_H = 14 * 24

METRICS = (
    MetricSpec(name="click", kind="binomial"),
    MetricSpec(name="click_count", kind="count", window_hours=48),
    MetricSpec(name="revenue", kind="mean", delay_hours=1, window_hours=72),
    MetricSpec(name="revenue_abs", kind="mean", cap="absolute", cap_upper=20.0, cap_lower=1.0),
    MetricSpec(name="revenue_pct", kind="mean", cap="percentile", cap_upper=0.9),
    MetricSpec(name="rev_per_click", kind="ratio", numerator="revenue", denominator="click"),
    MetricSpec(name="latency", kind="quantile", quantile=0.9),
    MetricSpec(name="latency_p50", kind="quantile", quantile=0.5),
    MetricSpec(name="latency_mean", kind="event_mean", window_hours=72),
)
# Capped/alias metrics read the events of this metric name.
SOURCE_NAME = {"click_count": "click", "revenue_abs": "revenue", "revenue_pct": "revenue", "latency_p50": "latency",
               "latency_mean": "latency"}


def rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(assignments, events) with ``variant`` in {1, 2}; deterministic (seed 11)."""
    rng = np.random.default_rng(11)
    assignments: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i in range(60):
        uid = f"u{i:03d}"
        variant = 1 + i % 2
        attrs = {"country": ["de", "fr", "us"][i % 3]} if i % 7 else {}
        assignments.append({"user_id": uid, "variant": variant, "attributes": attrs})
        if i % 13 == 5:
            continue  # assigned, never exposed: not in the population
        first = T0 + timedelta(hours=int(rng.integers(0, 120)), microseconds=int(rng.integers(0, 10**6)))
        if i % 17 == 3:
            first = END + timedelta(hours=1)  # exposed only after the end: not in the population
        events.append({"user_id": uid, "ts": first, "event_type": "exposure", "metric_name": None, "value": None})
        events.append({"user_id": uid, "ts": first + timedelta(hours=5), "event_type": "exposure",
                       "metric_name": None, "value": None})
        for _ in range(int(rng.integers(0, 6))):
            offset = timedelta(hours=float(rng.uniform(-30, 100)))
            name = ["click", "revenue", "latency"][int(rng.integers(0, 3))]
            value: float | None = round(float(rng.gamma(2.0, 6.0)), 3)
            if name == "click":
                value = None if rng.random() < 0.5 else 1.0
            elif rng.random() < 0.15:
                value = None
            events.append({"user_id": uid, "ts": first + offset, "event_type": "conversion",
                           "metric_name": name, "value": value})
        # Exact boundary cases: an event exactly at first exposure + delay and at + window (excluded).
        if i % 5 == 0:
            events.append({"user_id": uid, "ts": first + timedelta(hours=1), "event_type": "conversion",
                           "metric_name": "revenue", "value": 3.25})
            events.append({"user_id": uid, "ts": first + timedelta(hours=73), "event_type": "conversion",
                           "metric_name": "revenue", "value": 1000.0})
    events.append({"user_id": "u001", "ts": END + timedelta(hours=2), "event_type": "conversion",
                   "metric_name": "revenue", "value": 50.0})  # after the end
    return assignments, events


def _user_values(m: MetricSpec, e: pd.DataFrame) -> pd.Series:
    """The metric's value per user over the events ``e``: converted (0/1), event count, or sum of values."""
    if m.kind == "binomial":
        return e.groupby("user_id").size().clip(upper=1)
    if m.kind == "count":
        return e.groupby("user_id").size()
    return e.value.fillna(1.0).groupby(e.user_id).sum()


def _capped(m: MetricSpec, y: np.ndarray) -> np.ndarray:
    """``y`` with the metric's cap applied (a percentile cap pools the variants, nearest rank: numpy inverted_cdf)."""
    if m.cap == "absolute":
        return np.clip(y, m.cap_lower, m.cap_upper)
    if m.cap == "percentile":
        return np.minimum(y, np.quantile(y, m.cap_upper, method="inverted_cdf"))
    return y


def oracle(segment: str | None = None, cuped: bool = False) -> dict[tuple[str, int, str], dict[str, float]]:
    """Expected statistics computed with pandas/numpy directly on the raw rows (the independent source)."""
    assignments, events = rows()
    ev = pd.DataFrame(events)
    asg = pd.DataFrame(assignments)
    expo = ev[(ev.event_type == "exposure") & (ev.ts < END)].groupby("user_id").ts.min().rename("first")
    pop = asg.merge(expo, left_on="user_id", right_index=True)
    pop["segment"] = (
        pop.attributes.map(lambda a: a.get(segment, "(none)")) if segment else "(all)"
    )
    conv = ev[(ev.event_type == "conversion") & (ev.ts < END)].merge(pop[["user_id", "first"]], on="user_id")
    out: dict[tuple[str, int, str], dict[str, float]] = {}

    def window(m: MetricSpec, name: str) -> pd.DataFrame:
        e = conv[conv.metric_name == name]
        lo = e["first"] + pd.to_timedelta(m.delay_hours, unit="h")
        keep = e.ts >= lo
        if m.window_hours is not None:
            keep &= e.ts < lo + pd.to_timedelta(m.window_hours, unit="h")
        return e[keep]

    def per_user(m: MetricSpec, e: pd.DataFrame) -> pd.Series:
        return pop.user_id.map(_user_values(m, e)).fillna(0).astype(float).to_numpy()

    for m in METRICS:
        name = SOURCE_NAME.get(m.name, m.name)
        if m.kind == "quantile":
            e = window(m, name)
            e = e[e.value.notna()].merge(pop[["user_id", "variant", "segment"]], on="user_id")
            for (v, s), g in e.groupby(["variant", "segment"]):
                vals = np.sort(g.value.to_numpy())
                # numpy's nearest-rank definition (inverted_cdf): value at rank ceil(q N)
                qv = float(np.quantile(vals, m.quantile, method="inverted_cdf"))
                # n: every exposed user of the variant and segment, as for every other metric
                exposed = int(((pop.variant == v) & (pop.segment == s)).sum())
                out[(m.name, int(v), s)] = {"n": exposed, "q_n": len(vals), "q_value": qv}
            continue
        if m.kind == "ratio":
            y = per_user(MetricSpec(name="n", kind="mean"), window(m, m.numerator))
            x = per_user(MetricSpec(name="d", kind="mean"), window(m, m.denominator))
        elif m.kind == "event_mean":  # the user's sum of values (NULL = 1) and number of events
            y = per_user(MetricSpec(name="n", kind="mean"), window(m, name))
            x = per_user(MetricSpec(name="d", kind="count"), window(m, name))
        else:
            y = per_user(m, window(m, name))
            x = np.zeros_like(y)
            if cuped:
                e = conv[conv.metric_name == name]
                pre = e[(e.ts < e["first"]) & (e.ts >= e["first"] - pd.to_timedelta(LOOKBACK_H, unit="h"))]
                x = per_user(m, pre)
        y = _capped(m, y)
        frame = pd.DataFrame({"variant": pop.variant.to_numpy(), "segment": pop.segment.to_numpy(), "y": y, "x": x})
        for (v, s), g in frame.groupby(["variant", "segment"]):
            out[(m.name, int(v), s)] = {
                "n": len(g), "sum_y": math.fsum(g.y), "sum_y2": math.fsum(g.y**2), "sum_x": math.fsum(g.x),
                "sum_x2": math.fsum(g.x**2), "sum_xy": math.fsum(g.x * g.y),
            }
    return out


def oracle_daily() -> dict[tuple[int, int], int]:
    """Population users per (UTC day number since 1970-01-01 of first exposure, variant), by pandas."""
    assignments, events = rows()
    ev = pd.DataFrame(events)
    expo = ev[(ev.event_type == "exposure") & (ev.ts < END)].groupby("user_id").ts.min()
    pop = pd.DataFrame(assignments).merge(expo.rename("first"), left_on="user_id", right_index=True)
    day = (pop["first"] - pd.Timestamp("1970-01-01", tz="UTC")).dt.days
    return {(int(d), int(v)): int(n) for (d, v), n in pop.groupby([day, pop.variant]).size().items()}
