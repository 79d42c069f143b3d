"""``analyze(experiment)``: plan -> run -> test -> judge, returning :class:`abcore.analysis.results.Results`.

* **plan** (:func:`_plan`): the experiment, alpha, the event window, the engine, and the definition of
  every analysed metric (:mod:`abcore.metrics`; undefined names get defaults and a warning);
* **run** (:func:`abcore.analysis.execution.run_analysis`): the one analysis query of
  :mod:`abcore.analysis.sql.build` on the engine: arm sizes per day, per-variant sufficient statistics,
  daily series, percentiles;
* **test** (:func:`_metric_results`): the test of each metric's kind per treatment, p-values adjusted
  across treatments x metrics;
* **judge** (:func:`_judge`): outcome and significance per result, health checks
  (:mod:`abcore.analysis.health`) and the verdict (:mod:`abcore.analysis.verdict`, the only judge);
  the daily series (:mod:`abcore.analysis.daily`) and the segment breakdown (:mod:`abcore.analysis.segments`).

Rules
-----
* Population: assigned users with at least one exposure in ``[start, end)`` (``start``
  defaults to ``started_at``); the stored assignment decides the variant.
* Metrics: the experiment's primary, secondary and guardrail metrics (``metric_name`` of
  ``conversion`` events), each analysed by its definition's kind: binomial -> z-test (unpooled),
  count and mean -> Welch, ratio -> delta method, quantile -> order-statistic interval.
* ``method="sequential"`` -> always-valid confidence sequences; ``method="bayesian"`` adds chance to
  beat control / expected loss next to the frequentist numbers; ``cuped=True`` adjusts with the same
  metric before first exposure. p-values are adjusted across treatment variants x metrics (Holm default).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from sqlmodel import Session

from abcore import stats
from abcore.analysis import overview
from abcore.analysis import verdict as decisions
from abcore.analysis.compare import FAMILY, Arm, compare, summaries
from abcore.analysis.daily import daily_series, epoch_day
from abcore.analysis.engines import (
    ENGINES,
    Engine,
    MetricStatsRow,
    SourceConfig,
    load_source_config,
    query_source,
    store_engine,
)
from abcore.analysis.epochs import EpochStats, load_epochs
from abcore.analysis.execution import open_engine, run_analysis
from abcore.analysis.health import days_run, health_checks, srm_check
from abcore.analysis.results import DailyPoint, HealthCheck, MetricResult, Results, SegmentResult, VariantInfo
from abcore.analysis.segments import segment_results
from abcore.analysis.sql.build import QuerySource, build_kind_probe_query
from abcore.analysis.verdict import Verdict
from abcore.metrics import RATIO_KINDS, MetricSpec, default_spec, resolve_specs
from abcore.stats import BayesResult, TestResult
from abcore.store.tables import Experiment

__all__ = ["CORRECTIONS", "METHODS", "analyze"]

METHODS: tuple[str, ...] = ("frequentist", "sequential", "bayesian")
CORRECTIONS: tuple[str, ...] = ("holm", "bonferroni", "fdr_bh", "none")
Method = Literal["frequentist", "sequential", "bayesian"]


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
    _check_options(method, correction, engine)
    config = source if source is None or isinstance(source, SourceConfig) else load_source_config(source)
    options = _Options(alpha, correction, method, cuped, start, end, segment, percentiles, daily, planned_n)
    if session is None:
        return _in_own_session(experiment, options, engine, config)
    return _analyze(experiment, session, options, engine, config)


@dataclass(frozen=True)
class _Options:
    """The caller's analysis options, as :func:`analyze` takes them."""

    alpha: float | None
    correction: str
    method: str
    cuped: bool
    start: datetime | None
    end: datetime | None
    segment: str | None
    percentiles: bool
    daily: bool
    planned_n: float | None


class _VariantIds:
    """The variant id of a query's ``variant`` value (the store's id, or a variant name); ``None`` if unknown."""

    def __init__(self, rows: Sequence[Any]) -> None:
        self.ids = {int(v.id): int(v.id) for v in rows}
        self.by_name = {v.name: int(v.id) for v in rows}

    def __call__(self, value: Any) -> int | None:
        if isinstance(value, str) and value in self.by_name:
            return self.by_name[value]
        try:
            return self.ids.get(int(value))
        except (TypeError, ValueError):
            return None


@dataclass
class _Plan:
    """What the analysis will do: the experiment, window, engine, metric definitions; warnings so far."""

    exp: Experiment
    options: _Options
    alpha: float
    start: datetime | None
    end: datetime | None
    now: datetime
    runner: Engine
    qsource: QuerySource
    key: Any
    variant_rows: list[Any]
    metric_roles: list[tuple[str, str]]
    vid: Callable[[Any], int | None]
    specs: dict[str, MetricSpec]
    cuped: bool
    warnings: list[str]

    @property
    def metric_names(self) -> list[str]:
        return [m for m, _ in self.metric_roles]


def _check_options(method: str, correction: str, engine: str | Engine) -> None:
    """``ValueError`` for an unknown method, correction or engine name."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}; got {correction!r}")
    if isinstance(engine, str) and engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)} or an Engine; got {engine!r}")


def _in_own_session(
    experiment: int | str | Experiment, options: _Options, engine: str | Engine, config: SourceConfig | None
) -> Results:
    """:func:`_analyze` in a session on the configured database (:func:`abcore.store.db.make_engine`)."""
    from abcore.store.db import make_engine

    db = make_engine()
    try:
        with Session(db, expire_on_commit=False) as own:
            return _analyze(experiment, own, options, engine, config)
    finally:
        db.dispose()


def _analyze(
    experiment: int | str | Experiment, session: Session, options: _Options, engine: str | Engine,
    config: SourceConfig | None,
) -> Results:
    """Plan -> run -> test -> judge."""
    plan = _plan(experiment, session, options, engine, config)
    pct_names = ([m for m in plan.metric_names if plan.specs[m].kind in ("count", "mean", "event_mean")]
                 if options.percentiles else [])
    epochs = load_epochs(session, plan.exp, plan.variant_rows, plan.end) if plan.metric_names else ()
    run = run_analysis(plan.runner, plan.qsource, plan.key, [plan.specs[m] for m in plan.metric_names], plan.start,
                       plan.end, plan.cuped, plan.alpha, options.daily, pct_names, [e.start for e in epochs[1:]])
    strata = EpochStats(epochs, run, plan.vid) if epochs else None  # pools run's rows; keeps the epochs'
    variants, new_users = _arms(plan, session, run["users"])
    results = _metric_results(plan, variants, run["stats"], strata)
    return _judge(plan, session, variants, results, new_users, run, strata)


# --------------------------------------------------------------------------- plan


def _plan(
    experiment: int | str | Experiment, session: Session, options: _Options, engine: str | Engine,
    config: SourceConfig | None,
) -> _Plan:
    """The experiment, alpha (validated), the window, the opened engine and every metric's definition."""
    from abcore.experiments.records import get_experiment, get_variants

    exp = get_experiment(session=session, ref=experiment)
    assert exp.id is not None
    alpha = _default_alpha(exp) if options.alpha is None else float(options.alpha)
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    now = datetime.now(UTC)
    # Events before the start are pre-experiment data (the CUPED covariate), never in-experiment results.
    start = overview.as_utc(options.start) if options.start is not None else overview.as_utc(exp.started_at)
    end = overview.as_utc(options.end)
    warnings: list[str] = []
    runner = open_engine(engine, config, session)
    qsource = query_source(runner, config)
    # The store population joins assignments by experiment id; an exposure table is keyed by name.
    key: Any = exp.name if qsource.exposures is not None else exp.id
    variant_rows = list(get_variants(session=session, experiment_id=exp.id))
    metric_roles = _metric_roles(exp)
    names = [m for m, _ in metric_roles]
    defined = resolve_specs(session=session, names=names)
    inferred = _infer_kinds(session, engine, config, runner, qsource, key, end,
                            [m for m in names if m not in defined])
    specs = _metric_specs(exp, metric_roles, defined, inferred, warnings)
    cuped = _cuped_allowed(options.cuped, options.method, warnings)
    return _Plan(exp, options, alpha, start, end, now, runner, qsource, key, variant_rows, metric_roles,
                 _VariantIds(variant_rows), specs, cuped, warnings)


def _infer_kinds(
    session: Session, engine: str | Engine, config: SourceConfig | None, runner: Engine, qsource: QuerySource,
    key: Any, end: datetime | None, undefined: Sequence[str],
) -> dict[str, str]:
    """``"mean"`` or ``"binary"`` per undefined metric name: one ``LIMIT 1`` probe for a stored value other
    than 0, 1 or NULL."""
    # Events in the store's own table: the probe asks the store (an index range that stops at the first
    # non-0/1 value; another engine reading the store would scan the whole table). The same rows either way.
    prober: Engine = runner
    if config is None and isinstance(engine, str) and engine != "store":  # the engine opened the session's store
        prober = store_engine(session)
    psource = qsource if prober is runner else query_source(prober)
    inferred: dict[str, str] = {}
    for m in undefined:
        probe = build_kind_probe_query(m, experiment=key, dialect=prober.dialect, source=psource, end=end)
        inferred[m] = "mean" if int(prober.run(probe)[0]["n"] or 0) else "binary"
    return inferred


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


def _criterion(exp: Experiment) -> tuple[str, str, float]:
    crit = exp.success_criteria or {}
    metric = str(crit.get("metric") or exp.primary_metric)
    direction = str(crit.get("direction") or "increase")
    try:
        threshold = abs(float(crit.get("threshold") or 0.0))
    except (TypeError, ValueError):
        threshold = 0.0
    return metric, direction, threshold


def _metric_specs(
    exp: Experiment,
    metric_roles: Sequence[tuple[str, str]],
    defined: Mapping[str, MetricSpec],
    inferred: dict[str, str],
    warnings: list[str],
) -> dict[str, MetricSpec]:
    """The definition of every analysed metric; undefined names get :func:`abcore.metrics.default_spec`
    (inferred kind; guardrails ``decrease`` unless ``guardrail_directions`` says ``increase``; the
    success-criterion metric the criterion's direction) and a warning."""
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


# --------------------------------------------------------------------------- run


def _arms(
    plan: _Plan, session: Session, user_rows: Sequence[Mapping[str, Any]]
) -> tuple[tuple[VariantInfo, ...], list[overview.DailyUsers]]:
    """Every arm (configured share, assigned and analysed users) and the new users per day and arm."""
    new_users: list[overview.DailyUsers] = []
    unknown_variants: set[str] = set()
    for r in user_rows:
        v = plan.vid(r["variant"])
        if v is None:
            unknown_variants.add(str(r["variant"]))
            continue
        new_users.append(overview.DailyUsers(epoch_day(r["day"]), v, int(r["n"])))
    new_users.sort(key=lambda r: (r.day, r.variant_id))
    if unknown_variants:
        plan.warnings.append(f"Exposures to unknown variants left out: {', '.join(sorted(unknown_variants))}.")
    users_by_variant: dict[int, int] = {}
    for row in new_users:
        users_by_variant[row.variant_id] = users_by_variant.get(row.variant_id, 0) + row.new_users
    rows = plan.variant_rows
    control_row = next((v for v in rows if v.is_control), rows[0] if rows else None)
    assigned = overview.participants(session=session, experiment_id=plan.exp.id)
    variants = tuple(
        VariantInfo(
            variant_id=int(v.id),
            name=v.name,
            is_control=v is control_row,
            allocation_pct=float(v.allocation_pct),
            assigned=assigned.get(int(v.id), 0),
            users=users_by_variant.get(int(v.id), 0),
        )
        for v in rows
    )
    return variants, new_users


def _cuped_allowed(cuped: bool, method: str, warnings: list[str]) -> bool:
    if cuped and method == "sequential":
        warnings.append("CUPED is not combined with sequential testing; analysed without CUPED.")
        return False
    return cuped


# --------------------------------------------------------------------------- test


def _planned_n(plan: _Plan, variants: Sequence[VariantInfo]) -> float:
    """The sequential test's planned users per variant: the caller's, else ``min_samples_per_variant``,
    else the largest arm so far."""
    planned = plan.options.planned_n
    if planned is not None and planned > 0:
        return float(planned)
    return float(plan.exp.min_samples_per_variant or 0) or float(max([v.users for v in variants] or [0]) or 1)


def _method_warnings(plan: _Plan) -> None:
    """Warn about ratio and quantile metrics the chosen method or CUPED does not cover."""
    not_adjustable = [m for m in plan.metric_names if plan.specs[m].kind in (*RATIO_KINDS, "quantile")]
    method = plan.options.method
    if plan.cuped and not_adjustable:
        plan.warnings.append("CUPED adjusts binomial, count and per-user mean metrics only; analysed without adjustment: "
                             + ", ".join(not_adjustable) + ".")
    if method == "sequential" and not_adjustable:
        plan.warnings.append("Sequential tests cover binomial, count and per-user mean metrics only; fixed-horizon tests (not "
                             "safe to peek) for: " + ", ".join(not_adjustable) + ".")
    if method == "bayesian" and not_adjustable:
        plan.warnings.append("No Bayesian chance to beat control for ratio, per-event mean or quantile metrics: "
                             + ", ".join(not_adjustable) + " (frequentist numbers only).")


def _cuped_for(plan: _Plan, stats_rows: Sequence[MetricStatsRow]) -> dict[str, bool]:
    """Per metric, whether CUPED adjusts it (a kind it covers and some pre-exposure data; warned otherwise)."""
    cuped_for = {m: plan.cuped and plan.specs[m].kind not in (*RATIO_KINDS, "quantile") for m in plan.metric_names}
    for m in plan.metric_names:
        if cuped_for[m] and not any(r.sum_x2 > 0 for r in stats_rows if r.metric == m):
            plan.warnings.append(f"CUPED: no pre-exposure data for metric {m}; analysed without adjustment.")
            cuped_for[m] = False
    return cuped_for


@dataclass(frozen=True)
class _Comparison:
    """One metric x treatment, tested (before the multiple-comparison adjustment)."""

    metric: str
    role: str
    treatment: VariantInfo
    a: Arm
    b: Arm
    test: TestResult
    bayes: BayesResult | None


def _metric_results(
    plan: _Plan, variants: Sequence[VariantInfo], stats_rows: Sequence[MetricStatsRow], strata: EpochStats | None,
) -> tuple[MetricResult, ...]:
    """The test of every metric x treatment against the control (stratified by epoch with ``strata``), adjusted
    and judged."""
    control = next((v for v in variants if v.is_control), None)
    treatments = [v for v in variants if not v.is_control]
    planned_n = _planned_n(plan, variants)
    _method_warnings(plan)
    by_key = {(r.metric, v): r for r in stats_rows if (v := plan.vid(r.variant)) is not None}
    cuped_for = _cuped_for(plan, stats_rows)
    if control is None:
        return ()
    method, alpha = plan.options.method, plan.alpha
    tested: list[_Comparison] = []
    for metric, role in plan.metric_roles:
        spec = plan.specs[metric]
        a = summaries(by_key.get((metric, control.variant_id)), spec, control.variant_id, alpha)
        for tv in treatments:
            b = summaries(by_key.get((metric, tv.variant_id)), spec, tv.variant_id, alpha)
            test, bayes = compare(spec, a, b, method=method, cuped=cuped_for[metric], alpha=alpha, planned_n=planned_n)
            shown = (a, b, test, bayes) if strata is None else strata.combine(
                spec, (control.variant_id, tv.variant_id), (a, b), (test, bayes), (method, cuped_for[metric], alpha),
                plan.warnings)
            tested.append(_Comparison(metric, role, tv, *shown))
    p_values = [c.test.p_value for c in tested]
    correction = plan.options.correction
    adjusted = list(p_values) if correction == "none" else stats.adjust_pvalues(p_values, method=correction)
    return tuple(_judged(plan, control, c, float(p_adj), cuped_for[c.metric])
                 for c, p_adj in zip(tested, adjusted, strict=True))


def _judged(plan: _Plan, control: VariantInfo, c: _Comparison, p_adj: float, cuped: bool) -> MetricResult:
    """The :class:`MetricResult` of a comparison: significance and outcome by :mod:`abcore.analysis.verdict`."""
    spec = plan.specs[c.metric]
    bayes = decisions.directional_bayes(c.bayes, spec.direction)
    significant = decisions.is_significant(c.test, p_adj, plan.alpha, bayes)
    estimate = bayes.diff if (bayes is not None and math.isfinite(bayes.diff)) else c.test.diff
    binary = spec.kind == "binomial"
    return MetricResult(
        metric=c.metric,
        role=c.role,
        kind=FAMILY[spec.kind],
        variant_id=c.treatment.variant_id,
        variant=c.treatment.name,
        control_variant=control.name,
        control_users=control.users,
        users=c.treatment.users,
        control_conversions=c.a.binary.conversions if binary else None,
        conversions=c.b.binary.conversions if binary else None,
        control_value=c.a.value,
        value=c.b.value,
        control_std=c.a.std,
        std=c.b.std,
        test=c.test,
        p_value_adjusted=p_adj,
        significant=significant,
        method=plan.options.method,
        cuped=cuped,
        bayes=bayes,
        direction=spec.direction,
        outcome=decisions.outcome(significant, estimate, spec.direction),
        metric_kind=spec.kind,
    )


# --------------------------------------------------------------------------- judge


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


def _percentiles(rows: Sequence[Mapping[str, Any]], vid: Callable[[Any], int | None]) -> tuple[Any, ...]:
    """The percentile table (count and mean metrics) from the ``percentile`` rows of the query."""
    return tuple(sorted(
        (overview.PercentileStats(variant_id=v, metric=str(r["metric"]), count=int(r["n"]), min=float(r["v_min"]),
                                 max=float(r["v_max"]), mean=float(r["sum_y"]) / int(r["n"]),
                                 percentiles={p: float(r[f"p{p}"]) for p in overview.PERCENTILES})
         for r in rows if (v := vid(r["variant"])) is not None and int(r["n"] or 0) > 0),
        key=lambda p: (p.metric, p.variant_id),
    ))


def _judge(
    plan: _Plan, session: Session, variants: tuple[VariantInfo, ...], results: tuple[MetricResult, ...],
    new_users: Sequence[overview.DailyUsers], run: Mapping[str, list[Any]], strata: EpochStats | None,
) -> Results:
    """Health checks, the verdict, the daily series and segments, assembled into :class:`Results`."""
    exp, options = plan.exp, plan.options
    names = {v.variant_id: v.name for v in variants}
    feedback = {
        names.get(v, str(v)): counts
        for v, counts in overview.feedback_counts(session=session, experiment_id=exp.id, start=plan.start,
                                                 end=plan.end).items()
    }
    ran = days_run(exp, plan.end, plan.now)
    srm = srm_check(variants)
    health = health_checks(exp, variants, srm, ran, options.method)
    if strata is not None:  # SRM per epoch, and the allocation_changed item
        srm, health = strata.health(variants, results, health)
    verdict = _verdict(exp, variants, results, health, plan.alpha, plan.specs)
    control = next((v for v in variants if v.is_control), None)
    series: tuple[DailyPoint, ...] = ()
    if options.daily and control and plan.metric_names:
        series = daily_series(run["daily"], plan.vid, variants, plan.metric_names, plan.specs, new_users)
    segments: tuple[SegmentResult, ...] = ()
    if options.segment:
        segments = segment_results(plan.runner, plan.qsource, plan.key, plan.vid, plan.start, plan.end, variants,
                                   plan.metric_names, plan.specs, options.segment, plan.alpha)
    return Results(
        experiment_id=int(exp.id), experiment=exp.name, status=exp.status, method=options.method,  # type: ignore[arg-type]
        correction=options.correction, alpha=plan.alpha, cuped=plan.cuped, start=plan.start, end=plan.end,
        computed_at=plan.now, days_run=ran, variants=variants, metrics=results,
        percentiles=_percentiles(run["percentile"], plan.vid), feedback=feedback, srm=srm, health=health,
        verdict=verdict, daily=series, segment=options.segment, segments=segments, warnings=tuple(plan.warnings),
        engine=plan.runner.name,
    )
