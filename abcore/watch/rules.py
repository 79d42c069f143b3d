"""The watcher's rules, pure: what one pass observes about an experiment and which rules fire.

No store, no clock, no network: :func:`observation_from` turns the results of
:func:`abcore.analysis.pipeline.analyze` into an :class:`Observation`, :func:`decide` returns every
:class:`Decision` of the experiment's ``auto_stop`` rules. Outcomes (better / worse / inconclusive) and
the primary metric's decision come from the judge, :mod:`abcore.analysis.verdict`. The runner
(:mod:`abcore.watch.runner`) stores snapshots and alerts and applies the actions.

Rules (``Experiment.auto_stop``, see :func:`abcore.experiments.validation.validate_auto_stop`):

* ``max_days`` / ``max_users``: stop once the experiment ran that long / exposed that many users;
* before ``min_days`` and ``min_users`` nothing below fires;
* ``srm`` (pause | alert): sample ratio mismatch (chi-square p < 0.001);
* ``guardrails`` (pause | stop | alert): a guardrail metric significantly worse in its bad direction;
* ``success`` (stop | alert): the primary metric reached a decision (significantly better or worse);
* ``novelty`` (pause | alert): a metric's lift decays (or grows) with days since first exposure
  (:func:`abcore.stats.novelty_test`; once per metric);
* ``differential`` (pause | alert): a guardrail's effect in a segment cell differs from the rest
  (the differential impact scan, Benjamini-Hochberg; once per guardrail and cell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abcore.analysis.health import novelty_sentence
from abcore.analysis.verdict import metric_outcome, primary_outcome
from abcore.formatting import format_p_clause, format_pct, is_finite
from abcore.store.tables import Experiment

__all__ = [
    "DEFAULT_PLANNED_USERS",
    "RULE_LABELS",
    "Decision",
    "MetricOutcome",
    "Observation",
    "decide",
    "describe_rules",
    "evaluate",
    "experiment_directions",
    "observation_from",
    "planned_users_per_variant",
    "rules_from_inputs",
]

#: Planned users per variant (the sequential test's tuning parameter) when the experiment states none.
DEFAULT_PLANNED_USERS = 10_000
_SEVERITY = {"stop": 3, "pause": 2, "alert": 1}


@dataclass(frozen=True)
class MetricOutcome:
    """One metric x treatment as the rules see it."""

    metric: str
    role: str
    variant: str
    outcome: str  # better | worse | inconclusive
    control_value: float
    value: float
    lift: float
    lift_ci_low: float
    lift_ci_high: float
    p_value: float  # always-valid, adjusted for multiple comparisons
    users: int
    control_users: int
    #: The novelty sentence when the lift changes with days since exposure (else empty).
    novelty: str = ""


@dataclass(frozen=True)
class Observation:
    """What one pass knows about one experiment: duration, users, SRM and the metric outcomes."""

    days_run: float
    users: int
    srm_p_value: float
    srm_mismatch: bool
    primary_metric: str
    metrics: tuple[MetricOutcome, ...]
    variant_users: tuple[tuple[str, int], ...] = ()
    #: (rule key, sentence) of every guardrail cell of the differential impact scan that survived.
    differential: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Decision:
    """A rule that fires: ``rule`` is the dedupe key, ``action`` pause | stop | alert."""

    rule: str
    kind: str  # guardrails | success | srm | novelty | differential | max_days | max_users
    action: str
    reason: str
    metric: str | None = None
    variant: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)


def experiment_directions(experiment: Experiment) -> dict[str, str]:
    """The good direction per metric from today's success criteria (the success metric's ``direction``,
    ``guardrail_directions``); metrics not named here follow :func:`metric_outcome`'s defaults."""
    criteria = experiment.success_criteria or {}
    out: dict[str, str] = {}
    for metric, direction in (criteria.get("guardrail_directions") or {}).items():
        if direction in ("increase", "decrease"):
            out[str(metric)] = direction
    metric = criteria.get("metric") or experiment.primary_metric
    if metric and criteria.get("direction") in ("increase", "decrease"):
        out[str(metric)] = criteria["direction"]
    return out


def planned_users_per_variant(experiment: Experiment, n_variants: int) -> float:
    """The fixed planned sample size per variant the watcher's sequential test is tuned for.

    ``min_samples_per_variant`` when set, else ``max_users`` of the rules split over the variants, else
    :data:`DEFAULT_PLANNED_USERS`. It never depends on the data seen so far, so the confidence sequence
    stays valid across passes (any value is valid; it only decides where the test is most sensitive).
    """
    if experiment.min_samples_per_variant:
        return float(experiment.min_samples_per_variant)
    max_users = (experiment.auto_stop or {}).get("max_users")
    if max_users:
        return max(float(max_users) / max(n_variants, 1), 1.0)
    return float(DEFAULT_PLANNED_USERS)


def observation_from(
    *,
    days_run: float,
    variant_users: Sequence[tuple[str, int]],
    srm_p_value: float,
    srm_mismatch: bool,
    metric_results: Sequence[Any],
    primary_metric: str,
    directions: Mapping[str, str] | None = None,
    differential_cells: Sequence[Any] = (),
) -> Observation:
    """Build the :class:`Observation` from per-variant users, the SRM test, ``MetricResult`` objects and the
    surviving cells of the differential impact scan (``DifferentialCell``; guardrails kept)."""
    metrics = tuple(
        MetricOutcome(
            metric=r.metric,
            role=r.role,
            variant=r.variant,
            outcome=metric_outcome(r, directions),
            control_value=float(r.control_value),
            value=float(r.value),
            lift=float(r.test.lift),
            lift_ci_low=float(r.test.lift_ci_low),
            lift_ci_high=float(r.test.lift_ci_high),
            p_value=float(r.p_value_adjusted),
            users=int(r.users),
            control_users=int(r.control_users),
            novelty=novelty_sentence(r) if getattr(r, "novelty", None) is not None and r.novelty.detected else "",
        )
        for r in metric_results
    )
    differential = tuple(
        (f"{c.metric}:{c.attribute}={c.value}:{c.variant}",
         f"Guardrail {c.metric} moves differently for {c.attribute} = {c.value} ({c.variant} "
         f"{format_pct(c.test.lift, signed=True)} there, BH-adjusted {format_p_clause(c.p_value_adjusted)} "
         "against the rest)")
        for c in differential_cells if c.role == "guardrail"
    )
    return Observation(
        days_run=float(days_run),
        users=int(sum(n for _, n in variant_users)),
        srm_p_value=float(srm_p_value),
        srm_mismatch=bool(srm_mismatch),
        primary_metric=primary_metric,
        metrics=metrics,
        variant_users=tuple((str(name), int(n)) for name, n in variant_users),
        differential=differential,
    )


def _numbers(m: MetricOutcome) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return x if is_finite(x) else None

    return {
        "control_value": clean(m.control_value),
        "value": clean(m.value),
        "lift": clean(m.lift),
        "lift_ci_low": clean(m.lift_ci_low),
        "lift_ci_high": clean(m.lift_ci_high),
        "p_value": clean(m.p_value),
        "users": m.users,
        "control_users": m.control_users,
    }


def _metric_text(m: MetricOutcome) -> str:
    return (f"{m.variant} {m.metric} {format_pct(m.lift, signed=True)} vs control (always-valid CI "
            f"{format_pct(m.lift_ci_low, signed=True)} to {format_pct(m.lift_ci_high, signed=True)}, "
            f"adjusted {format_p_clause(m.p_value)})")


def decide(rules: Mapping[str, Any], observation: Observation) -> list[Decision]:
    """Every rule of ``rules`` (a normalised ``auto_stop``) that fires on ``observation``, strongest first.

    Pure: no store, no clock. ``max_days`` / ``max_users`` always apply; the significance-based rules
    (``srm``, ``guardrails``, ``success``) only once ``min_days`` and ``min_users`` are both reached.
    The guardrail rule fires once per guardrail metric (any treatment worse), the success rule once for
    the primary metric (better or worse).
    """
    if not rules:
        return []
    out: list[Decision] = []
    obs = observation
    max_days, max_users = rules.get("max_days"), rules.get("max_users")
    if max_days is not None and obs.days_run >= float(max_days):
        out.append(Decision("max_days", "max_days", "stop",
                            f"Ran {obs.days_run:.1f} days, the maximum is {float(max_days):g}.",
                            numbers={"days_run": round(obs.days_run, 3), "max_days": max_days}))
    if max_users is not None and obs.users >= int(max_users):
        out.append(Decision("max_users", "max_users", "stop",
                            f"{obs.users:,} users exposed, the maximum is {int(max_users):,}.",
                            numbers={"users": obs.users, "max_users": max_users}))
    ready = obs.days_run >= float(rules.get("min_days") or 0) and obs.users >= int(rules.get("min_users") or 0)
    if ready:
        srm = rules.get("srm", "off")
        if srm != "off" and obs.srm_mismatch:
            split = ", ".join(f"{name} {n:,}" for name, n in obs.variant_users)
            out.append(Decision("srm", "srm", srm,
                                f"Sample ratio mismatch (chi-square {format_p_clause(obs.srm_p_value)}): {split}.",
                                numbers={"p_value": obs.srm_p_value, "users": dict(obs.variant_users)}))
        guard = rules.get("guardrails", "off")
        if guard != "off":
            seen: set[str] = set()
            for m in obs.metrics:
                if m.role == "guardrail" and m.outcome == "worse" and m.metric not in seen:
                    seen.add(m.metric)
                    out.append(Decision(f"guardrail:{m.metric}", "guardrails", guard,
                                        f"Guardrail {m.metric} got significantly worse: {_metric_text(m)}.",
                                        metric=m.metric, variant=m.variant, numbers=_numbers(m)))
        success = rules.get("success", "off")
        outcome, m = primary_outcome(obs.metrics, obs.primary_metric)
        if success != "off" and outcome != "inconclusive" and m is not None:
            word = "better" if outcome == "better" else "worse"
            out.append(Decision(f"success:{m.metric}", "success", success,
                                f"Primary metric {m.metric} reached a decision ({word}): {_metric_text(m)}.",
                                metric=m.metric, variant=m.variant, numbers={**_numbers(m), "outcome": outcome}))
        out += _over_time_rules(rules, obs)
    out.sort(key=lambda d: -_SEVERITY[d.action])
    return out


def _over_time_rules(rules: Mapping[str, Any], obs: Observation) -> list[Decision]:
    """The ``novelty`` (once per metric with a changing lift) and ``differential`` (once per surviving
    guardrail cell) decisions."""
    out: list[Decision] = []
    novelty = rules.get("novelty", "off")
    if novelty != "off":
        seen: set[str] = set()
        for m in obs.metrics:
            if m.novelty and m.metric not in seen:
                seen.add(m.metric)
                out.append(Decision(f"novelty:{m.metric}", "novelty", novelty, f"Novelty: {m.novelty}.",
                                    metric=m.metric, variant=m.variant, numbers=_numbers(m)))
    differential = rules.get("differential", "off")
    if differential != "off":
        for key, text in obs.differential:
            out.append(Decision(f"differential:{key}", "differential", differential, f"{text}.",
                                metric=key.split(":", 1)[0]))
    return out


def evaluate(
    rules: Mapping[str, Any],
    *,
    days_run: float,
    variant_users: Sequence[tuple[str, int]],
    srm_p_value: float,
    srm_mismatch: bool,
    metric_results: Sequence[Any],
    primary_metric: str,
    directions: Mapping[str, str] | None = None,
    differential_cells: Sequence[Any] = (),
) -> list[Decision]:
    """:func:`decide` on :func:`observation_from` -- the one decision step the watcher (and its
    calibration simulation) runs."""
    return decide(rules, observation_from(
        days_run=days_run, variant_users=variant_users, srm_p_value=srm_p_value, srm_mismatch=srm_mismatch,
        metric_results=metric_results, primary_metric=primary_metric, directions=directions,
        differential_cells=differential_cells,
    ))


# --------------------------------------------------------------------------- dashboard helpers

RULE_LABELS: dict[str, str] = {
    "guardrails": "Guardrail significantly worse",
    "success": "Primary metric reached a decision",
    "srm": "Sample ratio mismatch",
    "novelty": "Lift decaying with days since exposure",
    "differential": "Guardrail differs in a segment",
}


def describe_rules(rules: Mapping[str, Any] | None) -> str:
    """One line describing an ``auto_stop`` mapping, e.g. "guardrails: pause · success: alert · max 14 days"."""
    if not rules:
        return "not watched (no stopping rules)"
    parts = [f"{key}: {rules.get(key, 'off')}" for key in RULE_LABELS]
    for key, unit in (("max_days", "days"), ("max_users", "users")):
        if rules.get(key) is not None:
            parts.append(f"stop at {float(rules[key]):,g} {unit}")
    minimums = [f"{float(rules[k]):,g} {u}" for k, u in (("min_days", "days"), ("min_users", "users")) if rules.get(k)]
    if minimums:
        parts.append("nothing before " + " and ".join(minimums))
    return " · ".join(parts)


def rules_from_inputs(*, enabled: bool, guardrails: str, success: str, srm: str, max_days: float,
                      max_users: int, min_days: float, min_users: int, novelty: str = "off",
                      differential: str = "off") -> dict[str, Any]:
    """The ``auto_stop`` mapping for form inputs where 0 means "no limit"; {} when not enabled."""
    if not enabled:
        return {}
    return {
        "guardrails": guardrails, "success": success, "srm": srm, "novelty": novelty, "differential": differential,
        "max_days": float(max_days) if max_days else None, "max_users": int(max_users) if max_users else None,
        "min_days": float(min_days or 0), "min_users": int(min_users or 0),
    }
