"""abcore.dashboard.views.create_form: variant rows, allocation, targeting and the whole create form."""

from __future__ import annotations

import pytest

from abcore.dashboard.views import create_form
from abcore.experiments.schemas import ExperimentCreate
from abcore.experiments.validation import validate_experiment


def test_even_split_sums_to_exactly_100() -> None:
    for n in range(1, 12):
        split = create_form.even_split(n)
        assert len(split) == n
        assert create_form.allocation_ok(create_form.allocation_total(split)), (n, split)
    assert create_form.even_split(3) == [33.34, 33.33, 33.33]
    assert create_form.even_split(2) == [50.0, 50.0]


def test_rows_add_and_remove_keep_ids_and_never_drop_below_two() -> None:
    rows = create_form.initial_rows()
    assert [r.name for r in rows] == ["control", "treatment"]
    assert create_form.remove_row(rows, rows[0].id) == rows  # two rows: nothing removed
    rows = create_form.add_row(rows)
    assert [r.id for r in rows] == [0, 1, 2]
    assert rows[2].name == "treatment_2" and rows[2].allocation_pct == 0
    rows = create_form.remove_row(rows, 1)
    assert [r.id for r in rows] == [0, 2]
    rows = create_form.add_row(rows)
    assert rows[-1].id == 3  # ids are never reused, so widget keys stay stable
    assert len({r.name for r in rows}) == len(rows)


@pytest.mark.parametrize(
    ("values", "color"),
    [([50, 50], "green"), ([30, 30, 30], "red"), ([40, 30, 30], "green"), ([60, 50], "red"),
     ([33.34, 33.33, 33.33], "green"), ([0.1 + 0.2, 99.7], "green"), ([None, 100], "green"), ([99.99], "red")],
)
def test_allocation_colour_is_green_exactly_at_100(values: list[float | None], color: str) -> None:
    total = create_form.allocation_total(values)
    assert create_form.allocation_color(total) == color
    assert f":{color}[" in create_form.allocation_message(total)


def test_allocation_message_says_what_is_missing() -> None:
    assert "add 10 %" in create_form.allocation_message(90)
    assert "remove 5 %" in create_form.allocation_message(105)
    assert "ready" in create_form.allocation_message(100)


def test_parse_config_messages() -> None:
    assert create_form.parse_config("") == ({}, None)
    assert create_form.parse_config('{"w": 0.5}') == ({"w": 0.5}, None)
    config, error = create_form.parse_config('{"w": 0.5,}')
    assert config == {} and error is not None and "line 1, column 11" in error
    _, error = create_form.parse_config("[1, 2]")
    assert error is not None and "JSON object" in error


def test_validate_rows_lists_every_problem() -> None:
    rows = [
        create_form.VariantRow(0, "a", allocation_pct=50),
        create_form.VariantRow(1, "A", allocation_pct=30, config_text="{bad"),
        create_form.VariantRow(2, "", allocation_pct=10),
    ]
    problems = create_form.validate_rows(rows)
    text = " ".join(problems)
    assert "used twice" in text
    assert "Variant 3 needs a name" in text
    assert "invalid JSON" in text
    assert "90 %" in text
    assert create_form.validate_rows(create_form.initial_rows()) == []
    zero = [create_form.VariantRow(0, "a", allocation_pct=100), create_form.VariantRow(1, "b", allocation_pct=0)]
    assert any("more than 0 %" in p for p in create_form.validate_rows(zero))  # a 0 % arm never gets a user
    assert "at least 2 variants" in create_form.validate_rows([create_form.VariantRow(0, "x", allocation_pct=100)])[0]


def test_targeting_rules_are_parsed_into_the_stored_shape() -> None:
    rows = [
        {"attribute": "country", "op": "in", "value": "DE, FR ,AT"},
        {"attribute": "age", "op": "gte", "value": "18"},
        {"attribute": "score", "op": "lt", "value": "0.5"},
        {"attribute": "platform", "op": "eq", "value": "ios"},
        {"attribute": None, "op": None, "value": None},  # empty editor row: ignored
    ]
    rules, problems = create_form.parse_targeting(rows, "u1\nu2, u1\n\n")
    assert problems == []
    assert rules == [
        {"attribute": "country", "op": "in", "value": ["DE", "FR", "AT"]},
        {"attribute": "age", "op": "gte", "value": 18},
        {"attribute": "score", "op": "lt", "value": 0.5},
        {"attribute": "platform", "op": "eq", "value": "ios"},
        {"op": "user_ids", "value": ["u1", "u2"]},
    ]
    _, problems = create_form.parse_targeting([{"attribute": "age", "op": "gt", "value": "old"},
                                         {"attribute": "", "op": "eq", "value": "x"},
                                         {"attribute": "c", "op": "", "value": "x"}])
    assert len(problems) == 3 and "not a number" in problems[0]
    assert create_form.describe_rule(rules[0]) == "country is one of DE, FR, AT"


def test_build_experiment_create_produces_a_valid_draft() -> None:
    form = create_form.CreateForm(
        name="  Ranking test ",
        rows=[create_form.VariantRow(0, "control", model_id=None, allocation_pct=40, config_text=""),
              create_form.VariantRow(1, "boost", allocation_pct=30, config_text='{"boost": 2}'),
              create_form.VariantRow(2, "boost_more", allocation_pct=30)],
        traffic_pct=50,
        targeting_rows=[{"attribute": "country", "op": "eq", "value": "DE"}],
        primary_metric="conversion",
        secondary_metrics=["revenue", "conversion"],
        direction="increase",
        min_effect_pct=2.5,
        confidence=0.99,
        min_duration_days=14,
        min_samples_per_variant=1000,
        created_by="alice",
    )
    assert create_form.form_problems(form) == []
    data = create_form.build_experiment_create(form)
    assert isinstance(data, ExperimentCreate)
    assert validate_experiment(data) == []
    assert data.name == "Ranking test"
    assert [v.is_control for v in data.variants] == [True, False, False]
    assert data.variants[1].config == {"boost": 2}
    assert data.traffic_allocation == 0.5
    assert data.targeting == [{"attribute": "country", "op": "eq", "value": "DE"}]
    assert data.secondary_metrics == ["revenue"]  # the primary metric is not repeated
    assert data.success_criteria == {"metric": "conversion", "direction": "increase", "threshold": 0.025, "confidence": 0.99}


def test_build_refuses_an_invalid_form() -> None:
    form = create_form.CreateForm(name="", rows=[create_form.VariantRow(0, "a", allocation_pct=90),
                                           create_form.VariantRow(1, "b", allocation_pct=0)], traffic_pct=0)
    problems = create_form.form_problems(form)
    assert "Give the experiment a name." in problems
    assert any("Traffic share" in p for p in problems)
    with pytest.raises(ValueError, match="more than 0 %"):
        create_form.build_experiment_create(form)


def test_allocation_display_agrees_with_the_rule() -> None:
    # 3 x 33.333 = 99.999 (hand sum): refused by the 1e-6 rule, so never displayed as "100 %"
    total = create_form.allocation_total([33.333, 33.333, 33.333])
    assert not create_form.allocation_ok(total)
    message = create_form.allocation_message(total)
    assert "99.999 %" in message and "add 0.001 %" in message and ":red[" in message
    problems = create_form.validate_rows([create_form.VariantRow(i, f"v{i}", allocation_pct=33.333) for i in range(3)])
    assert any("99.999 %" in p for p in problems)
    assert create_form.allocation_ok(create_form.allocation_total(create_form.even_split(3)))  # the even split is accepted
    assert create_form.format_allocation(100.0) == "100" and create_form.format_allocation(90) == "90"


def test_duplicate_name_is_a_live_problem() -> None:
    assert create_form.duplicate_name_problems(" Checkout ", ["Checkout", "Other"]) == [
        "An experiment named 'Checkout' already exists: choose another name."]
    assert create_form.duplicate_name_problems("checkout", ["Checkout"]) == []  # the store's names are case-sensitive
    assert create_form.duplicate_name_problems("", ["x"]) == []


def test_form_from_state_reads_the_widgets_with_the_page_defaults() -> None:
    rows = create_form.initial_rows()
    empty = create_form.form_from_state({}, rows=rows, targeting_rows=[], direction="increase", created_by="ann")
    assert empty == create_form.CreateForm(name="", rows=rows, primary_metric="", created_by="ann")
    state = {"c_name": "Boost", "c_traffic_pct": 50, "c_primary_metric": "ctr", "c_secondary": ["watch"],
             "c_guardrails": ["latency"], "crit_min_effect": 1.5, "crit_confidence": 0.99, "crit_min_days": 14,
             "crit_min_samples": 500, "targeting_user_ids": "u1"}
    form = create_form.form_from_state(state, rows=rows, targeting_rows=[{"attribute": "country"}],
                                       direction="decrease", created_by="ann")
    assert (form.name, form.traffic_pct, form.primary_metric, form.direction) == ("Boost", 50.0, "ctr", "decrease")
    assert (form.secondary_metrics, form.guardrail_metrics) == (["watch"], ["latency"])
    assert (form.min_effect_pct, form.confidence, form.min_duration_days, form.min_samples_per_variant) == (
        1.5, 0.99, 14, 500)
    assert form.user_ids_text == "u1" and form.targeting_rows == [{"attribute": "country"}]


def test_the_form_labels_every_targeting_operator_and_shares_the_rules_constants() -> None:
    # One definition each: the operators are the request path's, the tolerance the validation's.
    from abcore.assign.targeting import TARGETING_OPS
    from abcore.dashboard.views import create_form
    from abcore.experiments.schemas import ALLOCATION_TOLERANCE
    from abcore.metrics import DIRECTIONS

    assert set(create_form.TARGETING_OPS) == set(TARGETING_OPS) - {"user_ids"}
    assert create_form.ALLOCATION_TOLERANCE is ALLOCATION_TOLERANCE and create_form.DIRECTIONS is DIRECTIONS
