"""Health checks of an analysis: data, sample ratio mismatch, sample size, duration, peeking.

Pure functions over the experiment row and the arms of :mod:`abcore.analysis.results`. The checks that
block a decision (:data:`abcore.analysis.verdict.BLOCKING_CHECKS`) are read by the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from abcore import stats
from abcore.analysis import overview
from abcore.analysis.results import HealthCheck, VariantInfo
from abcore.formatting import format_p_clause, format_pvalue
from abcore.stats import SRMResult
from abcore.store.tables import Experiment, ExperimentStatus

__all__ = ["days_run", "health_checks", "srm_check"]


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
