"""abcore.dashboard.views.edit_form: the edit page's prefill and parsing (pure, plus one store round trip per backend)."""

from __future__ import annotations

from sqlmodel import Session

from abcore import experiments as ex
from abcore.dashboard.views import create_form, edit_form

RULES = [
    {"attribute": "country", "op": "in", "value": ["DE", "FR"]},
    {"attribute": "age", "op": "gte", "value": 18},
    {"attribute": "platform", "op": "eq", "value": "ios"},
    {"op": "user_ids", "value": ["u1", "u2"]},
]


def test_targeting_rows_invert_the_forms_parser() -> None:
    rows, user_ids = edit_form.targeting_rows(RULES)
    assert user_ids == "u1\nu2"
    assert rows[0] == {"attribute": "country", "op": "in", "value": "DE, FR"}
    parsed, problems = create_form.parse_targeting(rows, user_ids)
    assert problems == [] and parsed == RULES


def test_an_unchanged_prefilled_form_changes_nothing(session: Session) -> None:
    exp = ex.create_experiment(session=session, data=ex.ExperimentCreate(
        name="exp", description="d", hypothesis="h", targeting=RULES, traffic_allocation=0.35,
        primary_metric="clicks", secondary_metrics=["a"], guardrail_metrics=["latency"],
        success_criteria={"metric": "clicks", "direction": "decrease", "threshold": 0.015, "confidence": 0.99},
        min_duration_days=3, min_samples_per_variant=250, auto_stop={"srm": "pause"},
        variants=[ex.VariantCreate(name="c", allocation_pct=33.333334, config={"k": 1}),
                  ex.VariantCreate(name="t1", allocation_pct=33.333333), ex.VariantCreate(name="t2", allocation_pct=33.333333)],
    ))
    variants = ex.get_variants(session=session, experiment_id=exp.id)
    form = edit_form.prefill(exp, variants)
    assert (form.traffic_pct, form.min_effect_pct, form.confidence, form.direction) == (35.0, 1.5, 0.99, "decrease")
    update, problems = edit_form.draft_update(form, exp.auto_stop)
    assert problems == [] and update is not None
    assert ex.planned_changes(session=session, ref=exp.id, changes=update) == {}
    form.rows[1].allocation_pct = 40.0
    _, problems = edit_form.draft_update(form)
    assert any("must sum to exactly 100 %; they sum to 106.666667 %" in p for p in problems)


def test_running_update_and_change_lines() -> None:
    update = edit_form.running_update(" new ", "h", ["a", "a", "b"], 55.0)
    assert (update.description, update.secondary_metrics, update.traffic_allocation) == ("new", ["a", "b"], 0.55)
    assert update.allocations is None and update.primary_metric is None
    assert edit_form.describe_changes({"traffic_allocation": {"before": 1.0, "after": 0.4}}) == [
        "traffic_allocation: 1.0 -> 0.4"]
