"""Interaction detection: every pair of running experiments that overlap in users, tested and adjusted together.

Two running (or paused) experiments overlap when they are not in the same layer (different layers, or at
least one in no layer); holdouts are left out (they are meant to overlap). For each overlapping pair:

* assignment dependence on the table of users in both by arm (:func:`abcore.stats.interactions.assignment_dependence`);
* for each metric both experiments use (primary, secondary or guardrail) and each pair of treatments, the effect
  interaction (:func:`abcore.stats.interactions.effect_interaction`): a user's value is the sum of the metric's
  values tracked for the first experiment of the pair (lower id), 0 when none.

Benjamini-Hochberg adjusts the dependence p-values over all pairs, and the effect p-values over all pairs,
metrics and treatment pairs (one family each); a finding is flagged when its adjusted p-value is below ``alpha``.
The counts come from one grouped query per pair and metric (SQLAlchemy Core, the same on SQLite and PostgreSQL).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import and_, func, literal, select
from sqlalchemy.orm import aliased
from sqlmodel import Session, col

from abcore.experiments.records import get_variants
from abcore.stats.corrections import adjust_pvalues
from abcore.stats.interactions import CellStats, assignment_dependence, effect_interaction
from abcore.store.tables import EventType, Experiment, ExperimentEvent, ExperimentStatus, UserAssignment

_LIVE = (ExperimentStatus.RUNNING.value, ExperimentStatus.PAUSED.value)


@dataclass(frozen=True)
class InteractionFinding:
    """One test of one pair: ``test`` is ``assignment`` (metric None) or ``effect`` (a metric and two treatments)."""

    experiment: str
    other: str
    test: str
    metric: str | None
    treatments: tuple[str, str] | None
    estimate: float
    p_value: float
    adjusted_p: float
    flagged: bool
    users_in_both: int
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The finding as JSON-ready values."""
        return asdict(self)


def overlapping_pairs(session: Session) -> list[tuple[Experiment, Experiment]]:
    """Pairs (lower id first) of running or paused non-holdout experiments not in one layer."""
    live = session.exec(
        select(Experiment).where(col(Experiment.status).in_(_LIVE), col(Experiment.kind) != "holdout").order_by(col(Experiment.id))
    ).scalars().all()
    return [(a, b) for a, b in itertools.combinations(live, 2) if a.layer_id is None or a.layer_id != b.layer_id]


def _metrics(e: Experiment) -> list[str]:
    return list(dict.fromkeys([e.primary_metric, *(e.secondary_metrics or []), *(e.guardrail_metrics or [])]))


def _cells(session: Session, a: Experiment, b: Experiment, metric: str | None) -> dict[tuple[int, int], CellStats]:
    """Users in both experiments by (variant of a, variant of b), with the sums of their ``metric`` values
    (tracked for ``a``; 0 for every user when ``metric`` is None)."""
    ua, ub = aliased(UserAssignment), aliased(UserAssignment)
    ev = ExperimentEvent.__table__
    value: Any = literal(0.0)
    if metric is not None:
        value = func.coalesce(
            select(func.sum(ev.c.value))
            .where(ev.c.experiment_id == a.id, ev.c.event_type == EventType.CONVERSION.value,
                   ev.c.metric_name == metric, ev.c.user_id == ua.user_id)
            .scalar_subquery(),
            0.0,
        )
    per_user = (
        select(ua.variant_id.label("av"), ub.variant_id.label("bv"), value.label("v"))
        .select_from(ua)
        .join(ub, and_(ub.user_id == ua.user_id, ub.experiment_id == b.id))
        .where(ua.experiment_id == a.id)
        .subquery()
    )
    rows = session.execute(
        select(per_user.c.av, per_user.c.bv, func.count(), func.sum(per_user.c.v), func.sum(per_user.c.v * per_user.c.v))
        .group_by(per_user.c.av, per_user.c.bv)
    )
    return {(av, bv): CellStats(int(n), float(s or 0.0), float(q or 0.0)) for av, bv, n, s, q in rows}


def _pair_findings(session: Session, a: Experiment, b: Experiment) -> list[dict[str, Any]]:
    """The raw (unadjusted) findings of one pair."""
    va = get_variants(session=session, experiment_id=a.id)  # type: ignore[arg-type]
    vb = get_variants(session=session, experiment_id=b.id)  # type: ignore[arg-type]
    counts = _cells(session, a, b, None)
    both = sum(c.n for c in counts.values())
    table = [[counts.get((x.id, y.id), CellStats(0, 0, 0)).n for y in vb] for x in va]  # type: ignore[arg-type]
    dep = assignment_dependence(table)
    out = [{"experiment": a.name, "other": b.name, "test": "assignment", "metric": None, "treatments": None,
            "estimate": dep.statistic, "p_value": dep.p_value, "users_in_both": both, "message": dep.message}]
    ca = next((v for v in va if v.is_control), va[0])
    cb = next((v for v in vb if v.is_control), vb[0])
    empty = CellStats(0, 0.0, 0.0)
    for metric in (m for m in _metrics(a) if m in set(_metrics(b))):
        cells = _cells(session, a, b, metric)
        for ta, tb in itertools.product([v for v in va if v.id != ca.id], [v for v in vb if v.id != cb.id]):
            result = effect_interaction(cells.get((ca.id, cb.id), empty), cells.get((ta.id, cb.id), empty),  # type: ignore[arg-type]
                                        cells.get((ca.id, tb.id), empty), cells.get((ta.id, tb.id), empty))  # type: ignore[arg-type]
            out.append({"experiment": a.name, "other": b.name, "test": "effect", "metric": metric,
                        "treatments": (ta.name, tb.name), "estimate": result.difference, "p_value": result.p_value,
                        "users_in_both": both, "message": result.message})
    return out


def interaction_scan(*, session: Session, alpha: float = 0.05) -> list[InteractionFinding]:
    """Every overlapping pair's findings, BH-adjusted per family (dependence; effects), flagged below ``alpha``."""
    raw = [f for a, b in overlapping_pairs(session) for f in _pair_findings(session, a, b)]
    findings: list[InteractionFinding] = []
    for test in ("assignment", "effect"):
        family = [f for f in raw if f["test"] == test]
        adjusted = adjust_pvalues([f["p_value"] for f in family], "fdr_bh")
        for f, q in zip(family, adjusted, strict=True):
            findings.append(InteractionFinding(**f, adjusted_p=q, flagged=bool(q < alpha)))
    return findings


def interactions_for(*, session: Session, experiment: str, alpha: float = 0.05) -> list[InteractionFinding]:
    """The findings of the scan that involve ``experiment`` (by name), the other experiment named in ``other``."""
    out = []
    for f in interaction_scan(session=session, alpha=alpha):
        if f.experiment == experiment:
            out.append(f)
        elif f.other == experiment:
            out.append(InteractionFinding(**{**asdict(f), "experiment": f.other, "other": f.experiment}))
    return out
