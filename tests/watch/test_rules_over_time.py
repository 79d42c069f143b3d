"""The ``novelty`` and ``differential`` stopping rules: pure decisions on an observation, and the alert end to end."""

from __future__ import annotations

from types import SimpleNamespace

from abcore.experiments.validation import validate_auto_stop
from abcore.stats import EarlyLateSummary, MeanSummary, mean_test_from, novelty_test
from abcore.watch.rules import decide, observation_from

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
