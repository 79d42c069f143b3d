"""The ``novelty`` and ``differential`` stopping rules: pure decisions on an observation, and the alert end to end."""

from __future__ import annotations

import math
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from sqlalchemy import update
from sqlmodel import col, select

from abcore.experiments.records import get_variants
from abcore.experiments.validation import validate_auto_stop
from abcore.metrics import define_metric
from abcore.stats import EarlyLateSummary, MeanSummary, mean_test_from, novelty_test
from abcore.store.tables import Alert, Experiment, utcnow
from abcore.watch.rules import decide, observation_from
from abcore.watch.runner import run_pass
from abcore.watch.webhooks import WatchSettings
from tests.factories import add_data, conversion, exposure, make_experiment

RULES = {"guardrails": "off", "success": "off", "srm": "off", "novelty": "alert", "differential": "pause",
         "max_days": None, "max_users": None, "min_days": 0, "min_users": 0}


def _result(metric: str, role: str, novelty: object = None) -> SimpleNamespace:
    test = mean_test_from(MeanSummary(100, 10.0, 20.0), MeanSummary(100, 12.0, 24.0))
    return SimpleNamespace(metric=metric, role=role, variant="B", control_value=0.1, value=0.12, test=test,
                           p_value_adjusted=0.5, users=100, control_users=100, outcome="inconclusive",
                           direction="increase", bayes=None, novelty=novelty)


def _decaying() -> object:
    # early effect +0.2 per user, late +0: the change is detected (sums of a hand-built data set)
    a = EarlyLateSummary(1000, 300.0, 300.0, 300.0, 300.0, 300.0)
    b = EarlyLateSummary(1000, 500.0, 500.0, 300.0, 300.0, 300.0)
    return novelty_test(a, b)


def test_the_rules_validate() -> None:
    assert validate_auto_stop({"novelty": "alert", "differential": "pause"}) == []
    assert validate_auto_stop({"novelty": "stop"}) == [
        "Stopping rule 'novelty' must be one of pause, alert, off; got 'stop'."]


def test_novelty_and_differential_fire_once_each() -> None:
    cell = SimpleNamespace(metric="latency", attribute="country", value="fr", variant="B", role="guardrail",
                           test=SimpleNamespace(lift=0.3), p_value_adjusted=0.01)
    other = SimpleNamespace(**{**cell.__dict__, "metric": "click", "role": "primary"})
    obs = observation_from(days_run=10, variant_users=[("A", 100), ("B", 100)], srm_p_value=0.5,
                           srm_mismatch=False, primary_metric="click",
                           metric_results=[_result("click", "primary", _decaying()), _result("latency", "guardrail")],
                           differential_cells=[cell, other])
    decisions = decide(RULES, obs)
    assert [(d.kind, d.action, d.rule) for d in decisions] == [
        ("differential", "pause", "differential:latency:country=fr:B"), ("novelty", "alert", "novelty:click")]
    assert "the lift is decaying" in decisions[1].reason
    assert "country = fr" in decisions[0].reason
    assert decide({**RULES, "novelty": "off", "differential": "off"}, obs) == []


def test_a_watch_pass_alerts_on_a_decaying_lift_and_a_guardrail_cell(session: Any) -> None:
    """A running experiment (SQLite and PostgreSQL) whose click lift decays from +0.3 on day 0 and whose
    guardrail ``errors`` rises only for country fr: one pass stores the novelty and the differential alerts."""
    exp = make_experiment(session, "decay", actor="test", primary_metric="click", guardrail_metrics=["errors"],
                          auto_stop={"guardrails": "off", "success": "off", "srm": "off", "novelty": "alert",
                                     "differential": "alert"})
    started = utcnow() - timedelta(days=16)
    session.execute(update(Experiment).where(col(Experiment.id) == exp.id).values(started_at=started))
    session.commit()
    arms = {v.name: v for v in get_variants(session=session, experiment_id=exp.id)}
    rng = np.random.default_rng(21)
    assignments, events = [], []
    for i in range(1200):
        uid, arm = f"w{i:04d}", ("control", "treatment")[i % 2]
        country = ("de", "fr", "us")[(i // 2) % 3]
        assignments.append((uid, arms[arm], {"country": country}))
        first = started + timedelta(hours=1 + float(rng.uniform(0, 72)))
        events.append(exposure(uid, first))
        for d in range(12):
            lift = 0.3 * math.exp(-d / 1.5) if arm == "treatment" else 0.0
            for _ in range(int(rng.poisson(1.0 + lift * 3))):
                events.append(conversion(uid, "click", 1.0, first + timedelta(days=d, hours=float(rng.uniform(0, 24)))))
        p_err = 0.5 if (arm == "treatment" and country == "fr") else 0.1
        if rng.random() < p_err:
            events.append(conversion(uid, "errors", 1.0, first + timedelta(hours=2)))
    add_data(session, exp, assignments, events)
    define_metric(session=session, data={"name": "click", "kind": "count"})
    run_pass(session.get_bind(), settings=WatchSettings(webhook_urls=()))
    session.expire_all()
    rules = sorted(a.rule for a in session.exec(select(Alert).where(Alert.experiment_id == exp.id)).all())
    # fr differs from the rest (and, against a rest holding fr, another country may too)
    assert "differential:errors:country=fr:treatment" in rules and "novelty:click" in rules
    assert all(r.startswith("differential:errors:") for r in rules if r != "novelty:click")
