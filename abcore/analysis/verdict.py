"""Judging: outcome per metric (better / worse / inconclusive), significance, the verdict.

The only place that judges results; pure functions over the analysis' dataclasses and the
metric definitions (:class:`abcore.metrics.MetricSpec`), no SQL.

The significance rule (one rule for every method: frequentist, sequential, Bayesian, CUPED)
-------------------------------------------------------------------------------------------
A result is *significant* only when **both** hold:

1. the method's own test says so: adjusted p-value < alpha (frequentist, sequential, CUPED), or
   the chance to beat control beyond ``1 - alpha/2`` / below ``alpha/2`` (Bayesian); and
2. the interval that is displayed excludes 0. The displayed interval is the relative-lift
   interval (``lift_ci_low``, ``lift_ci_high``; the Bayesian credible interval of the lift for
   ``method="bayesian"``) when both ends are finite, otherwise the absolute difference interval
   (``ci_low``, ``ci_high``), see :func:`displayed_interval`.

So no row is "significant" while the interval shown next to it covers 0. The tests' lift interval is
Fieller's at the test's own critical value (:func:`abcore.stats._common.lift_interval`), which excludes 0
exactly when the test of the difference rejects, so it never vetoes a decisive frequentist or sequential
result (it is unbounded, and the difference interval shown, when the control mean is not distinguishable
from 0). Multiple-comparison adjustment and the Bayesian credible interval can still make the two differ.

Outcome: significant and the estimate moved in the metric's good direction -> ``"better"``;
significant in the bad direction -> ``"worse"``; otherwise ``"inconclusive"``. A guardrail
*breach* is a guardrail whose outcome is ``"worse"``. Every surface shows this outcome: the
results table, the forest plot, the CSV and JSON (``outcome``), the CLI report, the ship dialog
and the watcher's rules (:func:`metric_outcome`, :func:`primary_outcome`).

The verdict knows the experiment's status: a running or paused experiment whose result is not
ready is told to keep running; a completed one cannot collect more data, so it gets
``no_winner`` instead (nothing to ship; clone it to test again), see :func:`verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from abcore.formatting import format_p_clause, format_pct, is_finite
from abcore.stats import BayesResult, TestResult

__all__ = [
    "OUTCOMES",
    "VERDICTS",
    "BLOCKING_CHECKS",
    "Verdict",
    "default_direction",
    "directional_bayes",
    "displayed_interval",
    "is_significant",
    "metric_outcome",
    "outcome",
    "primary_outcome",
    "verdict",
]

OUTCOMES: tuple[str, ...] = ("better", "worse", "inconclusive")
VERDICTS: tuple[str, ...] = ("ship", "keep_control", "keep_running", "no_winner", "shipped", "cancelled")
#: Health checks that block a decision, in the order the verdict names them (SRM first).
BLOCKING_CHECKS: tuple[str, ...] = ("srm", "data", "samples", "duration")


@dataclass(frozen=True)
class Verdict:
    """The recommendation.

    ``decision`` is one of :data:`VERDICTS`; ``variant`` the variant to ship (``ship``) or that
    was shipped (``shipped``, with ``rollout_pct``); ``blockers`` the messages of every failed
    blocking health check (SRM first) when the decision is ``keep_running`` because of them.
    """

    decision: str
    variant: str | None
    reason: str
    rollout_pct: float | None = None
    blockers: tuple[str, ...] = ()


def _finite(*xs: float) -> bool:
    return all(is_finite(x) for x in xs)


def directional_bayes(bayes: BayesResult | None, direction: str) -> BayesResult | None:
    """The Bayesian summary in the metric's direction: for ``"decrease"`` (lower is better) the
    chance to beat control is ``P(treatment < control)`` and the expected loss of choosing the
    treatment is ``E[max(treatment - control, 0)]`` (the two losses swap). Unchanged for ``"increase"``."""
    if bayes is None or direction != "decrease":
        return bayes
    chance = bayes.chance_to_beat_control
    return replace(
        bayes,
        chance_to_beat_control=(1.0 - chance) if _finite(chance) else chance,
        expected_loss=bayes.expected_loss_control,
        expected_loss_control=bayes.expected_loss,
    )


def displayed_interval(test: TestResult, bayes: BayesResult | None = None) -> tuple[float, float, str]:
    """``(low, high, scale)`` of the interval shown for a result: ``scale`` is ``"relative"`` (the lift
    interval, Bayesian credible interval when ``bayes`` is given) when both ends are finite, else
    ``"absolute"`` (the difference interval)."""
    if bayes is not None:
        if _finite(bayes.lift_ci_low, bayes.lift_ci_high):
            return bayes.lift_ci_low, bayes.lift_ci_high, "relative"
        return bayes.diff_ci_low, bayes.diff_ci_high, "absolute"
    if _finite(test.lift_ci_low, test.lift_ci_high):
        return test.lift_ci_low, test.lift_ci_high, "relative"
    return test.ci_low, test.ci_high, "absolute"


def is_significant(
    test: TestResult, p_adjusted: float, alpha: float, bayes: BayesResult | None = None
) -> bool:
    """The significance rule of this module's docstring (test significant AND displayed interval excludes 0).

    ``bayes`` (direction does not matter: the rule is symmetric) switches to the Bayesian test.
    """
    if bayes is not None:
        chance = bayes.chance_to_beat_control
        test_says = _finite(chance) and (chance > 1 - alpha / 2 or chance < alpha / 2)
    else:
        test_says = _finite(p_adjusted) and p_adjusted < alpha
    if not test_says:
        return False
    low, high, _scale = displayed_interval(test, bayes)
    if math.isnan(low) or math.isnan(high):
        return False
    return bool(low > 0 or high < 0)


def outcome(significant: bool, estimate: float, direction: str) -> str:
    """``"better"`` / ``"worse"`` when significant and ``estimate`` (treatment - control) moved in the
    good / bad ``direction``; ``"inconclusive"`` otherwise."""
    if not significant or not _finite(estimate) or estimate == 0:
        return "inconclusive"
    good = estimate > 0 if direction == "increase" else estimate < 0
    return "better" if good else "worse"


def default_direction(role: str) -> str:
    """The good direction of a metric without a definition: ``"decrease"`` for a guardrail (latency,
    errors, cost must not increase), ``"increase"`` for primary and secondary metrics."""
    return "decrease" if role == "guardrail" else "increase"


def metric_outcome(result: Any, directions: Mapping[str, str] | None = None) -> str:
    """The outcome of one metric result (treatment vs control): ``"better"``, ``"worse"`` or ``"inconclusive"``.

    ``result.outcome`` when the result carries one (every ``MetricResult`` of ``analyze`` does: judged in
    the metric's direction). Otherwise :func:`outcome` of ``result.significant`` and ``result.test.diff``
    in ``directions[metric]``, else :func:`default_direction` of the result's role.
    """
    judged = getattr(result, "outcome", None)
    if judged in OUTCOMES:
        return str(judged)
    direction = (directions or {}).get(result.metric) or default_direction(result.role)
    return outcome(bool(result.significant), float(result.test.diff), direction)


def _lift(m: Any) -> float:
    lift = getattr(m, "lift", None)
    return float(m.test.lift if lift is None else lift)


def primary_outcome(metrics: Sequence[Any], primary_metric: str) -> tuple[str, Any | None]:
    """The decision on the primary metric across treatments, with the result it rests on.

    ``"better"`` (the treatment with the largest lift among those better), else ``"worse"`` (the first
    treatment worse), else ``"inconclusive"`` (the first treatment's result, ``None`` without one).
    ``metrics`` are results with ``metric`` and ``outcome`` and a ``lift`` (or ``test.lift``).
    """
    primary = [m for m in metrics if m.metric == primary_metric]
    better = [m for m in primary if m.outcome == "better"]
    if better:
        return "better", max(better, key=lambda m: abs(_lift(m)) if _finite(_lift(m)) else 0.0)
    worse = [m for m in primary if m.outcome == "worse"]
    if worse:
        return "worse", worse[0]
    return "inconclusive", primary[0] if primary else None


def _describe(r: Any, alpha: float) -> str:
    t = r.test
    level = round((1 - alpha) * 100)
    moved = "raises" if t.lift > 0 else "lowers" if t.lift < 0 else "leaves"
    low, high, scale = displayed_interval(t, r.bayes)
    shown = (f"{format_pct(low, signed=True)} to {format_pct(high, signed=True)}" if scale == "relative"
             else f"difference {low:.4g} to {high:.4g}")
    return f"{r.variant} {moved} {r.metric} by {format_pct(t.lift, signed=True)} ({level} % CI {shown})"


def _not_ready(status: str, problem: str, blockers: tuple[str, ...] = ()) -> Verdict:
    """The verdict when the result is not ready: keep running, unless the experiment is completed (it
    cannot collect more data): then there is no winner to ship."""
    if status == "completed":
        return Verdict("no_winner", None, f"No winner: the experiment is completed, so it cannot collect more "
                       f"data. {problem} Do not ship; clone the experiment to test again.", blockers=blockers)
    return Verdict("keep_running", None, f"Keep running: {problem}", blockers=blockers)


def _judge_candidate(r: Any, results: Sequence[Any], threshold: float, alpha: float) -> tuple[bool, str]:
    """Whether treatment result ``r`` of the success metric wins, with the sentence that says why (not)."""
    t = r.test
    sign = 1.0 if r.direction == "increase" else -1.0
    stat_text = (f"chance to win {r.bayes.chance_to_beat_control:.1%}" if r.bayes is not None
                 else f"adjusted {format_p_clause(r.p_value_adjusted)}")
    desc = _describe(r, alpha)
    if t.error and not _finite(t.lift) and not _finite(t.diff):
        return False, f"{r.variant}: {r.metric} cannot be compared ({t.error})"
    if r.outcome == "inconclusive":
        return False, f"{desc}, not significant ({stat_text})"
    if r.outcome == "worse":
        return False, f"{desc}, significantly worse ({stat_text})"
    if _finite(t.lift) and sign * t.lift < threshold:
        return False, f"{desc}, below the {threshold * 100:g} % threshold ({stat_text})"
    breaches = [f"{g.metric} {format_pct(g.test.lift, signed=True)}" for g in results
                if g.role == "guardrail" and g.variant_id == r.variant_id and g.outcome == "worse"]
    if breaches:
        return False, f"{desc}, but guardrail {', '.join(breaches)} got significantly worse"
    return True, f"{desc}, {'above' if threshold else 'beyond'} the {threshold * 100:g} % threshold, {stat_text}"


def verdict(
    *,
    status: str,
    shipped_variant: str | None,
    rollout_pct: float | None,
    success_metric: str,
    threshold: float,
    results: Sequence[Any],
    health: Sequence[Any],
    alpha: float,
) -> Verdict:
    """The recommendation for an experiment in ``status``.

    * ``cancelled`` experiments: ``cancelled``; completed with a shipped winner: ``shipped``
      (naming the variant and the rollout).
    * Any failed blocking health check (:data:`BLOCKING_CHECKS`, SRM first), or no data for the success
      metric: ``keep_running`` (the reason naming every blocker); a completed experiment cannot keep
      running, so it gets ``no_winner`` (do not ship).
    * A treatment whose success metric has outcome ``"better"`` with a relative lift of at least
      ``threshold`` in the good direction and no guardrail with outcome ``"worse"``: ``ship`` (the
      largest lift in the good direction if several); otherwise ``keep_control`` (do not ship).

    ``results`` are :class:`abcore.analysis.results.MetricResult` (``outcome`` and ``direction`` set),
    ``health`` :class:`abcore.analysis.results.HealthCheck`.
    """
    if status == "cancelled":
        return Verdict("cancelled", None, "Cancelled: the experiment was stopped without shipping; "
                       "everyone gets the default experience.")
    if status == "completed" and shipped_variant is not None:
        pct = 100.0 if rollout_pct is None else float(rollout_pct)
        return Verdict("shipped", shipped_variant, f"Shipped {shipped_variant} to {pct:g} % of users.",
                       rollout_pct=pct)
    failed: Mapping[str, Any] = {h.name: h for h in health if not h.ok}
    blockers = tuple(failed[name].message for name in BLOCKING_CHECKS if name in failed)
    if blockers:
        return _not_ready(status, " ".join(blockers), blockers)
    candidates = [r for r in results if r.metric == success_metric]
    if not candidates:
        return _not_ready(status, f"No data for the success metric {success_metric!r} yet.")
    winners: list[Any] = []
    reasons: dict[str, str] = {}
    notes: list[str] = []
    for r in candidates:
        wins, text = _judge_candidate(r, results, threshold, alpha)
        if wins:
            winners.append(r)
            reasons[r.variant] = text
        else:
            notes.append(text)
    if winners:
        best = max(winners, key=lambda r: (1.0 if r.direction == "increase" else -1.0) * (
            r.test.lift if _finite(r.test.lift) else r.test.diff))
        return Verdict("ship", best.variant, f"Ship {best.variant}: {reasons[best.variant]}.")
    return Verdict("keep_control", None, "Keep control: " + "; ".join(notes) + ".")
