"""Health checks of an analysis: data, sample ratio mismatch, sample size, duration, peeking, novelty.

Pure functions over the experiment row and the arms of :mod:`abcore.analysis.results`. The checks that
block a decision (:data:`abcore.analysis.verdict.BLOCKING_CHECKS`) are read by the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from abcore import stats
from abcore.analysis import overview
from abcore.analysis.results import HealthCheck, MetricResult, VariantInfo
from abcore.analysis.sql.exposure_days import LATE_FROM
from abcore.formatting import format_interval, format_p_clause, format_pct, format_pvalue
from abcore.stats import SRMResult
from abcore.store.tables import Experiment, ExperimentStatus

__all__ = ["days_run", "health_checks", "novelty_checks", "novelty_sentence", "srm_check"]


def days_run(experiment: Experiment, end: datetime | None, now: datetime) -> float:
    """Days from ``started_at`` to ``stopped_at`` (or ``now``), cut at ``end``; 0 when never started."""
    started = overview.as_utc(experiment.started_at)
    if started is None:
        return 0.0
    stop = overview.as_utc(experiment.stopped_at) or now
    if end is not None:
        stop = min(stop, overview.as_utc(end))  # type: ignore[type-var]
    return max((stop - started).total_seconds() / 86400.0, 0.0)


def srm_check(variants: Sequence[VariantInfo]) -> SRMResult:
    """The chi-square test of the analysed users against the configured split (a defined result without variants)."""
    if not variants:
        return SRMResult(statistic=math.nan, p_value=math.nan, mismatch=False, error="no variants")
    return stats.srm_test([v.users for v in variants], [v.allocation_pct for v in variants])


def _srm(variants: Sequence[VariantInfo], srm: SRMResult) -> HealthCheck:
    if srm.mismatch:
        observed = ", ".join(f"{v.name} {v.users:,} ({v.allocation_pct:g} % configured)" for v in variants)
        return HealthCheck("srm", False, "error",
                           f"Sample ratio mismatch (chi-square {format_p_clause(srm.p_value)}): {observed}. "
                           "Check assignment and exposure logging before trusting the results.")
    p = format_pvalue(srm.p_value)
    return HealthCheck("srm", True, "ok", f"Traffic split matches the configured allocation (p = {p}).")


def _samples(exp: Experiment, variants: Sequence[VariantInfo]) -> HealthCheck:
    need = int(exp.min_samples_per_variant or 0)
    short = [v for v in variants if v.users < need]
    if short:
        detail = ", ".join(f"{v.name} {v.users:,}" for v in short)
        return HealthCheck("samples", False, "warning", f"Too few users: {detail} (minimum {need:,} per variant).")
    return HealthCheck("samples", True, "ok", f"Every variant has at least {need:,} users.")


def _duration(exp: Experiment, ran: float) -> HealthCheck:
    min_days = int(exp.min_duration_days or 0)
    if ran < min_days:
        return HealthCheck("duration", False, "warning", f"Ran {int(ran)} of the minimum {min_days} days.")
    return HealthCheck("duration", True, "ok", f"Ran {int(ran)} days (minimum {min_days}).")


def health_checks(
    exp: Experiment, variants: Sequence[VariantInfo], srm: SRMResult, ran: float, method: str
) -> tuple[HealthCheck, ...]:
    """Every check, in order: data (only when nobody was exposed), srm, samples, duration, and peeking
    (a fixed-horizon method on a running experiment)."""
    checks: list[HealthCheck] = []
    if sum(v.users for v in variants) == 0:
        checks.append(HealthCheck("data", False, "error", "No exposed users yet: nothing to analyse."))
    checks += [_srm(variants, srm), _samples(exp, variants), _duration(exp, ran)]
    if method != "sequential" and exp.status == ExperimentStatus.RUNNING.value:
        checks.append(HealthCheck("peeking", False, "warning",
                                  "The experiment is still running: fixed-horizon p-values are only valid at the "
                                  "planned end. To look early, choose Sequential (safe to peek) under Analysis options "
                                  "(CLI: --method sequential)."))
    return tuple(checks)



def novelty_sentence(r: MetricResult) -> str:
    """``"click (B): the lift is decaying: +8.0 % on day 0, estimated +1.2 % [-0.3 %, +2.7 %] in the long run"``."""
    n = r.novelty
    assert n is not None
    trend = "decaying" if n.pattern == "novelty" else "growing"
    long_run = n.long_run
    return (f"{r.metric} ({r.variant}): the lift is {trend}: {format_pct(n.early.lift, signed=True)} on day 0, "
            f"estimated {format_pct(long_run.lift, signed=True)} "
            f"{format_interval(long_run.lift_ci_low, long_run.lift_ci_high)} in the long run "
            f"(change {format_p_clause(n.change.p_value)})")


def novelty_checks(results: Sequence[MetricResult], computed: bool = True) -> tuple[HealthCheck, ...]:
    """The ``novelty`` item (none when the exposure-day analysis was not ``computed``): a warning naming every
    metric whose effect changes between users' first exposure day and their days from day
    :data:`~abcore.analysis.sql.exposure_days.LATE_FROM` on (primary metrics first), else ok."""
    if not computed:
        return ()
    tested = [r for r in results if r.novelty is not None]
    found = sorted((r for r in tested if r.novelty is not None and r.novelty.detected),
                   key=lambda r: (r.role != "primary", r.metric, r.variant))
    if found:
        message = "; ".join(novelty_sentence(r) for r in found) + "."
        if any(r.novelty is not None and r.novelty.pattern == "novelty" for r in found):
            message += " The first days overstate the lasting effect: judge by the long-run estimate."
        return (HealthCheck("novelty", False, "warning", message),)
    if not tested:
        return (HealthCheck("novelty", True, "ok", f"Not yet tested for novelty: no user has been observed for "
                                                   f"{LATE_FROM + 1} days since first exposure."),)
    return (HealthCheck("novelty", True, "ok", "No novelty or primacy effect: the effect on users' first day "
                                               "matches their later days."),)
