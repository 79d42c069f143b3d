"""``analyze(experiment)``: queries -> statistics -> :class:`Results`.

The database aggregates (see :mod:`abcore.queries`); this module picks the tests, adjusts
p-values, runs the health checks, writes the verdict and shapes the output. Everything it
returns is a frozen dataclass; :meth:`Results.to_frame` and :meth:`Results.to_dict` give a
pandas table and a JSON-ready dict.

Rules
-----
* Population: assigned users with at least one exposure in ``[start, end)`` (``start``
  defaults to ``started_at``); the stored assignment decides the variant.
* Metrics: the experiment's primary, secondary and guardrail metrics (``metric_name`` of
  ``conversion`` events). A metric is *binary* (conversion rate: share of exposed users with
  a value >= 1) when every analysed event value is 0 or 1 (NULL counts as 1), otherwise a
  *mean* metric (per-user sum of values, exposed users without events count as 0).
* Tests: conversion -> z-test (unpooled), mean -> Welch; ``method="sequential"`` -> always-valid
  confidence sequences; ``method="bayesian"`` adds chance to beat control / expected loss next
  to the frequentist numbers; ``cuped=True`` adjusts with the same metric before
  ``started_at``. p-values are adjusted across treatment variants x metrics (Holm default).
* Metric definitions (:mod:`abcore.metrics`) give each metric its kind and direction; undefined
  names get defaults and a warning. Outcome, significance rule and verdict: :mod:`abcore.decisions`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from sqlmodel import Session

from abcore import decisions, queries, stats
from abcore.decisions import Verdict
from abcore.metrics import MetricSpec, default_spec, resolve_specs
from abcore.models import Experiment, ExperimentStatus
from abcore.stats import BayesResult, SRMResult, TestResult

__all__ = [
    "CORRECTIONS",
    "METHODS",
    "DailyPoint",
    "HealthCheck",
    "MetricResult",
    "Results",
    "SegmentResult",
    "VariantInfo",
    "Verdict",
    "analyze",
]

METHODS: tuple[str, ...] = ("frequentist", "sequential", "bayesian")
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh", "none")
Method = Literal["frequentist", "sequential", "bayesian"]


# --------------------------------------------------------------------------- result parts


@dataclass(frozen=True)
class VariantInfo:
    """One arm: configured share, assigned users and analysed (exposed) users."""

    variant_id: int
    name: str
    is_control: bool
    allocation_pct: float
    assigned: int
    users: int


@dataclass(frozen=True)
class MetricResult:
    """One metric for one treatment variant against the control.

    ``test`` is the TestResult of the chosen method (a ``SequentialResult`` or ``CupedResult``
    subclass where applicable); ``p_value_adjusted`` is its p-value after the multiple-comparison
    correction and ``significant`` compares that with ``alpha`` (for ``bayesian``: the chance
    to beat control is beyond ``1 - alpha/2`` or below ``alpha/2``).
    """

    metric: str
    role: str  # primary | secondary | guardrail
    kind: str  # binary | mean
    variant_id: int
    variant: str
    control_variant: str
    control_users: int
    users: int
    control_conversions: int | None
    conversions: int | None
    control_value: float
    value: float
    control_std: float
    std: float
    test: TestResult
    p_value_adjusted: float
    significant: bool
    method: str
    cuped: bool = False
    bayes: BayesResult | None = None
    #: Which way is better for this metric (from its definition): "increase" | "decrease".
    direction: str = "increase"
    #: "better" (significant move in the good direction), "worse" (significant move in the bad
    #: direction) or "inconclusive" (not significant, or not computable); see abcore.decisions.
    outcome: str = "inconclusive"


@dataclass(frozen=True)
class HealthCheck:
    """A data-quality check: ``ok`` or not, with a readable message (severity warning/error)."""

    name: str
    ok: bool
    severity: str  # ok | warning | error
    message: str


@dataclass(frozen=True)
class DailyPoint:
    """Cumulative state at the end of a UTC day for one variant and metric.

    ``value`` is the cumulative conversion rate (binary) or mean per user (mean metrics),
    ``lift`` the relative difference to the control's cumulative value (``nan`` for the control).
    """

    day: date
    variant_id: int
    variant: str
    metric: str
    users: int
    value: float
    lift: float


@dataclass(frozen=True)
class SegmentResult:
    """One metric x treatment comparison within one value of the segment attribute (unadjusted)."""

    segment: str
    value: str
    metric: str
    variant: str
    control_users: int
    users: int
    control_value: float
    treatment_value: float
    test: TestResult


@dataclass(frozen=True)
class Results:
    """Everything ``analyze`` computed for one experiment."""

    experiment_id: int
    experiment: str
    status: str
    method: str
    correction: str
    alpha: float
    cuped: bool
    start: datetime | None
    end: datetime | None
    computed_at: datetime
    days_run: float
    variants: tuple[VariantInfo, ...]
    metrics: tuple[MetricResult, ...]
    percentiles: tuple[queries.PercentileStats, ...]
    feedback: dict[str, dict[str, int]]
    srm: SRMResult
    health: tuple[HealthCheck, ...]
    verdict: Verdict
    daily: tuple[DailyPoint, ...]
    segment: str | None = None
    segments: tuple[SegmentResult, ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def control(self) -> VariantInfo:
        """The control arm."""
        return next(v for v in self.variants if v.is_control)

    def result(self, metric: str, variant: str | None = None) -> MetricResult:
        """The result for ``metric`` (and treatment ``variant``; the first treatment by default)."""
        for r in self.metrics:
            if r.metric == metric and (variant is None or r.variant == variant):
                return r
        raise KeyError(f"no result for metric {metric!r} and variant {variant!r}")

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per metric x treatment variant."""
        import pandas as pd

        rows = []
        for r in self.metrics:
            t = r.test
            row: dict[str, Any] = {
                "metric": r.metric,
                "role": r.role,
                "kind": r.kind,
                "variant": r.variant,
                "control_users": r.control_users,
                "users": r.users,
                "control_conversions": r.control_conversions,
                "conversions": r.conversions,
                "control_value": r.control_value,
                "value": r.value,
                "diff": t.diff,
                "ci_low": t.ci_low,
                "ci_high": t.ci_high,
                "lift": t.lift,
                "lift_ci_low": t.lift_ci_low,
                "lift_ci_high": t.lift_ci_high,
                "p_value": t.p_value,
                "p_value_adjusted": r.p_value_adjusted,
                "significant": r.significant,
            }
            if r.bayes is not None:
                row["chance_to_beat_control"] = r.bayes.chance_to_beat_control
                row["expected_loss"] = r.bayes.expected_loss
            rows.append(row)
        columns = list(rows[0]) if rows else [
            "metric", "role", "kind", "variant", "control_users", "users", "control_conversions", "conversions",
            "control_value", "value", "diff", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high",
            "p_value", "p_value_adjusted", "significant",
        ]
        return pd.DataFrame(rows, columns=columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: nan/inf -> None, datetimes and dates ISO strings, tuples -> lists."""
        out = _jsonable(asdict(self))
        out["frame"] = _jsonable(self.to_frame().to_dict(orient="records"))
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if hasattr(value, "item") and callable(value.item):  # numpy scalars from pandas
        return _jsonable(value.item())
    return value


# --------------------------------------------------------------------------- helpers


def _fmt_pct(x: float) -> str:
    return f"{x * 100:+.1f} %" if math.isfinite(x) else "n/a"


def _fmt_p(p: float) -> str:
    if not math.isfinite(p):
        return "n/a"
    return "< 0.001" if p < 0.001 else f"= {p:.3f}"


def _metric_roles(experiment: Experiment) -> list[tuple[str, str]]:
    seen: dict[str, str] = {}
    for name, role in (
        [(experiment.primary_metric, "primary")]
        + [(m, "secondary") for m in experiment.secondary_metrics or []]
        + [(m, "guardrail") for m in experiment.guardrail_metrics or []]
    ):
        if name and name not in seen:
            seen[name] = role
    criterion = (experiment.success_criteria or {}).get("metric")
    if criterion and criterion not in seen:
        seen[criterion] = "primary"
    return list(seen.items())


def _default_alpha(experiment: Experiment) -> float:
    confidence = (experiment.success_criteria or {}).get("confidence")
    try:
        c = float(confidence)
    except (TypeError, ValueError):
        return 0.05
    return round(1.0 - c, 10) if 0.0 < c < 1.0 else 0.05


def _days_run(experiment: Experiment, end: datetime | None, now: datetime) -> float:
    started = queries.as_utc(experiment.started_at)
    if started is None:
        return 0.0
    stop = queries.as_utc(experiment.stopped_at) or now
    if end is not None:
        stop = min(stop, queries.as_utc(end))  # type: ignore[type-var]
    return max((stop - started).total_seconds() / 86400.0, 0.0)


# --------------------------------------------------------------------------- analyze


def analyze(
    experiment: int | str | Experiment,
    *,
    session: Session | None = None,
    alpha: float | None = None,
    correction: str = "holm",
    method: Method = "frequentist",
    cuped: bool = False,
    start: datetime | None = None,
    end: datetime | None = None,
    segment: str | None = None,
    percentiles: bool = True,
    daily: bool = True,
    planned_n: float | None = None,
) -> Results:
    """Analyse an experiment (id, name or instance) and return its :class:`Results`.

    Parameters
    ----------
    session : Session, optional
        Defaults to a session on :func:`abcore.db.make_engine` (the configured database).
    alpha : float, optional
        Defaults to ``1 - success_criteria["confidence"]``, else 0.05.
    correction : {"holm", "bonferroni", "fdr_bh", "none"}
        Multiple-comparison correction across treatment variants x metrics.
    method : {"frequentist", "sequential", "bayesian"}
    cuped : bool
        Adjust with the pre-experiment value of the same metric (needs ``started_at``).
    start, end : datetime, optional
        Event window ``[start, end)`` (naive = UTC). ``start`` defaults to the experiment's
        ``started_at`` (events before it are pre-experiment data), ``end`` to open-ended.
    segment : str, optional
        Assignment attribute (e.g. ``"country"``) for a per-segment breakdown.
    percentiles, daily : bool
        Compute the percentile table / the daily cumulative series (default on).
    planned_n : float, optional
        Planned users per variant, the sequential test's tuning parameter. Defaults to
        ``min_samples_per_variant``, else the largest arm so far; a caller that looks repeatedly
        (``abcore.watch``) passes a fixed value so the confidence sequence stays time-uniform.

    Raises
    ------
    abcore.experiments.ExperimentNotFound
        Unknown experiment.
    ValueError
        Unknown ``method`` or ``correction``, or ``alpha`` outside (0, 1).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if session is None:
        from abcore.db import make_engine

        engine = make_engine()
        try:
            with Session(engine, expire_on_commit=False) as own:
                return analyze(
                    experiment, session=own, alpha=alpha, correction=correction, method=method, cuped=cuped,
                    start=start, end=end, segment=segment, percentiles=percentiles, daily=daily,
                    planned_n=planned_n,
                )
        finally:
            engine.dispose()

    from abcore.experiments import get_experiment, get_variants

    exp = get_experiment(session=session, ref=experiment)
    assert exp.id is not None
    alpha = _default_alpha(exp) if alpha is None else float(alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    now = datetime.now(UTC)
    # Events before the start are pre-experiment data (the CUPED covariate), never in-experiment results.
    start = queries.as_utc(start) if start is not None else queries.as_utc(exp.started_at)
    end = queries.as_utc(end)
    warnings: list[str] = []

    # One population (assigned users exposed in the window) for every query of this analysis.
    with queries.AnalysisScope(session, exp.id, start, end) as scope:
        variant_rows = get_variants(session=session, experiment_id=exp.id)
        control_row = next((v for v in variant_rows if v.is_control), variant_rows[0] if variant_rows else None)
        assigned = queries.participants(session=session, experiment_id=exp.id)
        metric_roles = _metric_roles(exp)
        metric_names = [m for m, _ in metric_roles]
        new_users = scope.daily_users()
        users_by_variant: dict[int, int] = {}
        for row in new_users:
            users_by_variant[row.variant_id] = users_by_variant.get(row.variant_id, 0) + row.new_users
        population = {(vid, None): n for vid, n in users_by_variant.items()}
        mstats = scope.metric_stats(metric_names)
        variants = tuple(
            VariantInfo(
                variant_id=int(v.id),  # type: ignore[arg-type]
                name=v.name,
                is_control=v is control_row,
                allocation_pct=float(v.allocation_pct),
                assigned=assigned.get(int(v.id), 0),  # type: ignore[arg-type]
                users=users_by_variant.get(int(v.id), 0),  # type: ignore[arg-type]
            )
            for v in variant_rows
        )
        names = {v.variant_id: v.name for v in variants}
        control = next((v for v in variants if v.is_control), None)
        treatments = [v for v in variants if not v.is_control]

        by_key = {(s.metric, s.variant_id): s for s in mstats}
        inferred = {
            m: ("mean" if sum(s.non_binary_values for s in mstats if s.metric == m) > 0 else "binary") for m in metric_names
        }
        specs = _metric_specs(session, exp, metric_roles, inferred, warnings)
        kinds = {m: _analysis_kind(specs[m], inferred[m]) for m in metric_names}
        warnings.extend(_unapplied_definition_parts(specs, metric_names, kinds))

        # --- per metric x treatment tests
        if planned_n is not None and planned_n > 0:
            planned_n = float(planned_n)
        else:
            planned_n = float(exp.min_samples_per_variant or 0) or float(max([v.users for v in variants] or [0]) or 1)
        if cuped and exp.started_at is None:
            warnings.append("CUPED needs the experiment's start time (pre-experiment data); analysed without CUPED.")
            cuped = False
        if cuped and method == "sequential":
            warnings.append("CUPED is not combined with sequential testing; analysed without CUPED.")
            cuped = False
        covariates: dict[str, dict[int, stats.CovariateSummary]] = {}
        if cuped:
            for m in metric_names:
                covariates[m] = scope.covariate_stats(
                    m, exp.started_at, binary=kinds[m] == "binary", users=population  # type: ignore[arg-type]
                )

        raw: list[tuple[str, str, VariantInfo, TestResult, BayesResult | None]] = []
        if control is not None:
            zero = queries.MetricStats(control.variant_id, "", 0, 0, 0, 0.0, 0.0, 0)
            for metric, role in metric_roles:
                a = by_key.get((metric, control.variant_id), zero)
                for tv in treatments:
                    b = by_key.get((metric, tv.variant_id), zero)
                    binary = kinds[metric] == "binary"
                    sa = a.binary if binary else a.summary
                    sb = b.binary if binary else b.summary
                    bayes: BayesResult | None = None
                    if cuped:
                        test: TestResult = stats.cuped(covariates[metric][control.variant_id],
                                                       covariates[metric][tv.variant_id], alpha=alpha)
                    elif method == "sequential":
                        test = stats.sequential_test(sa, sb, planned_n=planned_n, alpha=alpha)
                    elif binary:
                        test = stats.proportion_test_from(sa, sb, alpha=alpha)  # type: ignore[arg-type]
                    else:
                        test = stats.mean_test_from(sa, sb, alpha=alpha)  # type: ignore[arg-type]
                    if method == "bayesian":
                        if binary:
                            bayes = stats.bayes_proportion_from(sa, sb, credible_level=1 - alpha)  # type: ignore[arg-type]
                        else:
                            bayes = stats.bayes_mean_from(sa, sb, credible_level=1 - alpha)  # type: ignore[arg-type]
                    raw.append((metric, role, tv, test, bayes))
        p_values = [r[3].p_value for r in raw]
        adjusted = list(p_values) if correction == "none" else stats.adjust_pvalues(p_values, method=correction)
        results: list[MetricResult] = []
        for (metric, role, tv, test, bayes), p_adj in zip(raw, adjusted, strict=True):
            assert control is not None
            a = by_key.get((metric, control.variant_id))
            b = by_key.get((metric, tv.variant_id))
            binary = kinds[metric] == "binary"
            sa_any = (a.binary if binary else a.summary) if a else None
            sb_any = (b.binary if binary else b.summary) if b else None
            spec = specs[metric]
            bayes = decisions.directional_bayes(bayes, spec.direction)
            significant = decisions.is_significant(test, p_adj, alpha, bayes)
            estimate = bayes.diff if (bayes is not None and math.isfinite(bayes.diff)) else test.diff
            outcome = decisions.outcome(significant, estimate, spec.direction)
            results.append(
                MetricResult(
                    metric=metric,
                    role=role,
                    kind=kinds[metric],
                    variant_id=tv.variant_id,
                    variant=tv.name,
                    control_variant=control.name,
                    control_users=control.users,
                    users=tv.users,
                    control_conversions=a.converted if (a and binary) else (0 if binary else None),
                    conversions=b.converted if (b and binary) else (0 if binary else None),
                    control_value=sa_any.mean if sa_any else math.nan,
                    value=sb_any.mean if sb_any else math.nan,
                    control_std=sa_any.std if sa_any else math.nan,
                    std=sb_any.std if sb_any else math.nan,
                    test=test,
                    p_value_adjusted=float(p_adj),
                    significant=significant,
                    method=method,
                    cuped=cuped,
                    bayes=bayes,
                    direction=spec.direction,
                    outcome=outcome,
                )
            )

        # --- percentiles, feedback
        pct: tuple[queries.PercentileStats, ...] = ()
        mean_metrics = [m for m in metric_names if kinds[m] == "mean"]
        if percentiles and mean_metrics:
            # by_day: the binned pass over the events also yields the daily sums of the cumulative chart
            pct = tuple(scope.percentile_stats(mean_metrics, by_day=daily))
        feedback = {
            names.get(vid, str(vid)): counts
            for vid, counts in queries.feedback_counts(session=session, experiment_id=exp.id, start=start, end=end).items()
        }

        # --- health checks
        days_run = _days_run(exp, end, now)
        srm = stats.srm_test([v.users for v in variants], [v.allocation_pct for v in variants]) if variants else \
            SRMResult(statistic=math.nan, p_value=math.nan, mismatch=False, error="no variants")
        health = _health_checks(exp, variants, srm, days_run, method)

        verdict = _verdict(exp, variants, results, health, alpha, specs)

        series = (
            _daily_series(scope, exp, variants, metric_names, kinds, new_users, percentiles) if daily and control else ()
        )
        segments = _segments(scope, exp, variants, metric_names, kinds, segment, alpha) if segment else ()

        return Results(
            experiment_id=exp.id,
            experiment=exp.name,
            status=exp.status,
            method=method,
            correction=correction,
            alpha=alpha,
            cuped=cuped,
            start=start,
            end=end,
            computed_at=now,
            days_run=days_run,
            variants=variants,
            metrics=tuple(results),
            percentiles=pct,
            feedback=feedback,
            srm=srm,
            health=health,
            verdict=verdict,
            daily=series,
            segment=segment,
            segments=segments,
            warnings=tuple(warnings),
        )


def _health_checks(
    exp: Experiment, variants: Sequence[VariantInfo], srm: SRMResult, days_run: float, method: str
) -> tuple[HealthCheck, ...]:
    checks: list[HealthCheck] = []
    total = sum(v.users for v in variants)
    if total == 0:
        checks.append(HealthCheck("data", False, "error", "No exposed users yet: nothing to analyse."))
    if srm.mismatch:
        observed = ", ".join(f"{v.name} {v.users:,} ({v.allocation_pct:g} % configured)" for v in variants)
        checks.append(HealthCheck("srm", False, "error",
                                  f"Sample ratio mismatch (chi-square p {_fmt_p(srm.p_value)}): {observed}. "
                                  "Check assignment and exposure logging before trusting the results."))
    else:
        p = "n/a" if not math.isfinite(srm.p_value) else f"{srm.p_value:.3f}"
        checks.append(HealthCheck("srm", True, "ok", f"Traffic split matches the configured allocation (p = {p})."))
    need = int(exp.min_samples_per_variant or 0)
    short = [v for v in variants if v.users < need]
    if short:
        detail = ", ".join(f"{v.name} {v.users:,}" for v in short)
        checks.append(HealthCheck("samples", False, "warning",
                                  f"Too few users: {detail} (minimum {need:,} per variant)."))
    else:
        checks.append(HealthCheck("samples", True, "ok", f"Every variant has at least {need:,} users."))
    min_days = int(exp.min_duration_days or 0)
    if days_run < min_days:
        checks.append(HealthCheck("duration", False, "warning",
                                  f"Ran {int(days_run)} of the minimum {min_days} days."))
    else:
        checks.append(HealthCheck("duration", True, "ok", f"Ran {int(days_run)} days (minimum {min_days})."))
    if method != "sequential" and exp.status == ExperimentStatus.RUNNING.value:
        checks.append(HealthCheck("peeking", False, "warning",
                                  "The experiment is still running: fixed-horizon p-values are only valid at the "
                                  "planned end. To look early, choose Sequential (safe to peek) under Analysis options "
                                  "(CLI: --method sequential)."))
    return tuple(checks)


def _criterion(exp: Experiment) -> tuple[str, str, float]:
    crit = exp.success_criteria or {}
    metric = str(crit.get("metric") or exp.primary_metric)
    direction = str(crit.get("direction") or "increase")
    try:
        threshold = abs(float(crit.get("threshold") or 0.0))
    except (TypeError, ValueError):
        threshold = 0.0
    return metric, direction, threshold


def _verdict(
    exp: Experiment,
    variants: Sequence[VariantInfo],
    results: Sequence[MetricResult],
    health: Sequence[HealthCheck],
    alpha: float,
    specs: dict[str, MetricSpec],
) -> Verdict:
    """:func:`abcore.decisions.verdict` with the experiment's success metric, threshold and shipped variant."""
    metric, _direction, threshold = _criterion(exp)
    crit = exp.success_criteria or {}
    spec = specs.get(metric)
    if not crit.get("threshold") and spec is not None and spec.min_detectable_effect:
        threshold = abs(float(spec.min_detectable_effect))  # the metric's default threshold
    shipped = next((v.name for v in variants if v.variant_id == exp.winner_variant_id), None)
    return decisions.verdict(
        status=exp.status, shipped_variant=shipped, rollout_pct=exp.rollout_pct, success_metric=metric,
        threshold=threshold, results=results, health=health, alpha=alpha,
    )


def _metric_specs(
    session: Session,
    exp: Experiment,
    metric_roles: Sequence[tuple[str, str]],
    inferred: dict[str, str],
    warnings: list[str],
) -> dict[str, MetricSpec]:
    """The definition of every analysed metric; undefined names get :func:`abcore.metrics.default_spec`
    (inferred kind; guardrails ``decrease`` unless ``guardrail_directions`` says ``increase``; the
    success-criterion metric the criterion's direction) and a warning."""
    defined = resolve_specs(session=session, names=[m for m, _ in metric_roles])
    crit = exp.success_criteria or {}
    guard_dirs = crit.get("guardrail_directions") or {}
    crit_metric, crit_direction, _ = _criterion(exp)
    out: dict[str, MetricSpec] = {}
    missing: list[str] = []
    for metric, role in metric_roles:
        if metric in defined:
            out[metric] = defined[metric]
            continue
        kind = "mean" if inferred.get(metric) == "mean" else "binomial"
        spec = default_spec(metric, kind=kind, role=role)
        if role == "guardrail" and guard_dirs.get(metric) == "increase":
            spec = MetricSpec(**{**asdict(spec), "direction": "increase"})
        if metric == crit_metric and crit.get("direction") in ("increase", "decrease"):
            spec = MetricSpec(**{**asdict(spec), "direction": crit_direction})
        out[metric] = spec
        missing.append(f"{metric} ({spec.kind}, {spec.direction})")
    if missing:
        warnings.append("No metric definition for " + ", ".join(missing)
                        + ": analysed with defaults (inferred kind; higher is better, guardrails lower is better). "
                        "Define them with abcore.metrics.define_metric or `abcore metrics define`.")
    return out


def _unapplied_definition_parts(
    specs: Mapping[str, MetricSpec], metric_names: Sequence[str], kinds: Mapping[str, str]
) -> list[str]:
    """A warning per metric whose definition asks for what this analysis does not compute yet
    (ratio/quantile kinds, event counts, windows, delays, capping): never silently ignored."""
    out: list[str] = []
    for m in metric_names:
        spec = specs[m]
        if spec.kind in ("ratio", "quantile", "count"):
            out.append(f"Metric {m!r} is defined as {spec.kind}, which the store analysis does not compute yet: "
                       f"analysed as {'a conversion rate' if kinds[m] == 'binary' else 'a per-user mean of values'}.")
        if spec.window_hours is not None or spec.delay_hours or spec.cap is not None:
            out.append(f"Metric {m!r}: the window, delay and capping of its definition are not applied yet "
                       "(every event in the analysis window counts, uncapped).")
    return out


def _analysis_kind(spec: MetricSpec, inferred: str) -> str:
    """The test family of a metric: ``"binary"`` (conversion rate) or ``"mean"`` (per-user mean)."""
    if spec.kind == "binomial":
        return "binary"
    if spec.kind in ("mean", "count"):
        return "mean"
    return inferred


def _daily_series(
    scope: queries.AnalysisScope,
    exp: Experiment,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    kinds: dict[str, str],
    new_users: Sequence[queries.DailyUsers],
    with_bins: bool,
) -> tuple[DailyPoint, ...]:
    assert exp.id is not None
    rows = scope.daily_metric(
        [m for m in metric_names if kinds[m] == "mean"],
        [m for m in metric_names if kinds[m] == "binary"],
        with_bins=with_bins,
    )
    days = sorted({r.day for r in new_users} | {r.day for r in rows})
    users_on = {(r.day, r.variant_id): r.new_users for r in new_users}
    metric_on = {(r.day, r.variant_id, r.metric): r.value for r in rows}
    control = next((v for v in variants if v.is_control), None)
    points: list[DailyPoint] = []
    for metric in metric_names:
        cum_users = dict.fromkeys((v.variant_id for v in variants), 0)
        cum_value = dict.fromkeys((v.variant_id for v in variants), 0.0)
        for day in days:
            current: dict[int, float] = {}
            for v in variants:
                cum_users[v.variant_id] += users_on.get((day, v.variant_id), 0)
                cum_value[v.variant_id] += metric_on.get((day, v.variant_id, metric), 0.0)
                n = cum_users[v.variant_id]
                current[v.variant_id] = cum_value[v.variant_id] / n if n > 0 else math.nan
            base = current.get(control.variant_id, math.nan) if control else math.nan
            for v in variants:
                value = current[v.variant_id]
                lift = (value / base - 1.0) if (not v.is_control and base and math.isfinite(base)) else math.nan
                points.append(DailyPoint(day, v.variant_id, v.name, metric, cum_users[v.variant_id], value, lift))
    return tuple(points)


def _segments(
    scope: queries.AnalysisScope,
    exp: Experiment,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    kinds: dict[str, str],
    segment: str,
    alpha: float,
) -> tuple[SegmentResult, ...]:
    assert exp.id is not None
    rows = scope.segment_metric_stats(metric_names, segment)
    control = next((v for v in variants if v.is_control), None)
    if control is None:
        return ()
    by_key = {(r.segment, r.metric, r.variant_id): r for r in rows}
    out: list[SegmentResult] = []
    for seg in sorted({r.segment for r in rows}, key=str):
        for metric in metric_names:
            a = by_key.get((seg, metric, control.variant_id))
            for tv in (v for v in variants if not v.is_control):
                b = by_key.get((seg, metric, tv.variant_id))
                if a is None or b is None:
                    continue
                if kinds[metric] == "binary":
                    test = stats.proportion_test_from(a.binary, b.binary, alpha=alpha)
                    ca, cb = a.binary.mean, b.binary.mean
                else:
                    test = stats.mean_test_from(a.summary, b.summary, alpha=alpha)
                    ca, cb = a.summary.mean, b.summary.mean
                out.append(SegmentResult(segment, str(seg), metric, tv.name, a.users, b.users, ca, cb, test))
    return tuple(out)
