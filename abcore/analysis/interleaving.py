"""``analyze_interleaving(experiment)``: the preference between the rankers of an interleaving experiment.

Run: the interleaving query (:func:`abcore.analysis.sql.interleaving.build_interleaving_query`) on the engine,
one row of sufficient statistics per ranker pair; test: the sign test with its user-level bootstrap interval and
the paired credit difference (:mod:`abcore.stats.interleaving`), the sign-test p-values adjusted across the
pairs (Holm by default, :func:`abcore.stats.corrections.adjust_pvalues`); judge: :mod:`abcore.analysis.verdict`
(:func:`~abcore.analysis.verdict.preference_outcome`, :func:`~abcore.analysis.verdict.interleaving_verdict`).
The credited metric is the experiment's primary metric (its definition's window, delay and absolute cap apply).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlmodel import Session

from abcore.analysis.engines import Engine, query_source
from abcore.analysis.execution import open_engine
from abcore.analysis.sql.interleaving import build_interleaving_query
from abcore.analysis.verdict import Verdict, interleaving_verdict, preference_outcome
from abcore.errors import Invalid
from abcore.experiments.records import get_experiment, get_variants
from abcore.metrics import MetricSpec, default_spec, resolve_specs
from abcore.stats.corrections import METHODS as CORRECTION_METHODS
from abcore.stats.corrections import adjust_pvalues
from abcore.stats.interleaving import (
    CreditDifference,
    PairCounts,
    Preference,
    credit_difference,
    preference,
    sequential_preference,
)
from abcore.store.tables import Experiment

__all__ = [
    "CSV_COLUMNS",
    "DailyPreference",
    "InterleavingResults",
    "PairResult",
    "analyze_interleaving",
    "csv_rows",
    "daily_preference",
    "pair_counts",
    "results_dict",
]

#: Columns of :func:`csv_rows` (the CSV export, one row per ranker pair).
CSV_COLUMNS: tuple[str, ...] = (
    "experiment", "method", "metric", "ranker_a", "ranker_b", "users", "wins", "losses", "ties", "preference_share",
    "ci_low", "ci_high", "p_value", "p_value_adjusted", "credit_diff_per_impression", "credit_ci_low",
    "credit_ci_high", "credit_p_value", "outcome", "verdict",
)  # fmt: skip


@dataclass(frozen=True)
class PairResult:
    """One ranker pair: ``ranker_a`` preferred over ``ranker_b`` when ``preference.share`` > 1/2."""

    ranker_a: str
    ranker_b: str
    counts: PairCounts
    preference: Preference
    credit: CreditDifference
    p_adjusted: float
    outcome: str  # better (A preferred) | worse (B preferred) | inconclusive


@dataclass(frozen=True)
class InterleavingResults:
    """What :func:`analyze_interleaving` returns."""

    experiment_id: int
    experiment_name: str
    method: str
    metric: str
    alpha: float
    correction: str
    engine: str
    rankers: tuple[str, ...]
    pairs: tuple[PairResult, ...]
    verdict: Verdict
    test: str = "fixed"  # fixed (sign test, bootstrap interval) | sequential (always-valid interval and p-value)


def pair_counts(row: dict[str, Any]) -> PairCounts:
    """The :class:`PairCounts` of one row of the interleaving query (NULL sums of an empty experiment read as 0)."""
    def num(key: str) -> float:
        return 0.0 if row[key] is None else float(row[key])

    return PairCounts(
        users=int(num("users")), wins=int(num("wins")), losses=int(num("losses")), ties=int(num("ties")),
        sum_d=num("sum_d"), sum_d2=num("sum_d2"), sum_n=num("sum_n"), sum_n2=num("sum_n2"), sum_dn=num("sum_dn"),
    )


def analyze_interleaving(
    experiment: int | str | Experiment,
    *,
    session: Session,
    alpha: float = 0.05,
    correction: str = "holm",
    engine: str | Engine = "store",
    end: datetime | None = None,
    seed: int = 0,
    sequential: bool = False,
    planned: float | None = None,
) -> InterleavingResults:
    """Analyse an interleaving experiment (id, name or instance) on ``engine`` (``store``, ``duckdb``, ``spark``
    or a ready Engine). ``sequential=True`` gives the always-valid interval and p-value of the preference (safe to
    look every day; ``planned`` decisive users, default the experiment's ``min_samples_per_variant``, else the
    decisive users so far) instead of the bootstrap interval and the sign test. Raises ExperimentNotFound for an unknown experiment, ValueError for an experiment that
    is not an interleaving one, ``alpha`` outside (0, 1) or an unknown correction (:class:`~abcore.errors.Invalid`).

    >>> res = analyze_interleaving("als_vs_popgen", session=session)  # doctest: +SKIP
    >>> res.pairs[0].preference.share, res.verdict.decision  # doctest: +SKIP
    """
    exp = get_experiment(session=session, ref=experiment)
    if exp.kind != "interleaving":
        raise Invalid(f"Experiment {exp.name!r} is an {exp.kind!r} experiment, not an interleaving one.")
    if isinstance(alpha, bool) or not 0 < alpha < 1:
        raise Invalid(f"alpha must be strictly between 0 and 1, got {alpha!r}.")
    if correction != "none" and correction not in CORRECTION_METHODS:
        raise Invalid(f"correction must be none or one of {', '.join(CORRECTION_METHODS)}, got {correction!r}.")
    variants = get_variants(session=session, experiment_id=int(exp.id))  # type: ignore[arg-type]
    rankers = tuple(v.name for v in variants)
    spec: MetricSpec = resolve_specs(session=session, names=[exp.primary_metric]).get(exp.primary_metric) or default_spec(
        exp.primary_metric
    )
    runner = open_engine(engine, None, session)
    sql = build_interleaving_query(experiment=exp.id, rankers=rankers, metric=spec, dialect=runner.dialect,
                                   source=query_source(runner), end=end)
    rows = {(r["ranker_a"], r["ranker_b"]): pair_counts(r) for r in runner.run(sql)}
    def prefer(c: PairCounts) -> Preference:
        if not sequential:
            return preference(c, alpha=alpha, seed=seed)
        plan = planned or exp.min_samples_per_variant or max(c.wins + c.losses, 1)
        return sequential_preference(c, planned=float(plan), alpha=alpha)

    tested = [(a, b, c, prefer(c), credit_difference(c, alpha=alpha)) for (a, b), c in rows.items()]
    raw = [t[3].p_value for t in tested]
    adjusted = raw if correction == "none" else adjust_pvalues(raw, correction)
    pairs = tuple(
        PairResult(a, b, c, pref, cred, p_adj,
                   preference_outcome(p_adj, pref.ci_low, pref.ci_high, pref.share, alpha))
        for (a, b, c, pref, cred), p_adj in zip(tested, adjusted, strict=True)
    )
    control = next((v.name for v in variants if v.is_control), rankers[0])
    shipped = next((v.name for v in variants if v.id == exp.winner_variant_id), None)
    judged = interleaving_verdict(status=exp.status, shipped_variant=shipped, rollout_pct=exp.rollout_pct,
                                  control=control, pairs=pairs)
    return InterleavingResults(int(exp.id), exp.name, exp.interleaving_method or "team_draft",  # type: ignore[arg-type]
                               exp.primary_metric, alpha, correction, runner.name, rankers, pairs, judged,
                               "sequential" if sequential else "fixed")


def csv_rows(results: InterleavingResults) -> list[dict[str, Any]]:
    """One dict per ranker pair with the keys :data:`CSV_COLUMNS` (numbers unformatted; NaN as empty)."""
    def plain(x: float) -> float | str:
        return "" if x != x else x

    out = []
    for p in results.pairs:
        out.append(dict(zip(CSV_COLUMNS, (
            results.experiment_name, results.method, results.metric, p.ranker_a, p.ranker_b, p.counts.users,
            p.counts.wins, p.counts.losses, p.counts.ties, plain(p.preference.share), plain(p.preference.ci_low),
            plain(p.preference.ci_high), p.preference.p_value, plain(p.p_adjusted), plain(p.credit.estimate),
            plain(p.credit.ci_low), plain(p.credit.ci_high), plain(p.credit.p_value), p.outcome,
            results.verdict.decision,
        ), strict=True)))
    return out


def results_dict(results: InterleavingResults) -> dict[str, Any]:
    """The results as JSON-ready data (NaN as None): the experiment, method, metric, options, one object per ranker
    pair (the keys of :data:`CSV_COLUMNS` after ``ranker_a``) and the verdict."""
    pairs = []
    for row in csv_rows(results):
        pairs.append({k: (None if row[k] == "" else row[k]) for k in CSV_COLUMNS[3:-1]})
    v = results.verdict
    return {
        "experiment_id": results.experiment_id, "experiment": results.experiment_name, "method": results.method,
        "test": results.test,
        "metric": results.metric, "alpha": results.alpha, "correction": results.correction, "engine": results.engine,
        "rankers": list(results.rankers), "pairs": pairs,
        "verdict": {"decision": v.decision, "variant": v.variant, "reason": v.reason},
    }


@dataclass(frozen=True)
class DailyPreference:
    """The preference of one ranker pair as it stood at the end of ``day`` (UTC): every impression and click
    before the next midnight, the bootstrap interval of the share."""

    day: date
    ranker_a: str
    ranker_b: str
    users: int
    share: float
    ci_low: float
    ci_high: float


def daily_preference(
    experiment: int | str | Experiment, *, session: Session, engine: str | Engine = "store", max_days: int = 30,
    alpha: float = 0.05,
) -> list[DailyPreference]:
    """The cumulative preference per ranker pair at the end of each UTC day the experiment ran (the last
    ``max_days`` days up to its stop or today): the interleaving query with ``end`` = the next midnight, per day."""
    exp = get_experiment(session=session, ref=experiment)
    if exp.kind != "interleaving" or exp.started_at is None:
        return []
    rankers = tuple(v.name for v in get_variants(session=session, experiment_id=int(exp.id)))  # type: ignore[arg-type]
    spec = resolve_specs(session=session, names=[exp.primary_metric]).get(exp.primary_metric) or default_spec(
        exp.primary_metric
    )
    runner = open_engine(engine, None, session)
    last = _utc(exp.stopped_at or datetime.now(UTC)).date()
    first = max(_utc(exp.started_at).date(), last - timedelta(days=max_days - 1))
    out: list[DailyPreference] = []
    day = first
    while day <= last:
        end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
        sql = build_interleaving_query(experiment=exp.id, rankers=rankers, metric=spec, dialect=runner.dialect,
                                       source=query_source(runner), end=end)
        for row in runner.run(sql):
            c = pair_counts(row)
            p = preference(c, alpha=alpha)
            out.append(DailyPreference(day, row["ranker_a"], row["ranker_b"], c.users, p.share, p.ci_low, p.ci_high))
        day += timedelta(days=1)
    return out


def _utc(moment: datetime) -> datetime:
    """``moment`` as an aware UTC datetime (the store's naive datetimes are UTC)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
