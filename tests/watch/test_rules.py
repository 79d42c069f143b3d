"""Stopping rules: validation, storage and audit, editing, the pure decision, metric outcomes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from sqlmodel import Session

from abcore import stats
from abcore.analysis.pipeline import analyze
from abcore.analysis.verdict import metric_outcome
from abcore.experiments.errors import ExperimentError, InvalidTransition
from abcore.experiments.lifecycle import create_experiment, set_auto_stop, stop_experiment
from abcore.experiments.records import audit_log
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.experiments.validation import validate_auto_stop
from abcore.watch.rules import Decision, MetricOutcome, Observation, decide
from abcore.watch.webhooks import WatchSettings, webhook_payload

from .conftest import simulated_experiment

VARIANTS = [VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)]


def test_validation_messages() -> None:
    assert validate_auto_stop({}) == [] and validate_auto_stop(None) == []
    assert validate_auto_stop({"guardrails": "stop", "success": "off", "srm": "pause", "max_days": 14,
                               "max_users": 50000, "min_days": 3, "min_users": 1000}) == []
    assert validate_auto_stop({"guardrail": "pause"}) == [
        "Unknown stopping rule(s): guardrail (known: guardrails, success, srm, novelty, differential, max_days, max_users, min_days, min_users)."]
    assert validate_auto_stop({"success": "pause"}) == ["Stopping rule 'success' must be one of stop, alert, off; got 'pause'."]
    assert validate_auto_stop({"srm": "stop"}) == ["Stopping rule 'srm' must be one of pause, alert, off; got 'stop'."]
    assert validate_auto_stop({"max_users": 10.5}) == ["Stopping rule 'max_users' must be a whole number of users; got 10.5."]
    assert validate_auto_stop({"max_days": 0}) == [
        "Stopping rule 'max_days' must be more than 0 (or null for no limit); got 0."]
    assert validate_auto_stop({"min_users": -1}) == ["Stopping rule 'min_users' cannot be negative; got -1."]
    assert validate_auto_stop({"min_days": "3"}) == ["Stopping rule 'min_days' must be a number of days; got '3'."]
    assert validate_auto_stop({"min_days": 10, "max_days": 5}) == ["min_days (10) is larger than max_days (5)."]
    assert validate_auto_stop(["pause"]) == ['The stopping rules must be an object (e.g. {"guardrails": "pause"}).']


def test_create_stores_normalised_rules_and_refuses_bad_ones(session: Session) -> None:
    exp = create_experiment(session=session, data=ExperimentCreate(name="x", variants=VARIANTS,
                                                                   auto_stop={"guardrails": "stop", "min_users": 100.0}))
    assert exp.auto_stop == {"guardrails": "stop", "success": "alert", "srm": "alert", "novelty": "off",
                             "differential": "off", "max_days": None,
                             "max_users": None, "min_days": 0.0, "min_users": 100}
    plain = create_experiment(session=session, data=ExperimentCreate(name="y", variants=VARIANTS))
    assert plain.auto_stop == {}
    with pytest.raises(ExperimentError) as err:
        create_experiment(session=session, data=ExperimentCreate(name="z", variants=VARIANTS, auto_stop={"srm": "stop"}))
    assert err.value.problems == ["Stopping rule 'srm' must be one of pause, alert, off; got 'stop'."]


def test_set_auto_stop_on_a_running_experiment_is_audited(session: Session) -> None:
    exp, _ = simulated_experiment(session, "edit", users_per_arm=10, auto_stop={})
    changed = set_auto_stop(session=session, ref=exp.id, auto_stop={"success": "stop", "max_days": 21}, actor="alice")
    assert changed.auto_stop["success"] == "stop" and changed.auto_stop["max_days"] == 21.0
    entry = audit_log(session=session, experiment_id=exp.id)[0]
    assert (entry.action, entry.actor, entry.details["before"]) == ("set_auto_stop", "alice", {})
    assert entry.details["after"] == changed.auto_stop
    with pytest.raises(ExperimentError, match="'guardrails' must be one of"):
        set_auto_stop(session=session, ref=exp.id, auto_stop={"guardrails": "explode"})
    stop_experiment(session=session, ref=exp.id)
    with pytest.raises(InvalidTransition, match="it is completed"):
        set_auto_stop(session=session, ref=exp.id, auto_stop={})


def _m(metric: str, role: str, outcome: str, lift: float = 0.2) -> MetricOutcome:
    return MetricOutcome(metric, role, "b", outcome, 0.1, 0.12, lift, 0.05, 0.35, 0.001, 1000, 1000)


def _obs(*metrics: MetricOutcome, days: float = 10, users: int = 2000, srm: bool = False) -> Observation:
    return Observation(days, users, 1e-5 if srm else 0.5, srm, "conv", tuple(metrics), (("a", 1000), ("b", 1000)))


def test_decide() -> None:
    rules = {"guardrails": "pause", "success": "stop", "srm": "alert", "max_days": None, "max_users": None,
             "min_days": 7, "min_users": 1000}
    harmful = _obs(_m("conv", "primary", "inconclusive"), _m("latency", "guardrail", "worse"))
    (d,) = decide(rules, harmful)
    assert (d.rule, d.action, d.metric, d.variant) == ("guardrail:latency", "pause", "latency", "b")
    assert decide(rules, _obs(_m("latency", "guardrail", "worse"), days=6.9)) == []  # before min_days
    assert decide(rules, _obs(_m("latency", "guardrail", "worse"), users=999)) == []  # before min_users
    assert decide({**rules, "guardrails": "off"}, harmful) == []
    assert decide({}, harmful) == []
    both = decide(rules, _obs(_m("conv", "primary", "better"), _m("latency", "guardrail", "worse"), srm=True))
    assert [(x.rule, x.action) for x in both] == [("success:conv", "stop"), ("guardrail:latency", "pause"), ("srm", "alert")]
    worse = decide(rules, _obs(_m("conv", "primary", "worse")))
    assert worse[0].rule == "success:conv" and "(worse)" in worse[0].reason
    capped = decide({**rules, "max_days": 10, "max_users": 5000}, _obs(days=10.0, users=10))
    assert [(x.rule, x.action) for x in capped] == [("max_days", "stop")]  # max rules ignore the minimums


def test_metric_outcome() -> None:
    def r(role: str, diff: float, significant: bool = True, **extra: object) -> SimpleNamespace:
        return SimpleNamespace(metric="m", role=role, significant=significant, test=SimpleNamespace(diff=diff), **extra)

    assert metric_outcome(r("guardrail", +0.1)) == "worse"
    assert metric_outcome(r("guardrail", -0.1)) == "better"
    assert metric_outcome(r("primary", +0.1)) == "better"
    assert metric_outcome(r("secondary", -0.1)) == "worse"
    assert metric_outcome(r("primary", +0.1, significant=False)) == "inconclusive"
    assert metric_outcome(r("primary", math.nan)) == "inconclusive"
    assert metric_outcome(r("guardrail", +0.1), {"m": "increase"}) == "better"
    assert metric_outcome(r("primary", +0.1), {"m": "decrease"}) == "worse"
    assert metric_outcome(r("primary", +0.1, outcome="worse")) == "worse"  # metric definitions win


def test_analyze_planned_n_is_the_sequential_tuning_parameter(session: Session) -> None:
    exp, raw = simulated_experiment(session, "tuned", users_per_arm=400, error_rates=(0.1, 0.15), seed=2)
    results = analyze(exp, session=session, method="sequential", planned_n=5000, percentiles=False, daily=False)
    got = results.result("errors").test
    # independent: the stats function on the raw per-user counts (numpy)
    a = stats.BinarySummary(400, int(raw["control_errors"].sum()))
    b = stats.BinarySummary(400, int(raw["treatment_errors"].sum()))
    expected = stats.sequential_test(a, b, planned_n=5000, alpha=0.05)
    assert (got.ci_low, got.ci_high, got.p_value) == pytest.approx((expected.ci_low, expected.ci_high, expected.p_value))
    default = analyze(exp, session=session, method="sequential", percentiles=False, daily=False).result("errors").test
    assert default.ci_low != pytest.approx(got.ci_low)  # min_samples_per_variant (400) is used without planned_n


def test_payload_without_action() -> None:
    from abcore.store.tables import Experiment

    exp = Experiment(id=3, name="e", salt="s", status="running")
    payload = webhook_payload(exp, Decision("srm", "srm", "alert", "Sample ratio mismatch."), action_taken=False,
                              status="running", settings=WatchSettings(dashboard_url="https://ab.example.com/"))
    assert payload["text"] == ":rotating_light: [e] Sample ratio mismatch. Alert only, no action taken. " \
                              "<https://ab.example.com/results?experiment=3|Results>"
    assert payload["link"] == "https://ab.example.com/results?experiment=3" and payload["metric"] is None


def test_settings_from_env() -> None:
    s = WatchSettings.from_env({"ABCORE_WEBHOOK_URLS": " http://a/x , https://b/y ,", "ABCORE_WEBHOOK_RETRIES": "5",
                                "ABCORE_DASHBOARD_URL": "http://dash/"})
    assert s.webhook_urls == ("http://a/x", "https://b/y") and s.retries == 5 and s.dashboard_url == "http://dash"
    with pytest.raises(ValueError, match="ABCORE_WEBHOOK_BACKOFF must be a number"):
        WatchSettings.from_env({"ABCORE_WEBHOOK_BACKOFF": "fast"})
    with pytest.raises(ValueError, match="invalid URL"):
        WatchSettings.from_env({"ABCORE_WEBHOOK_URLS": "not-a-url"})


def test_config_export_import_round_trips_the_rules(session: Session) -> None:
    from abcore.io.configs import export_config, import_config

    exp = create_experiment(session=session, data=ExperimentCreate(name="cfg", variants=VARIANTS,
                                                                   auto_stop={"guardrails": "stop", "max_days": 14}))
    data = export_config(session=session, experiment=exp.id)
    assert data["auto_stop"] == exp.auto_stop
    data["experiment_id"] = "cfg-copy"
    (copy,) = import_config(session=session, data=data)
    assert copy.auto_stop == exp.auto_stop
    data["experiment_id"] = "cfg-bad"
    data["auto_stop"] = {"guardrails": "explode"}
    with pytest.raises(Exception, match="'guardrails' must be one of"):
        import_config(session=session, data=data)
