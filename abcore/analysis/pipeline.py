"""``analyze(experiment)``: queries -> statistics -> :class:`Results`.

The database aggregates (see :mod:`abcore.analysis.queries`); this module picks the tests, adjusts
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
  names get defaults and a warning. Outcome, significance rule and verdict: :mod:`abcore.analysis.verdict`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from sqlmodel import Session

from abcore import stats
from abcore.analysis import queries
from abcore.analysis import verdict as decisions
from abcore.analysis.engines import (
    ENGINES,
    Engine,
    MetricStatsRow,
    SourceConfig,
    compute_stats,
    duckdb_engine,
    load_source_config,
    query_source,
    spark_engine,
    store_engine,
)
from abcore.analysis.sql.build import (
    AnalysisStatements,
    QuerySource,
    build_analysis_statements,
    build_daily_query,
    build_kind_probe_query,
)
from abcore.analysis.verdict import Verdict
from abcore.metrics import MetricSpec, default_spec, resolve_specs
from abcore.stats import BayesResult, SRMResult, TestResult
from abcore.store.tables import Experiment, ExperimentStatus

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
    #: The test family: "binary" (conversion rate: binomial), "mean" (per-user mean: count, mean),
    #: "ratio" (delta method) or "quantile"; ``metric_kind`` is the definition's kind.
    kind: str
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
    #: direction) or "inconclusive" (not significant, or not computable); see abcore.analysis.verdict.
    outcome: str = "inconclusive"
    #: The metric definition's kind: binomial | count | mean | ratio | quantile.
    metric_kind: str = "binomial"


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
    #: Which engine computed the metric statistics: "store", "duckdb" or "spark".
    engine: str = "store"

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
                "metric_kind": r.metric_kind,
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
            "metric", "role", "kind", "metric_kind", "variant", "control_users", "users", "control_conversions", "conversions",
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
    engine: str | Engine = "store",
    source: str | Path | dict[str, Any] | SourceConfig | None = None,
) -> Results:
    """Analyse an experiment (id, name or instance) and return its :class:`Results`.

    Every metric number comes from the one query of :func:`abcore.analysis.sql.build.build_stats_query`
    (the metric definitions applied: kind, window, delay, capping), run on ``engine``.

    Parameters
    ----------
    session : Session, optional
        Defaults to a session on :func:`abcore.store.db.make_engine` (the configured database). The
        experiment, its variants, assignments counts and feedback always come from this store.
    alpha : float, optional
        Defaults to ``1 - success_criteria["confidence"]``, else 0.05.
    correction : {"holm", "bonferroni", "fdr_bh", "none"}
        Multiple-comparison correction across treatment variants x metrics.
    method : {"frequentist", "sequential", "bayesian"}
    cuped : bool
        Adjust binomial / count / mean metrics with the same metric in the 14 days before each
        user's first exposure (warned per metric when no user has such data).
    start, end : datetime, optional
        Event window ``[start, end)`` (naive = UTC). ``start`` defaults to the experiment's
        ``started_at`` (events before it are pre-experiment data), ``end`` to open-ended.
    segment : str, optional
        Assignment attribute (e.g. ``"country"``; with an exposure-table source a declared segment
        column) for a per-segment breakdown.
    percentiles, daily : bool
        Compute the percentile table (store engine only) / the daily cumulative series (default on).
    planned_n : float, optional
        Planned users per variant, the sequential test's tuning parameter. Defaults to
        ``min_samples_per_variant``, else the largest arm so far; a caller that looks repeatedly
        (``abcore.watch.runner``) passes a fixed value so the confidence sequence stays time-uniform.
    engine : {"store", "duckdb", "spark"} or an Engine
        Where the metric query runs: ``"store"`` the session's database; ``"duckdb"`` embedded DuckDB
        over the store (or the ``source`` files); ``"spark"`` Spark SQL (the active session if any,
        else ``local[2]``); or a ready :class:`abcore.analysis.engines.Engine`. ``Results.engine`` says which.
        DuckDB and Spark read the store through their own connection, so ``session`` is committed
        first (they see committed rows only); Spark copies the store's two tables in (small stores).
    source : path, JSON text, dict or SourceConfig, optional
        Where the events (and optionally exposures) live (:func:`abcore.analysis.engines.load_source_config`);
        default the store's tables. With an exposure table the experiment is matched by its name.

    Raises
    ------
    abcore.experiments.errors.ExperimentNotFound
        Unknown experiment.
    ValueError
        Unknown ``method``, ``correction`` or ``engine``, ``alpha`` outside (0, 1), an invalid
        source config or a source the engine cannot read.
    ImportError
        The engine's optional dependency is not installed (the message names the extra).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if isinstance(engine, str) and engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)} or an Engine; got {engine!r}")
    config = None if source is None or isinstance(source, SourceConfig) else load_source_config(source)
    config = source if isinstance(source, SourceConfig) else config
    if session is None:
        from abcore.store.db import make_engine

        db = make_engine()
        try:
            with Session(db, expire_on_commit=False) as own:
                return analyze(
                    experiment, session=own, alpha=alpha, correction=correction, method=method, cuped=cuped,
                    start=start, end=end, segment=segment, percentiles=percentiles, daily=daily,
                    planned_n=planned_n, engine=engine, source=config,
                )
        finally:
            db.dispose()

    from abcore.experiments.records import get_experiment, get_variants

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
    runner = _open_engine(engine, config, session)
    qsource = query_source(runner, config)
    # The store population joins assignments by experiment id; an exposure table is keyed by name.
    key: Any = exp.name if qsource.exposures is not None else exp.id

    variant_rows = get_variants(session=session, experiment_id=exp.id)
    control_row = next((v for v in variant_rows if v.is_control), variant_rows[0] if variant_rows else None)
    assigned = queries.participants(session=session, experiment_id=exp.id)
    metric_roles = _metric_roles(exp)
    metric_names = [m for m, _ in metric_roles]
    ids = {int(v.id): int(v.id) for v in variant_rows}  # type: ignore[arg-type]
    by_name = {v.name: int(v.id) for v in variant_rows}  # type: ignore[arg-type]

    def vid(value: Any) -> int | None:
        """The variant id of a query's ``variant`` value (the store's id, or a variant name)."""
        if isinstance(value, str) and value in by_name:
            return by_name[value]
        try:
            return ids.get(int(value))
        except (TypeError, ValueError):
            return None

    # --- definitions (undefined names: kind guessed from the stored values, defaults, a warning)
    defined = resolve_specs(session=session, names=metric_names)
    inferred: dict[str, str] = {}
    # Events in the store's own table: the probe asks the store (an index range that stops at the first
    # non-0/1 value; another engine reading the store would scan the whole table). The same rows either way.
    prober: Engine = runner
    if config is None and isinstance(engine, str) and engine != "store":  # the engine opened the session's store
        prober = store_engine(session)
    psource = qsource if prober is runner else query_source(prober)
    for m in metric_names:
        if m not in defined:
            probe = build_kind_probe_query(m, experiment=key, dialect=prober.dialect, source=psource, end=end)
            inferred[m] = "mean" if int(prober.run(probe)[0]["n"] or 0) else "binary"
    specs = _metric_specs(session, exp, metric_roles, inferred, warnings)

    # --- the one analysis query: arm sizes per day, metric statistics, daily series, percentiles
    cuped = _cuped_allowed(cuped, method, warnings)
    pct_names = [m for m in metric_names if specs[m].kind in ("count", "mean")] if percentiles else []
    run = _run_analysis(runner, qsource, key, [specs[m] for m in metric_names], start, end, cuped, alpha,
                        daily, pct_names)
    new_users: list[queries.DailyUsers] = []
    unknown_variants: set[str] = set()
    for r in run["users"]:
        v = vid(r["variant"])
        if v is None:
            unknown_variants.add(str(r["variant"]))
            continue
        new_users.append(queries.DailyUsers(date.fromordinal(_EPOCH_ORDINAL + int(r["day"])), v, int(r["n"])))
    new_users.sort(key=lambda r: (r.day, r.variant_id))
    if unknown_variants:
        warnings.append(f"Exposures to unknown variants left out: {', '.join(sorted(unknown_variants))}.")
    users_by_variant: dict[int, int] = {}
    for row in new_users:
        users_by_variant[row.variant_id] = users_by_variant.get(row.variant_id, 0) + row.new_users
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

    if planned_n is not None and planned_n > 0:
        planned_n = float(planned_n)
    else:
        planned_n = float(exp.min_samples_per_variant or 0) or float(max([v.users for v in variants] or [0]) or 1)
    not_adjustable = [m for m in metric_names if specs[m].kind in ("ratio", "quantile")]
    if cuped and not_adjustable:
        warnings.append("CUPED adjusts binomial, count and mean metrics only; analysed without adjustment: "
                        + ", ".join(not_adjustable) + ".")
    if method == "sequential" and not_adjustable:
        warnings.append("Sequential tests cover binomial, count and mean metrics only; fixed-horizon tests (not safe "
                        "to peek) for: " + ", ".join(not_adjustable) + ".")
    if method == "bayesian" and not_adjustable:
        warnings.append("No Bayesian chance to beat control for ratio or quantile metrics: "
                        + ", ".join(not_adjustable) + " (frequentist numbers only).")

    stats_rows = run["stats"]
    by_key = {(r.metric, v): r for r in stats_rows if (v := vid(r.variant)) is not None}
    cuped_for = {m: cuped and specs[m].kind not in ("ratio", "quantile") for m in metric_names}
    for m in metric_names:
        if cuped_for[m] and not any(r.sum_x2 > 0 for r in stats_rows if r.metric == m):
            warnings.append(f"CUPED: no pre-exposure data for metric {m}; analysed without adjustment.")
            cuped_for[m] = False

    raw: list[tuple[str, str, VariantInfo, TestResult, BayesResult | None]] = []
    if control is not None:
        for metric, role in metric_roles:
            spec = specs[metric]
            a = _summaries(by_key.get((metric, control.variant_id)), spec, control.variant_id, alpha)
            for tv in treatments:
                b = _summaries(by_key.get((metric, tv.variant_id)), spec, tv.variant_id, alpha)
                test, bayes = _test(spec, a, b, method=method, cuped=cuped_for[metric], alpha=alpha,
                                    planned_n=planned_n)
                raw.append((metric, role, tv, test, bayes))
    p_values = [r[3].p_value for r in raw]
    adjusted = list(p_values) if correction == "none" else stats.adjust_pvalues(p_values, method=correction)
    results: list[MetricResult] = []
    for (metric, role, tv, test, bayes), p_adj in zip(raw, adjusted, strict=True):
        assert control is not None
        spec = specs[metric]
        a = _summaries(by_key.get((metric, control.variant_id)), spec, control.variant_id, alpha)
        b = _summaries(by_key.get((metric, tv.variant_id)), spec, tv.variant_id, alpha)
        bayes = decisions.directional_bayes(bayes, spec.direction)
        significant = decisions.is_significant(test, p_adj, alpha, bayes)
        estimate = bayes.diff if (bayes is not None and math.isfinite(bayes.diff)) else test.diff
        outcome = decisions.outcome(significant, estimate, spec.direction)
        binary = spec.kind == "binomial"
        results.append(
            MetricResult(
                metric=metric,
                role=role,
                kind=_FAMILY[spec.kind],
                variant_id=tv.variant_id,
                variant=tv.name,
                control_variant=control.name,
                control_users=control.users,
                users=tv.users,
                control_conversions=a.binary.conversions if binary else None,
                conversions=b.binary.conversions if binary else None,
                control_value=a.value,
                value=b.value,
                control_std=a.std,
                std=b.std,
                test=test,
                p_value_adjusted=float(p_adj),
                significant=significant,
                method=method,
                cuped=cuped_for[metric],
                bayes=bayes,
                direction=spec.direction,
                outcome=outcome,
                metric_kind=spec.kind,
            )
        )

    # --- percentiles, feedback
    pct = tuple(sorted(
        (queries.PercentileStats(variant_id=v, metric=str(r["metric"]), count=int(r["n"]), min=float(r["v_min"]),
                                 max=float(r["v_max"]), mean=float(r["sum_y"]) / int(r["n"]),
                                 percentiles={p: float(r[f"p{p}"]) for p in queries.PERCENTILES})
         for r in run["percentile"] if (v := vid(r["variant"])) is not None and int(r["n"] or 0) > 0),
        key=lambda p: (p.metric, p.variant_id),
    ))
    feedback = {
        names.get(v, str(v)): counts
        for v, counts in queries.feedback_counts(session=session, experiment_id=exp.id, start=start, end=end).items()
    }

    # --- health checks
    days_run = _days_run(exp, end, now)
    srm = stats.srm_test([v.users for v in variants], [v.allocation_pct for v in variants]) if variants else \
        SRMResult(statistic=math.nan, p_value=math.nan, mismatch=False, error="no variants")
    health = _health_checks(exp, variants, srm, days_run, method)
    verdict = _verdict(exp, variants, results, health, alpha, specs)

    series: tuple[DailyPoint, ...] = ()
    if daily and control and metric_names:
        series = _daily_series(run["daily"], vid, variants, metric_names, specs, new_users)
    segments = _segments(runner, qsource, key, vid, start, end, variants, metric_names, specs, segment, alpha) \
        if segment else ()

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
        engine=runner.name,
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
    """:func:`abcore.analysis.verdict.verdict` with the experiment's success metric, threshold and shipped variant."""
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


#: The test family of each definition kind (``MetricResult.kind``, what pages and exports read).
_FAMILY: dict[str, str] = {"binomial": "binary", "count": "mean", "mean": "mean", "ratio": "ratio",
                           "quantile": "quantile"}
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _open_engine(engine: str | Engine, config: SourceConfig | None, session: Session) -> Engine:
    """The engine object for ``engine`` (a name or a ready Engine), set up to read the store and/or ``config``."""
    files = config is not None and (config.format != "table" or config.exposures_format not in ("table", None))
    needs_store = config is None or config.exposures is None  # the population comes from the store's assignments
    if not isinstance(engine, str):
        return engine
    bind = session.get_bind()
    if engine == "store":
        if files:
            raise ValueError("a parquet or csv source needs engine 'duckdb' or 'spark' (the store engine reads tables)")
        return store_engine(session)
    url = bind.url.render_as_string(hide_password=False)
    if engine == "duckdb":
        try:
            import duckdb  # noqa: F401
        except ImportError as exc:
            raise ImportError("engine 'duckdb' needs the duckdb extra: pip install 'abcore[duckdb]'") from exc
        if bind.dialect.name == "sqlite" and bind.url.database in (None, "", ":memory:"):
            raise ValueError("engine 'duckdb' reads the store from its file: an in-memory SQLite store cannot be attached")
        session.commit()  # DuckDB reads the store through its own connection: it sees committed rows only
        return duckdb_engine(store_url=url) if needs_store or config is None else duckdb_engine()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ImportError("engine 'spark' needs the spark extra: pip install 'abcore[spark]'") from exc
    spark = spark_engine(SparkSession.getActiveSession())
    if needs_store:
        session.commit()
        spark.load_store(url)
    return spark


@dataclass(frozen=True)
class _Arm:
    """One variant's statistics of one metric, in the shape its test needs."""

    kind: str
    row: MetricStatsRow | None
    binary: stats.BinarySummary
    mean: stats.MeanSummary
    covariate: stats.CovariateSummary
    ratio: stats.RatioSummary
    quantile: stats.QuantileSummary
    value: float
    std: float


def _summaries(row: MetricStatsRow | None, spec: MetricSpec, variant_id: int, alpha: float) -> _Arm:
    """The summaries of ``row`` (``None``: no users in the variant)."""
    n = row.n if row else 0
    sy, sy2, sx, sx2, sxy = (row.sum_y, row.sum_y2, row.sum_x, row.sum_x2, row.sum_xy) if row else (0.0,) * 5
    binary = stats.BinarySummary(n=n, conversions=int(round(sy)))
    mean = stats.MeanSummary(n=n, sum=sy, sum_squares=sy2)
    covariate = stats.CovariateSummary(n=n, sum_y=sy, sum_y2=sy2, sum_x=sx, sum_x2=sx2, sum_xy=sxy)
    # ratio_test's summary names the numerator x and the denominator y (the query: y and x).
    ratio = stats.RatioSummary(n=n, sum_x=sy, sum_x2=sy2, sum_y=sx, sum_y2=sx2, sum_xy=sxy)
    q = float(spec.quantile or 0.5)
    qv = (row.q_value, row.q_lower, row.q_upper) if row else (None, None, None)
    quantile = stats.QuantileSummary(
        n=row.q_n if row else 0, q=q, value=math.nan if qv[0] is None else qv[0],
        lower=math.nan if qv[1] is None else qv[1], upper=math.nan if qv[2] is None else qv[2], alpha=alpha,
    )
    if spec.kind == "binomial":
        value, std = binary.mean, binary.std
    elif spec.kind == "ratio":
        value, std = ratio.mean, math.nan
    elif spec.kind == "quantile":
        value, std = quantile.value, math.nan
    else:
        value, std = mean.mean, mean.std
    return _Arm(spec.kind, row, binary, mean, covariate, ratio, quantile, value, std)


def _test(
    spec: MetricSpec, a: _Arm, b: _Arm, *, method: str, cuped: bool, alpha: float, planned_n: float
) -> tuple[TestResult, BayesResult | None]:
    """The test of ``spec``'s kind: z-test (binomial), Welch (count, mean), delta method (ratio),
    order-statistic z-test (quantile); CUPED, sequential and Bayesian variants where they apply."""
    if spec.kind == "ratio":
        return stats.ratio_test(a.ratio, b.ratio, alpha=alpha), None
    if spec.kind == "quantile":
        return stats.quantile_test(a.quantile, b.quantile, alpha=alpha), None
    binary = spec.kind == "binomial"
    sa: Any = a.binary if binary else a.mean
    sb: Any = b.binary if binary else b.mean
    bayes: BayesResult | None = None
    if cuped:
        test: TestResult = stats.cuped(a.covariate, b.covariate, alpha=alpha)
    elif method == "sequential":
        test = stats.sequential_test(sa, sb, planned_n=planned_n, alpha=alpha)
    elif binary:
        test = stats.proportion_test_from(sa, sb, alpha=alpha)
    else:
        test = stats.mean_test_from(sa, sb, alpha=alpha)
    if method == "bayesian":
        if binary:
            bayes = stats.bayes_proportion_from(sa, sb, credible_level=1 - alpha)
        else:
            bayes = stats.bayes_mean_from(sa, sb, credible_level=1 - alpha)
    return test, bayes


def _cuped_allowed(cuped: bool, method: str, warnings: list[str]) -> bool:
    if cuped and method == "sequential":
        warnings.append("CUPED is not combined with sequential testing; analysed without CUPED.")
        return False
    return cuped


def _run_analysis(
    runner: Engine, qsource: QuerySource, key: Any, metrics: Sequence[MetricSpec], start: datetime | None,
    end: datetime | None, cuped: bool, alpha: float, daily: bool, pct_names: Sequence[str],
) -> dict[str, list[Any]]:
    """Run :func:`abcore.analysis.sql.build.build_analysis_statements` (one query; on SQLite after its TEMP population);
    its rows by ``part`` (``stats`` rows as :class:`abcore.analysis.engines.MetricStatsRow`). Without metrics only the
    arm sizes are queried."""
    out: dict[str, list[Any]] = {"stats": [], "users": [], "daily": [], "percentile": []}
    if not metrics:
        sql = build_daily_query(experiment=key, dialect=runner.dialect, source=qsource, start=start, end=end)
        out["users"] = [{"variant": r["variant"], "day": r["day"], "n": r["users"]} for r in runner.run(sql)]
        return out
    plan = build_analysis_statements(metrics, experiment=key, dialect=runner.dialect, source=qsource, start=start,
                                     end=end, cuped=cuped, quantile_alpha=alpha, daily=daily, percentiles=pct_names)
    kinds = {m.name: m.kind for m in metrics}
    for r in _run_statements(runner, plan):
        part = str(r["part"])
        if part != "stats":
            out[part].append(r)
            continue
        out["stats"].append(MetricStatsRow(
            metric=str(r["metric"]), kind=kinds[str(r["metric"])], variant=r["variant"], segment=str(r["segment"]),
            n=int(r["n"]), sum_y=_num(r["sum_y"]), sum_y2=_num(r["sum_y2"]), sum_x=_num(r["sum_x"]),
            sum_x2=_num(r["sum_x2"]), sum_xy=_num(r["sum_xy"]), q_n=int(r["q_n"] or 0),
            q_value=_opt(r["q_value"]), engine=runner.name, q_lower=_opt(r["q_lower"]), q_upper=_opt(r["q_upper"]),
        ))
    return out


def _run_statements(runner: Engine, plan: AnalysisStatements) -> list[dict[str, Any]]:
    """The rows of ``plan.query``, after its prelude (on the same connection: ``run_all`` of the store
    engine; an engine without it runs the statements one after another), cleanup always."""
    if not plan.prelude and not plan.cleanup:
        return runner.run(plan.query)
    run_all = getattr(runner, "run_all", None)
    if run_all is not None:
        return run_all(plan.prelude, plan.query, plan.cleanup)
    try:
        for statement in plan.prelude:
            runner.run(statement)
        return runner.run(plan.query)
    finally:
        for statement in plan.cleanup:
            runner.run(statement)


def _num(v: Any) -> float:
    return 0.0 if v is None else float(v)


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _daily_series(
    rows: Sequence[Mapping[str, Any]],
    vid: Any,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    specs: Mapping[str, MetricSpec],
    new_users: Sequence[queries.DailyUsers],
) -> tuple[DailyPoint, ...]:
    """Cumulative value per variant at the end of each UTC day, from the ``daily`` rows of
    :func:`abcore.analysis.sql.build.build_analysis_query` (the headline semantics; the last day equals the
    headline value). Quantile metrics have none."""
    with_series = [m for m in metric_names if specs[m].kind != "quantile"]
    if not with_series:
        return ()
    metric_on: dict[tuple[date, int, str], tuple[float, float]] = {}
    for r in rows:
        v = vid(r["variant"])
        if v is None:
            continue
        day = date.fromordinal(_EPOCH_ORDINAL + int(r["day"]))
        old = metric_on.get((day, v, str(r["metric"])), (0.0, 0.0))
        metric_on[(day, v, str(r["metric"]))] = (old[0] + float(r["sum_y"] or 0.0), old[1] + float(r["sum_x"] or 0.0))
    days = sorted({r.day for r in new_users} | {k[0] for k in metric_on})
    users_on = {(r.day, r.variant_id): r.new_users for r in new_users}
    control = next((v for v in variants if v.is_control), None)
    points: list[DailyPoint] = []
    for metric in with_series:
        ratio = specs[metric].kind == "ratio"
        cum_users = dict.fromkeys((v.variant_id for v in variants), 0)
        cum_y = dict.fromkeys((v.variant_id for v in variants), 0.0)
        cum_x = dict.fromkeys((v.variant_id for v in variants), 0.0)
        for day in days:
            current: dict[int, float] = {}
            for v in variants:
                cum_users[v.variant_id] += users_on.get((day, v.variant_id), 0)
                y, x = metric_on.get((day, v.variant_id, metric), (0.0, 0.0))
                cum_y[v.variant_id] += y
                cum_x[v.variant_id] += x
                denominator = cum_x[v.variant_id] if ratio else cum_users[v.variant_id]
                current[v.variant_id] = cum_y[v.variant_id] / denominator if denominator > 0 else math.nan
            base = current.get(control.variant_id, math.nan) if control else math.nan
            for v in variants:
                value = current[v.variant_id]
                lift = (value / base - 1.0) if (not v.is_control and base and math.isfinite(base)) else math.nan
                points.append(DailyPoint(day, v.variant_id, v.name, metric, cum_users[v.variant_id], value, lift))
    return tuple(points)


def _segments(
    runner: Engine,
    qsource: QuerySource,
    key: Any,
    vid: Any,
    start: datetime | None,
    end: datetime | None,
    variants: Sequence[VariantInfo],
    metric_names: Sequence[str],
    specs: Mapping[str, MetricSpec],
    segment: str,
    alpha: float,
) -> tuple[SegmentResult, ...]:
    """Per value of ``segment``, every metric x treatment with the headline's test (unadjusted, no CUPED)."""
    control = next((v for v in variants if v.is_control), None)
    if control is None or not metric_names:
        return ()
    rows = compute_stats(key, [specs[m] for m in metric_names], engine=runner, source=qsource, start=start, end=end,
                         segment=segment, quantile_alpha=alpha)
    by_key = {(r.segment, r.metric, v): r for r in rows if (v := vid(r.variant)) is not None}
    out: list[SegmentResult] = []
    for seg in sorted({r.segment for r in rows}, key=str):
        for metric in metric_names:
            spec = specs[metric]
            ra = by_key.get((seg, metric, control.variant_id))
            for tv in (v for v in variants if not v.is_control):
                rb = by_key.get((seg, metric, tv.variant_id))
                if ra is None or rb is None:
                    continue
                a = _summaries(ra, spec, control.variant_id, alpha)
                b = _summaries(rb, spec, tv.variant_id, alpha)
                test, _ = _test(spec, a, b, method="frequentist", cuped=False, alpha=alpha, planned_n=1.0)
                out.append(SegmentResult(segment, str(seg), metric, tv.name, ra.n, rb.n, a.value, b.value, test))
    return tuple(out)
