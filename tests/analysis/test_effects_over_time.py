"""The effect by days since first exposure, the novelty item and the differential impact scan through ``analyze``
(SQLite and PostgreSQL), on events placed in time directly (``ExperimentEvent.ts``).

Expected numbers come from pandas on the raw rows and statsmodels (noted at each assertion).
"""

from __future__ import annotations

import json
import math
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlmodel import Session
from statsmodels.stats.multitest import multipletests

from abcore.analysis.pipeline import analyze
from abcore.store.tables import Experiment, Variant
from tests.factories import T0, add_data, completed_experiment, conversion, exposure

END = T0 + timedelta(days=14)


def _raw() -> tuple[list[tuple[str, str, dict[str, Any]]], list[dict[str, Any]]]:
    """400 users per arm entering over 5 days; ``click`` on each exposure day with probability
    0.3 + 0.25 exp(-d / 1.5) in B (a decaying lift), 0.3 in A; ``buy`` once with probability 0.2, 0.6 for
    B users in country fr (a planted differential effect). Seed 7."""
    rng = np.random.default_rng(7)
    assignments, events = [], []
    for i in range(800):
        uid, arm = f"u{i:04d}", "AB"[i % 2]
        attrs = {"country": ["de", "fr", "us", "it"][(i // 2) % 4], "plan": ["free", "pro"][(i // 8) % 2]}
        assignments.append((uid, arm, attrs))
        first = T0 + timedelta(hours=float(rng.uniform(0, 5 * 24)))
        events.append(exposure(uid, first))
        for d in range(14):
            p = 0.3 + (0.25 * math.exp(-d / 1.5) if arm == "B" else 0.0)
            if rng.random() < p:
                events.append(conversion(uid, "click", 1.0, first + timedelta(days=d, hours=float(rng.uniform(0, 24)))))
        p_buy = 0.6 if (arm == "B" and attrs["country"] == "fr") else 0.2
        if rng.random() < p_buy:
            events.append(conversion(uid, "buy", 1.0, first + timedelta(hours=3)))
    return assignments, events


@pytest.fixture
def timed(session: Session) -> tuple[Experiment, dict[str, Variant]]:
    exp, arms = completed_experiment(session, secondary_metrics=["buy"], stopped_at=END)
    assignments, events = _raw()
    add_data(session, exp, [(u, arms[a], attrs) for u, a, attrs in assignments], events)
    return exp, arms


def _frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    assignments, events = _raw()
    pop = pd.DataFrame([{"user_id": u, "arm": a, **attrs} for u, a, attrs in assignments])
    ev = pd.DataFrame(events)
    first = ev[ev.event_type == "exposure"].set_index("user_id").ts.rename("first")
    pop = pop.join(first, on="user_id")
    pop["k"] = ((END - pop["first"]) // pd.Timedelta(days=1)).clip(upper=28)
    return pop, ev[ev.event_type == "conversion"].join(first, on="user_id")


def test_effect_by_exposure_day_matches_pandas(session: Session, timed: Any) -> None:
    exp, _ = timed
    res = analyze(exp.id, session=session, end=END)
    r = res.result("click")
    pop, conv = _frame()
    clicks = conv[conv.metric_name == "click"].copy()
    clicks["dd"] = (clicks.ts - clicks["first"]) // pd.Timedelta(days=1)
    clicks = clicks.join(pop.set_index("user_id")[["arm", "k"]], on="user_id")
    clicks = clicks[clicks.dd < clicks.k]
    assert [p.day for p in r.by_exposure_day] == list(range(int(pop.k.max())))  # days 0 .. 12 observed
    for point in (r.by_exposure_day[0], r.by_exposure_day[9]):
        d = point.day
        # pandas: users observed beyond day d per arm, and the share of them with a click on exposure day d
        n = pop[pop.k > d].groupby("arm").size()
        conv_d = clicks[clicks.dd == d].groupby("arm").user_id.nunique()
        assert (point.control_users, point.users) == (n["A"], n["B"])
        assert point.control_value == pytest.approx(conv_d["A"] / n["A"], rel=1e-12)
        assert point.value == pytest.approx(conv_d["B"] / n["B"], rel=1e-12)
        assert point.test.lift == pytest.approx(point.value / point.control_value - 1, rel=1e-12)
    assert r.by_exposure_day[0].test.significant and r.by_exposure_day[0].test.lift > 0.5
    n = r.novelty
    assert n is not None and n.detected and n.pattern == "novelty"
    # pandas: early (day 0) and late (mean of days 7..k-1) per user beyond day 7, Welch by hand from numpy
    late_pop = pop[pop.k > 7].set_index("user_id")
    per = clicks[clicks.user_id.isin(late_pop.index)]
    early = per[per.dd == 0].groupby("user_id").size().reindex(late_pop.index, fill_value=0).clip(upper=1)
    late = (per[per.dd >= 7].groupby(["user_id", "dd"]).size().clip(upper=1).groupby("user_id").sum()
            .reindex(late_pop.index, fill_value=0) / (late_pop.k - 7))
    change = early - late
    arm = late_pop.arm
    assert n.change.diff == pytest.approx(change[arm == "B"].mean() - change[arm == "A"].mean(), rel=1e-9)
    assert n.long_run.diff == pytest.approx(late[arm == "B"].mean() - late[arm == "A"].mean(), rel=1e-9)
    item = next(h for h in res.health if h.name == "novelty")
    assert not item.ok and "click (B): the lift is decaying" in item.message and "in the long run" in item.message
    assert res.result("buy").novelty is not None and not res.result("buy").novelty.detected  # one-off purchase
    json.dumps(res.to_dict())  # the whole result stays JSON-ready
    # without an end, the days are observed until the experiment stopped (END), not until today
    assert analyze(exp.id, session=session, differential=False).result("click").by_exposure_day == r.by_exposure_day


def test_differential_impact_finds_the_planted_cell(session: Session, timed: Any) -> None:
    exp, _ = timed
    res = analyze(exp.id, session=session, end=END, exposure_days=False)
    di = res.differential_impact
    assert di is not None and di.attributes == ("country", "plan")
    assert di.tested == (4 + 2) * 2  # (country values + plan values) x 2 metrics x 1 treatment
    found = {(c.attribute, c.value, c.metric) for c in di.cells}
    assert ("country", "fr", "buy") in found
    cell = next(c for c in di.cells if (c.attribute, c.value, c.metric) == ("country", "fr", "buy"))
    pop, conv = _frame()
    buyers = set(conv[conv.metric_name == "buy"].user_id)
    fr = pop[pop.country == "fr"]
    # pandas: the cell's users per arm and their purchase rates
    assert (cell.control_users, cell.users) == tuple(fr.groupby("arm").size()[["A", "B"]])
    assert cell.test.treatment == pytest.approx(fr[fr.arm == "B"].user_id.isin(buyers).mean(), rel=1e-12)
    assert cell.p_value_adjusted <= 0.05 and cell.versus.delta > 0
    # statsmodels: the BH adjustment of the raw p-values equals what survives
    assert all(c.p_value_adjusted >= c.versus.p_value for c in di.cells)
    assert not any(h.name == "novelty" for h in res.health)
    assert math.isfinite(multipletests([cell.versus.p_value], method="fdr_bh")[1][0])


def test_the_verdict_waits_for_a_decaying_winner() -> None:
    """A significant winner whose lift decays to an unclear long-run estimate is not shipped yet; with a
    clear long-run estimate it is, and the reason gives both lifts (hand-built sums: early effect +0.2 per
    user on a 0.3 base, late effect +0.01 or +0.1 with per-user variance 0.3)."""
    from abcore import stats
    from abcore.analysis.verdict import verdict

    def novelty(late_b: float) -> stats.NoveltyResult:
        a = stats.EarlyLateSummary(1000, 300.0, 300.0, 300.0, 390.0, 300.0)
        b = stats.EarlyLateSummary(1000, 500.0, 500.0, late_b, late_b + 390.0 - 300.0, 300.0)
        return stats.novelty_test(a, b)

    test = stats.proportion_test(3000, 10000, 3600, 10000)
    winner = SimpleNamespace(metric="click", variant="B", variant_id=2, role="primary", direction="increase",
                             outcome="better", test=test, bayes=None, p_value_adjusted=test.p_value,
                             novelty=novelty(310.0))
    assert winner.novelty.detected and winner.novelty.long_run.lift_ci_low < 0
    judged = verdict(status="running", shipped_variant=None, rollout_pct=None, success_metric="click", threshold=0.0,
                     results=[winner], health=[], alpha=0.05)
    assert judged.decision == "keep_running" and "the lift is decaying: +66.7 % on day 0" in judged.reason
    lasting = SimpleNamespace(**{**winner.__dict__, "novelty": novelty(400.0)})
    assert lasting.novelty.long_run.lift_ci_low > 0
    judged = verdict(status="running", shipped_variant=None, rollout_pct=None, success_metric="click", threshold=0.0,
                     results=[lasting], health=[], alpha=0.05)
    assert judged.decision == "ship" and "in the long run" in judged.reason
