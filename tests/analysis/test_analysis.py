"""abcore.analysis.pipeline and the counts over its population (abcore.analysis.metric_counts), on SQLite and PostgreSQL.

Data sets are small with known numbers; expected values come from hand counts, numpy,
scipy and statsmodels on the same per-user values (each source noted at the assertion).
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from sqlmodel import Session
from statsmodels.stats import proportion as sm_proportion
from statsmodels.stats.multitest import multipletests

from abcore import stats
from abcore.analysis.metric_counts import metric_counts, value_distribution
from abcore.analysis.pipeline import analyze
from abcore.analysis.results import Results
from abcore.store.tables import Experiment, Variant
from tests.factories import T0, add_data, completed_experiment, conversion, exposure


@pytest.fixture
def sqlite_session(sqlite_engine: Any) -> Any:
    """For tests of decision logic on top of the SQL (the SQL itself is covered on both backends)."""
    with Session(sqlite_engine, expire_on_commit=False) as session:
        yield session


# --------------------------------------------------------------------------- hand-counted data set


@pytest.fixture
def hand_data(session: Session) -> tuple[Experiment, dict[str, Variant]]:
    """A: a1..a4 exposed (a5 assigned, never exposed; x1 exposed, never assigned). B: b1..b3 exposed."""
    exp, arms = completed_experiment(session, secondary_metrics=["revenue"])
    a, b = arms["A"], arms["B"]
    assignments = [(u, a, {"country": c}) for u, c in [("a1", "DE"), ("a2", "US"), ("a3", "DE"), ("a4", "US"),
                                                         ("a5", "DE")]]
    assignments += [(u, b, {"country": c}) for u, c in [("b1", "DE"), ("b2", "US"), ("b3", "DE")]]
    events = [exposure(u) for u in ["a1", "a2", "a3", "a4", "b1", "b2", "b3", "x1"]]
    events += [exposure("a1")]  # a second exposure changes nothing
    events += [
        conversion("a1", "click", 1.0), conversion("a1", "click", 1.0), conversion("a1", "click", 1.0),
        conversion("a2", "click", None),  # a bare conversion event counts as 1
        conversion("b1", "click", 1.0, variant_id=a.id),  # the event's variant is wrong: the assignment (B) wins
        conversion("b2", "click", 1.0),
        conversion("a5", "click", 1.0),  # never exposed: not in the population
        conversion("x1", "click", 1.0),  # never assigned
        conversion("a1", "revenue", 2.0), conversion("a1", "revenue", 3.0), conversion("a2", "revenue", 1.5),
        conversion("b1", "revenue", 10.0), conversion("a5", "revenue", 100.0),
    ]
    add_data(session, exp, assignments, events)
    return exp, arms


def test_metric_counts_users_first(session: Session, hand_data: tuple[Experiment, dict[str, Variant]]) -> None:
    exp, arms = hand_data
    a, b = arms["A"].id, arms["B"].id
    got = metric_counts(session=session, experiment_id=exp.id, metrics=["click", "revenue"])
    # Hand count: A exposed users a1..a4 (4), B b1..b3 (3); a1's three clicks count once as a user.
    assert got.users == {a: 4, b: 3}
    click_a, click_b = got.metrics[a, "click"], got.metrics[b, "click"]
    assert (click_a.events, click_a.users, click_a.converted, click_a.sum) == (4, 2, 2, 4.0)  # a2's bare event = 1
    assert (click_b.events, click_b.users, click_b.converted, click_b.sum) == (2, 2, 2, 2.0)
    # Mean metric: per-user sums (a5 never exposed: left out), converted = users with a value >= 1.
    rev_a, rev_b = got.metrics[a, "revenue"], got.metrics[b, "revenue"]
    assert (rev_a.events, rev_a.users, rev_a.converted, rev_a.sum) == (3, 2, 2, pytest.approx(6.5))
    assert (rev_b.events, rev_b.users, rev_b.converted, rev_b.sum) == (1, 1, 1, pytest.approx(10.0))


def test_metric_counts_follow_the_analysis(session: Session) -> None:
    """The counts read the analysis population and windows: events before a user's first exposure, after
    the definition's window, or of users exposed only before the start are not counted; the users and
    conversions equal analyze()'s."""
    from abcore.metrics import MetricCreate, define_metric

    define_metric(session=session, data=MetricCreate(name="click", kind="binomial", window_hours=24))
    exp, arms = completed_experiment(session)
    a, b = arms["A"], arms["B"]
    hour = timedelta(hours=1)
    add_data(
        session, exp,
        [("a1", a, {}), ("a2", a, {}), ("a3", a, {}), ("b1", b, {}), ("b2", b, {})],
        [
            exposure("a1", T0 + hour), exposure("a2", T0 + hour), exposure("a3", T0 - hour),  # a3: before the start
            exposure("b1", T0 + 5 * hour), exposure("b2", T0 + hour),
            conversion("a1", "click", 1.0, T0 + 2 * hour),
            conversion("a2", "click", 1.0, T0 + 30 * hour),  # after a2's 24 h window
            conversion("a3", "click", 1.0, T0 + 2 * hour),  # a3 is not in the population
            conversion("b1", "click", 1.0, T0 + 3 * hour),  # before b1's first exposure
            conversion("b1", "click", 1.0, T0 + 6 * hour),
            conversion("b2", "click", None, T0 + 2 * hour),
        ],
    )
    got = metric_counts(session=session, experiment_id=exp.id, metrics=["click"], start=T0)
    res = analyze(exp.id, session=session, correction="none")
    assert got.users == {v.variant_id: v.users for v in res.variants} == {a.id: 2, b.id: 2}
    click = res.result("click")
    assert (got.metrics[a.id, "click"].converted, got.metrics[b.id, "click"].converted) == (
        click.control_conversions, click.conversions) == (1, 2)
    assert (got.metrics[a.id, "click"].events, got.metrics[b.id, "click"].events) == (1, 2)


def test_analyze_on_hand_counts(session: Session, hand_data: tuple[Experiment, dict[str, Variant]]) -> None:
    exp, _ = hand_data
    res = analyze(exp.id, session=session, correction="none")
    assert [(v.name, v.assigned, v.users) for v in res.variants] == [("A", 5, 4), ("B", 3, 3)]
    click = res.result("click")
    assert click.kind == "binary" and (click.control_conversions, click.conversions) == (2, 2)
    assert click.test == stats.proportion_test(2, 4, 2, 3, alpha=0.05)
    revenue = res.result("revenue")
    assert revenue.kind == "mean"
    a_vals, b_vals = np.array([5.0, 1.5, 0, 0]), np.array([10.0, 0, 0])
    assert revenue.test == stats.mean_test(a_vals.mean(), a_vals.std(ddof=1), 4, b_vals.mean(), b_vals.std(ddof=1), 3,
                                           alpha=0.05)
    # scipy: Welch t-test on the per-user values gives the same p-value.
    assert revenue.test.p_value == pytest.approx(sps.ttest_ind(b_vals, a_vals, equal_var=False).pvalue, rel=1e-9)


def test_segment_breakdown(session: Session, hand_data: tuple[Experiment, dict[str, Variant]]) -> None:
    exp, arms = hand_data
    # Hand count: DE: A a1, a3 (a1 converted); B b1, b3 (b1). US: A a2, a4 (a2); B b2 (b2).
    res = analyze(exp, session=session, segment="country")
    de = next(s for s in res.segments if s.value == "DE" and s.metric == "click")
    assert (de.control_users, de.users) == (2, 2)
    assert de.test == stats.proportion_test(1, 2, 1, 2, alpha=0.05)


def test_window_filters_events_and_population(session: Session) -> None:
    exp, arms = completed_experiment(session, started_at=None, stopped_at=None)
    a, b = arms["A"], arms["B"]
    day = timedelta(days=1)
    add_data(
        session, exp,
        [("a1", a, {}), ("a2", a, {}), ("b1", b, {})],
        [
            exposure("a1", T0), exposure("a2", T0 + 3 * day), exposure("b1", T0),
            conversion("a1", "click", 1.0, T0 + day), conversion("a2", "click", 1.0, T0 + 3 * day),
            conversion("b1", "click", 1.0, T0 + 5 * day),
        ],
    )
    every = metric_counts(session=session, experiment_id=exp.id, metrics=["click"])
    assert (every.users[a.id], every.metrics[a.id, "click"].converted, every.metrics[b.id, "click"].converted) == (2, 2, 1)
    # [T0, T0 + 2 days): a2's only exposure is outside (not in population), b1's conversion too.
    window = metric_counts(session=session, experiment_id=exp.id, metrics=["click"], start=T0, end=T0 + 2 * day)
    assert (window.users[a.id], window.metrics[a.id, "click"].converted) == (1, 1)
    assert (window.users[b.id], window.metrics[b.id, "click"].converted) == (1, 0)
    res = analyze(exp.id, session=session, start=T0, end=T0 + 2 * day)
    assert [v.users for v in res.variants] == [1, 1]
    assert res.start == T0 and res.end == T0 + 2 * day


def test_percentiles_match_numpy_inverted_cdf(session: Session) -> None:
    exp, arms = completed_experiment(session, primary_metric="latency")
    rng = np.random.default_rng(4)
    values = {"A": rng.gamma(2.0, 50.0, 301), "B": rng.gamma(2.0, 45.0, 257)}
    assignments, events = [], []
    for name, vals in values.items():
        for i, v in enumerate(vals):
            user = f"{name}{i % 40}"  # several latency events per user
            events.append(conversion(user, "latency", float(v)))
        for i in range(40):
            assignments.append((f"{name}{i}", arms[name], {}))
            events.append(exposure(f"{name}{i}"))
    add_data(session, exp, assignments, events)
    res = analyze(exp.id, session=session)
    got = {p.variant_id: p for p in res.percentiles if p.metric == "latency"}
    for name, vals in values.items():
        p = got[arms[name].id]
        assert p.count == len(vals)
        assert p.mean == pytest.approx(vals.mean())
        for q in (50, 95, 99):
            # nearest rank = numpy percentile with method="inverted_cdf"
            assert p.percentiles[q] == pytest.approx(np.percentile(vals, q, method="inverted_cdf")), q
    dist = value_distribution(session=session, experiment_id=exp.id, metric="latency", bins=12)
    both = np.concatenate(list(values.values()))
    edges = np.linspace(both.min(), both.max(), 13)
    assert dist.edges == pytest.approx(tuple(edges))
    for name, vals in values.items():
        counts, _ = np.histogram(vals, bins=edges)  # numpy: last bin closed, like ours
        assert list(dist.counts[arms[name].id]) == counts.tolist()
    assert {p.variant_id for p in res.percentiles} == {arms["A"].id, arms["B"].id}


# --------------------------------------------------------------------------- generated data


def generated(
    session: Session,
    *,
    n: tuple[int, ...] = (400, 400),
    click: tuple[float, ...] = (0.10, 0.20),
    latency_shift: tuple[float, ...] = (0.0, 0.0),
    seed: int = 1,
    **fields: Any,
) -> tuple[Experiment, dict[str, Variant], dict[str, dict[str, np.ndarray]]]:
    """Users with a Bernoulli click, a latency event (normal) and a pre-period latency correlated with it."""
    names = [chr(ord("A") + i) for i in range(len(n))]
    fields.setdefault("guardrail_metrics", ["latency"])
    exp, arms = completed_experiment(session, variants=[(x, 100.0 / len(n)) for x in names], **fields)
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, np.ndarray]] = {}
    assignments, events = [], []
    for name, size, p, shift in zip(names, n, click, latency_shift, strict=True):
        clicks = (rng.random(size) < p).astype(float)
        base = rng.normal(100.0, 20.0, size)
        pre = base + rng.normal(0.0, 5.0, size)
        latency = base + shift + rng.normal(0.0, 5.0, size)
        truth[name] = {"click": clicks, "latency": latency, "pre": pre}
        for i in range(size):
            u = f"{name}-{i}"
            assignments.append((u, arms[name], {"platform": "ios" if i % 2 else "web"}))
            events.append(exposure(u, T0 + timedelta(days=i % 7, hours=1)))
            if clicks[i]:
                events.append(conversion(u, "click", 1.0, T0 + timedelta(days=i % 7, hours=2)))
            events.append(conversion(u, "latency", float(latency[i]), T0 + timedelta(days=i % 7, hours=3)))
            events.append(conversion(u, "latency", float(pre[i]), T0 - timedelta(days=3)))
    add_data(session, exp, assignments, events)
    return exp, arms, truth


def test_tests_match_statsmodels_and_scipy_with_holm(session: Session) -> None:
    exp, _, truth = generated(session, n=(400, 400, 400), click=(0.10, 0.16, 0.12), latency_shift=(0, 5, 0))
    res = analyze(exp.id, session=session)
    assert len(res.metrics) == 4  # (click, latency) x (B, C)
    a = truth["A"]
    for r in res.metrics:
        t = truth[r.variant]
        if r.metric == "click":
            ref = sm_proportion.test_proportions_2indep(t["click"].sum(), len(t["click"]), a["click"].sum(), len(a["click"]),
                                          method="wald", compare="diff", correction=False)  # statsmodels, unpooled
            assert r.test.p_value == pytest.approx(ref.pvalue, rel=1e-9)
            assert r.test.statistic == pytest.approx(ref.statistic, rel=1e-9)
        else:
            ref = sps.ttest_ind(t["latency"], a["latency"], equal_var=False)  # scipy Welch
            assert r.test.p_value == pytest.approx(ref.pvalue, rel=1e-7)
            assert r.test.dof == pytest.approx(ref.df, rel=1e-9)
    # Holm across treatment variants x metrics (statsmodels multipletests).
    holm = multipletests([r.test.p_value for r in res.metrics], method="holm")[1]
    assert [r.p_value_adjusted for r in res.metrics] == pytest.approx(list(holm))
    bh = analyze(exp.id, session=session, correction="fdr_bh")
    assert [r.p_value_adjusted for r in bh.metrics] == pytest.approx(
        list(multipletests([r.test.p_value for r in bh.metrics], method="fdr_bh")[1]))
    none = analyze(exp.id, session=session, correction="none")
    assert [r.p_value_adjusted for r in none.metrics] == [r.test.p_value for r in none.metrics]


def test_verdict_ship(sqlite_session: Session) -> None:
    session = sqlite_session
    exp, _, _ = generated(session, click=(0.10, 0.25), min_samples_per_variant=100, min_duration_days=7,
                          success_criteria={"metric": "click", "direction": "increase", "threshold": 0.02,
                                            "confidence": 0.95})
    res = analyze(exp.id, session=session)
    assert res.alpha == pytest.approx(0.05)
    assert res.verdict.decision == "ship" and res.verdict.variant == "B"
    assert "B raises click by" in res.verdict.reason and "2 % threshold" in res.verdict.reason
    assert all(h.ok for h in res.health), res.health


def test_verdict_keep_control_when_no_effect(sqlite_session: Session) -> None:
    session = sqlite_session
    # seed 8 draws 49 vs 50 clicks out of 400 per arm: no real difference.
    exp, _, _ = generated(session, click=(0.15, 0.15), seed=8, success_criteria={"threshold": 0.02})
    res = analyze(exp.id, session=session)
    assert res.verdict.decision == "keep_control"
    assert "not significant" in res.verdict.reason or "threshold" in res.verdict.reason


def test_verdict_guardrail_blocks_shipping(sqlite_session: Session) -> None:
    session = sqlite_session
    # B converts better but its latency (a guardrail, "must not increase") is 15 ms worse.
    exp, _, _ = generated(session, click=(0.10, 0.25), latency_shift=(0.0, 15.0))
    res = analyze(exp.id, session=session)
    assert res.result("latency").significant and res.result("latency").test.diff > 0
    assert res.verdict.decision == "keep_control"
    assert "guardrail latency" in res.verdict.reason


def test_verdict_too_few_samples_or_days(sqlite_session: Session) -> None:
    # The generated experiment is completed: it cannot collect more data, so it is never told to keep running.
    session = sqlite_session
    exp, _, _ = generated(session, click=(0.10, 0.25), min_samples_per_variant=5000)
    assert exp.status == "completed"
    res = analyze(exp.id, session=session)
    assert res.verdict.decision == "no_winner" and res.verdict.variant is None
    assert "Too few users" in res.verdict.reason and "Keep running" not in res.verdict.reason
    assert "Do not ship" in res.verdict.reason
    exp.min_samples_per_variant = 0
    exp.min_duration_days = 30  # stopped after 14 days
    session.add(exp)
    session.commit()
    res = analyze(exp.id, session=session)
    assert res.verdict.decision == "no_winner" and "minimum 30 days" in res.verdict.reason
    exp.status = "running"  # the same data while still running: more days will come
    session.add(exp)
    session.commit()
    res = analyze(exp.id, session=session)
    assert res.verdict.decision == "keep_running" and res.verdict.reason.startswith("Keep running:")
    assert "minimum 30 days" in res.verdict.reason


def test_srm_flagged_on_skewed_split(sqlite_session: Session) -> None:
    session = sqlite_session
    exp, _, _ = generated(session, n=(300, 200))
    res = analyze(exp.id, session=session)
    # scipy: chi-square goodness of fit of (300, 200) against 50/50.
    ref = sps.chisquare([300, 200], [250, 250])
    assert res.srm.p_value == pytest.approx(ref.pvalue) and res.srm.mismatch
    assert not next(h for h in res.health if h.name == "srm").ok
    # completed with a mismatch: nothing to ship, and never "keep running"
    assert res.verdict.decision == "no_winner" and "Sample ratio mismatch" in res.verdict.reason


def test_peeking_warning_for_running_fixed_horizon(sqlite_session: Session) -> None:
    session = sqlite_session
    exp, _, _ = generated(session, status="running", stopped_at=None)
    names = {h.name for h in analyze(exp.id, session=session).health if not h.ok}
    assert "peeking" in names
    assert "peeking" not in {h.name for h in analyze(exp.id, session=session, method="sequential").health if not h.ok}


def test_sequential_and_bayesian_fields(sqlite_session: Session) -> None:
    session = sqlite_session
    exp, _, truth = generated(session, click=(0.10, 0.20), min_samples_per_variant=1000)
    seq = analyze(exp.id, session=session, method="sequential")
    r = seq.result("click")
    assert isinstance(r.test, stats.SequentialResult) and r.test.planned_n == 1000
    freq = analyze(exp.id, session=session).result("click")
    # A confidence sequence is wider than the fixed-horizon interval at the same alpha.
    assert (r.test.ci_high - r.test.ci_low) > (freq.test.ci_high - freq.test.ci_low)
    bay = analyze(exp.id, session=session, method="bayesian")
    b = bay.result("click")
    assert b.bayes is not None
    a, t = truth["A"]["click"], truth["B"]["click"]
    assert b.bayes == stats.bayes_proportion(int(a.sum()), len(a), int(t.sum()), len(t), credible_level=0.95)
    assert 0.99 < b.bayes.chance_to_beat_control <= 1.0 and b.significant
    frame = bay.to_frame()
    assert {"chance_to_beat_control", "expected_loss"} <= set(frame.columns)


def test_cuped_reduces_variance(session: Session) -> None:
    exp, arms, truth = generated(session, latency_shift=(0.0, 3.0), seed=7)
    plain = analyze(exp.id, session=session).result("latency")
    adjusted = analyze(exp.id, session=session, cuped=True).result("latency")
    assert isinstance(adjusted.test, stats.CupedResult)
    assert adjusted.test.std_error < 0.5 * plain.test.std_error  # corr(pre, post) ~ 0.94
    # Same numbers as abcore.stats.cuped on sums computed by numpy from the generated values.
    def summary(name: str) -> stats.CovariateSummary:
        y, x = truth[name]["latency"], truth[name]["pre"]
        return stats.CovariateSummary(n=len(y), sum_y=y.sum(), sum_y2=(y * y).sum(), sum_x=x.sum(),
                                      sum_x2=(x * x).sum(), sum_xy=(x * y).sum())
    expected = stats.cuped(summary("A"), summary("B"), alpha=0.05)
    assert adjusted.test.diff == pytest.approx(expected.diff, rel=1e-9)
    assert adjusted.test.std_error == pytest.approx(expected.std_error, rel=1e-9)
    # The pre-period events never leak into the in-experiment metric.
    assert plain.value == pytest.approx(truth["B"]["latency"].mean())


def test_daily_series_cumulates(session: Session) -> None:
    exp, arms = completed_experiment(session, stopped_at=T0 + timedelta(days=2))
    a, b = arms["A"], arms["B"]
    d1, d2 = T0 + timedelta(hours=5), T0 + timedelta(days=1, hours=5)
    add_data(session, exp, [("a1", a, {}), ("a2", a, {}), ("b1", b, {}), ("b2", b, {})], [
        exposure("a1", d1), exposure("b1", d1), exposure("a2", d2), exposure("b2", d2), exposure("a1", d2),
        conversion("b1", "click", 1.0, d1), conversion("b1", "click", 1.0, d2), conversion("a2", "click", 1.0, d2),
    ])
    res = analyze(exp.id, session=session)
    pts = {(p.day, p.variant): p for p in res.daily if p.metric == "click"}
    day1, day2 = date(2026, 1, 1), date(2026, 1, 2)
    # Day 1: A 1 user 0 conversions, B 1 user 1 conversion; day 2: each 2 users, 1 converted user.
    assert (pts[day1, "A"].users, pts[day1, "A"].value) == (1, 0.0)
    assert (pts[day1, "B"].users, pts[day1, "B"].value) == (1, 1.0)
    assert (pts[day2, "A"].users, pts[day2, "A"].value, pts[day2, "B"].value) == (2, 0.5, 0.5)
    assert pts[day2, "B"].lift == pytest.approx(0.0) and math.isnan(pts[day2, "A"].lift)


def test_feedback_and_output_shapes(session: Session, hand_data: tuple[Experiment, dict[str, Variant]]) -> None:
    exp, _ = hand_data
    add_data(session, exp, [], [
        {"user_id": "a1", "event_type": "feedback", "properties": {"sentiment": "positive"}},
        {"user_id": "b1", "event_type": "feedback", "properties": {"sentiment": "negative"}},
    ])
    res: Results = analyze(exp.name, session=session)
    assert res.feedback == {"A": {"positive": 1, "neutral": 0, "negative": 0},
                            "B": {"positive": 0, "neutral": 0, "negative": 1}}
    frame = res.to_frame()
    assert len(frame) == 2  # (click, revenue) x treatment B
    assert {"metric", "variant", "users", "diff", "ci_low", "ci_high", "lift", "lift_ci_low", "lift_ci_high",
            "p_value", "p_value_adjusted", "significant"} <= set(frame.columns)
    data = res.to_dict()
    text = json.dumps(data, allow_nan=False)  # no NaN anywhere, datetimes as ISO strings
    assert json.loads(text)["computed_at"].endswith("+00:00")
    assert data["verdict"]["decision"] in {"ship", "keep_control", "keep_running"}
    assert len(data["frame"]) == 2 and data["experiment"] == "exp"


@pytest.mark.parametrize(("method", "cuped"), [("frequentist", False), ("sequential", False), ("frequentist", True),
                                               ("bayesian", False)])
def test_a_stored_result_reads_back_as_the_same_results(session: Session, hand_data: tuple[Experiment, dict[str, Variant]],
                                                        method: str, cuped: bool) -> None:
    """Results.from_dict(to_dict()) (a watcher snapshot read back) equals the analysis: same dict, same test class."""
    exp, _ = hand_data
    res: Results = analyze(exp.name, session=session, method=method, cuped=cuped, segment="country")  # type: ignore[arg-type]
    back = Results.from_dict(json.loads(json.dumps(res.to_dict())))  # through JSON, as the store holds it
    assert back.to_dict() == res.to_dict()
    assert [type(m.test) for m in back.metrics] == [type(m.test) for m in res.metrics]  # e.g. SequentialResult
    assert back.verdict == res.verdict and back.computed_at == res.computed_at
    assert [(m.metric, m.variant, m.outcome) for m in back.metrics] == [(m.metric, m.variant, m.outcome) for m in res.metrics]


def test_unknown_arguments_raise(session: Session, hand_data: tuple[Experiment, dict[str, Variant]]) -> None:
    exp, _ = hand_data
    with pytest.raises(ValueError, match="method"):
        analyze(exp.id, session=session, method="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="correction"):
        analyze(exp.id, session=session, correction="sidak")
    from abcore.experiments.errors import ExperimentNotFound

    with pytest.raises(ExperimentNotFound):
        analyze("no such experiment", session=session)


def test_no_data_keeps_running(session: Session) -> None:
    exp, _ = completed_experiment(session, status="draft", started_at=None, stopped_at=None)
    res = analyze(exp.id, session=session, segment="country", cuped=True)
    assert [v.users for v in res.variants] == [0, 0]
    assert res.verdict.decision == "keep_running" and "No exposed users" in res.verdict.reason
    assert res.warnings  # CUPED needs started_at
    assert res.daily == () and res.percentiles == ()
    json.dumps(res.to_dict(), allow_nan=False)
    empty = value_distribution(session=session, experiment_id=exp.id, metric="latency")
    assert empty.edges == () and empty.counts == {}
