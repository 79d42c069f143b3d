"""Epochs: the periods between changes of a running experiment's split or traffic share, analysed as strata.

A running experiment's split (``update_allocations``) and traffic share (``set_traffic_allocation``, or
``traffic_allocation`` in an ``update``) may change; users keep their variant, new users follow the new numbers.
When the split changes while the base rate drifts, the pooled comparison is biased (Simpson's paradox). The audit
log knows when each change happened and the numbers before and after (:func:`load_epochs`).

A user belongs to the epoch in which they were assigned (``assigned_at``; with an exposure-table source, their
first exposure). The one analysis query groups the per-variant sufficient statistics by epoch as well
(:func:`abcore.analysis.sql.population.epoch_label`); :class:`EpochStats` then

* estimates every metric within each epoch and combines them with weights proportional to the epoch's users
  (:func:`abcore.stats.stratified_test`; the source of the weights and variance is there) — the result shown;
* tests SRM in each epoch against that epoch's split and combines the chi-squares
  (:func:`abcore.stats.srm_test_strata`);
* adds the health item ``allocation_changed``: the split changed, and how far the pooled figure would differ.

Experiments whose split and traffic share never changed while running have no epochs: today's query and numbers.
The stratified estimate replaces the fixed-horizon frequentist test; sequential, Bayesian and CUPED analyses keep
the pooled figure, with a warning. The daily series, percentiles and segment breakdown stay pooled.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from abcore import stats
from abcore.analysis.compare import Arm, arm_estimate, summaries
from abcore.analysis.engines import MetricStatsRow
from abcore.analysis.overview import as_utc
from abcore.analysis.results import HealthCheck, MetricResult, VariantInfo
from abcore.formatting import format_p_clause, format_pct, format_pvalue
from abcore.metrics import MetricSpec
from abcore.stats import BayesResult, SRMResult, TestResult
from abcore.store.tables import AuditLog, Experiment

__all__ = ["Epoch", "EpochStats", "load_epochs"]

_ACTIONS = ("update_allocations", "set_traffic", "update")


@dataclass(frozen=True)
class Epoch:
    """One period of fixed split and traffic share: from ``start`` (``None``: the experiment's start)."""

    index: int
    start: datetime | None
    allocations: Mapping[str, float]
    traffic: float

    def split(self) -> str:
        """The split as ``10/90`` (variants in the given order of ``allocations``)."""
        return "/".join(f"{a:g}" for a in self.allocations.values())


def _changes(row: AuditLog) -> tuple[Any, Any]:
    """``(allocations change, traffic change)`` of an audit row, each ``(before, after)`` or ``None``."""
    details = row.details or {}
    if row.action == "update_allocations":
        return (details.get("before"), details.get("after")), None
    if row.action == "set_traffic":
        return None, (details.get("before"), details.get("after"))
    changed = details.get("changes") or {}
    pick = [(changed[f].get("before"), changed[f].get("after")) if isinstance(changed.get(f), Mapping) else None
            for f in ("allocations", "traffic_allocation")]
    return pick[0], pick[1]


def load_epochs(
    session: Session, exp: Experiment, variant_rows: Sequence[Any], end: datetime | None
) -> tuple[Epoch, ...]:
    """The experiment's epochs from its audit log: changes of the split or traffic share after ``started_at``
    (and before ``stopped_at`` and ``end``) that changed a number. ``()`` when there was none."""
    started = as_utc(exp.started_at)
    if started is None or exp.id is None:
        return ()
    stop = min((t for t in (as_utc(exp.stopped_at), as_utc(end)) if t is not None), default=None)
    rows = session.exec(
        select(AuditLog).where(AuditLog.experiment_id == exp.id, col(AuditLog.action).in_(_ACTIONS))
        .order_by(col(AuditLog.ts), col(AuditLog.id))
    ).all()
    names = [v.name for v in variant_rows]
    moments: list[tuple[datetime, Any, Any]] = []
    for row in rows:
        ts = as_utc(row.ts)
        split, traffic = _changes(row)
        split = split if split is not None and split[0] != split[1] else None
        traffic = traffic if traffic is not None and traffic[0] != traffic[1] else None
        if ts is not None and ts > started and (stop is None or ts < stop) and (split or traffic):
            moments.append((ts, split, traffic))
    if not moments:
        return ()
    first_split = next((s[0] for _, s, _ in moments if s), None)
    first_traffic = next((t[0] for _, _, t in moments if t), None)
    allocations = {n: float(a) for n, a in ((first_split or {}) or {v.name: v.allocation_pct for v in variant_rows})
                   .items() if n in names}
    traffic = float(first_traffic if first_traffic is not None else exp.traffic_allocation)
    epochs = [Epoch(0, None, allocations, traffic)]
    for ts, split, share in moments:
        if split:
            allocations = {**allocations, **{n: float(a) for n, a in split[1].items() if n in names}}
        if share:
            traffic = float(share[1])
        epochs.append(Epoch(len(epochs), ts, allocations, traffic))
    return tuple(epochs)


class EpochStats:
    """The per-epoch rows of one analysis: pooled rows for the rest of the pipeline, the stratified tests,
    per-epoch SRM and the ``allocation_changed`` health item."""

    def __init__(self, epochs: Sequence[Epoch], run: dict[str, list[Any]], vid: Any) -> None:
        """Take the per-epoch ``stats`` and ``users`` rows of ``run`` and put pooled ones in their place."""
        self.epochs = tuple(epochs)
        self.vid = vid
        self.rows: dict[tuple[str, int, int], MetricStatsRow] = {}
        for r in run["stats"]:
            v = vid(r.variant)
            if v is not None:
                self.rows[(r.metric, v, int(r.segment))] = r
        self.users: dict[tuple[int, int], int] = {}
        for u in run["users"]:
            if (v := vid(u["variant"])) is not None:
                key = (v, int(u["segment"]))
                self.users[key] = self.users.get(key, 0) + int(u["n"])
        run["stats"] = _pooled(run["stats"])
        days: dict[tuple[Any, Any], int] = {}
        for u in run["users"]:
            days[(u["variant"], u["day"])] = days.get((u["variant"], u["day"]), 0) + int(u["n"])
        run["users"] = [{"variant": v, "day": d, "n": n} for (v, d), n in days.items()]
        self.pooled_tests: dict[tuple[str, int], TestResult] = {}
        self.stratified = False

    def combine(
        self, spec: MetricSpec, ids: tuple[int, int], pair: tuple[Arm, Arm],
        pooled: tuple[TestResult, BayesResult | None], options: tuple[str, bool, float], warnings: list[str],
    ) -> tuple[Arm, Arm, TestResult, BayesResult | None]:
        """The arms and test shown for ``spec`` (control, treatment variant ``ids`` and ``pair`` of pooled arms):
        the stratified fixed-horizon test (arm values its weighted means), or with ``method`` sequential /
        Bayesian or CUPED the ``pooled`` one (warned once). ``options`` is ``(method, cuped, alpha)``."""
        (a, b), (method, cuped, alpha), (control_id, treatment_id) = pair, options, ids
        self.pooled_tests[(spec.name, treatment_id)] = pooled[0]
        if method != "frequentist" or cuped:
            note = ("The split or traffic share changed during the run: sequential, Bayesian and CUPED analyses "
                    "show the pooled comparison, which the change may bias (the fixed-horizon analysis is stratified "
                    "by epoch).")
            if note not in warnings:
                warnings.append(note)
            return a, b, pooled[0], pooled[1]
        strata = []
        for e in self.epochs:
            ae = summaries(self.rows.get((spec.name, control_id, e.index)), spec, control_id, alpha)
            be = summaries(self.rows.get((spec.name, treatment_id, e.index)), spec, treatment_id, alpha)
            (c, vc), (t, vt) = arm_estimate(ae), arm_estimate(be)
            strata.append(stats.Stratum(float(_users(ae) + _users(be)), c, vc, t, vt))
        test = stats.stratified_test(strata, alpha=alpha)
        self.stratified = True
        nan = math.nan
        return (dataclasses.replace(a, value=test.control, std=nan), dataclasses.replace(b, value=test.treatment,
                std=nan), test, None)

    def srm(self, variants: Sequence[VariantInfo]) -> tuple[SRMResult, HealthCheck]:
        """SRM per epoch against that epoch's split, combined (:func:`abcore.stats.srm_test_strata`), and its
        health item ``srm``."""
        observed = [[self.users.get((v.variant_id, e.index), 0) for v in variants] for e in self.epochs]
        weights = [[e.allocations.get(v.name, v.allocation_pct) for v in variants] for e in self.epochs]
        combined, each = stats.srm_test_strata(observed, weights)
        bad = [(e, r, o) for e, r, o in zip(self.epochs, each, observed, strict=True) if r.mismatch]
        if bad:
            detail = "; ".join(
                f"epoch {e.index + 1} ({format_p_clause(r.p_value)}): "
                + ", ".join(f"{v.name} {n:,}" for v, n in zip(variants, o, strict=True))
                + f" for a {e.split()} split" for e, r, o in bad)
            return combined, HealthCheck("srm", False, "error",
                                         f"Sample ratio mismatch within an epoch: {detail}. Check assignment and "
                                         "exposure logging before trusting the results.")
        if combined.mismatch:
            return combined, HealthCheck("srm", False, "error",
                                         f"Sample ratio mismatch over the {len(self.epochs)} epochs (chi-square "
                                         f"{format_p_clause(combined.p_value)}), each against its own split.")
        return combined, HealthCheck("srm", True, "ok",
                                     f"Traffic split matches each epoch's configured split ({len(self.epochs)} epochs, "
                                     f"combined p = {format_pvalue(combined.p_value)}).")

    def health(
        self, variants: Sequence[VariantInfo], results: Sequence[MetricResult], health: Sequence[HealthCheck],
    ) -> tuple[SRMResult, tuple[HealthCheck, ...]]:
        """``health`` with the per-epoch SRM item in place of the pooled one and ``allocation_changed`` after it."""
        srm, srm_item = self.srm(variants)
        items = [srm_item if h.name == "srm" else h for h in health]
        at = next((i + 1 for i, h in enumerate(items) if h.name == "srm"), len(items))
        items.insert(at, HealthCheck("allocation_changed", False, "warning", self._message(results)))
        return srm, tuple(items)

    def _message(self, results: Sequence[MetricResult]) -> str:
        """What changed when, how the results are combined, and the pooled figure of the first primary result."""
        parts = []
        for prev, e in zip(self.epochs, self.epochs[1:], strict=False):
            when = e.start.strftime("%Y-%m-%d %H:%M UTC") if e.start else "?"
            what = []
            if e.split() != prev.split():
                what.append(f"split {prev.split()} -> {e.split()}")
            if e.traffic != prev.traffic:
                what.append(f"traffic share {format_pct(prev.traffic, 0)} -> {format_pct(e.traffic, 0)}")
            parts.append(f"{when}: {', '.join(what)}")
        split = any(e.split() != self.epochs[0].split() for e in self.epochs)
        traffic = any(e.traffic != self.epochs[0].traffic for e in self.epochs)
        what = " and ".join(w for w, on in (("split", split), ("traffic share", traffic)) if on) or "split"
        text = f"The {what} changed during the run ({'; '.join(parts)}): {len(self.epochs)} epochs by assignment time."
        if not self.stratified:
            return text + " The results shown are pooled over the epochs (see the warnings)."
        text += (" Results are estimated within each epoch and combined, weighted by the epoch's users; "
                 "SRM is tested per epoch against its split.")
        shown = next((r for r in results if r.role == "primary"), results[0] if results else None)
        pooled = self.pooled_tests.get((shown.metric, shown.variant_id)) if shown else None
        if shown is not None and pooled is not None and math.isfinite(pooled.diff):
            text += (f" Pooled over the epochs (biased when the base rate drifted), {shown.variant} vs "
                     f"{shown.control_variant} on {shown.metric} would read {format_pct(pooled.lift, signed=True)}"
                     f" ({format_p_clause(pooled.p_value)}) instead of {format_pct(shown.test.lift, signed=True)}"
                     f" ({format_p_clause(shown.test.p_value)}).")
        return text


def _users(arm: Arm) -> int:
    """The arm's users in the epoch (a quantile metric: the users with a value)."""
    return arm.row.n if arm.row is not None else 0


def _pooled(rows: Sequence[MetricStatsRow]) -> list[MetricStatsRow]:
    """One row per (metric, variant): the sums over the epochs (a quantile has no pooled order statistics)."""
    out: dict[tuple[str, Any], MetricStatsRow] = {}
    for r in rows:
        key = (r.metric, r.variant)
        base = out.get(key)
        if base is None:
            out[key] = dataclasses.replace(r, segment="(all)", q_value=None, q_lower=None, q_upper=None)
            continue
        summed = {f: getattr(base, f) + getattr(r, f) for f in ("n", "sum_y", "sum_y2", "sum_x", "sum_x2", "sum_xy",
                                                                "q_n")}
        out[key] = dataclasses.replace(base, **summed, q_value=None, q_lower=None, q_upper=None)
    return list(out.values())
