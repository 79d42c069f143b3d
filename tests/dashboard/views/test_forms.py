"""abcore.dashboard.views.forms: the pure logic behind the dashboard pages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from abcore.dashboard.views import forms
from abcore.experiments.schemas import ExperimentCreate
from abcore.experiments.validation import validate_experiment
from abcore.stats.power import power_proportion, sample_size_proportion


def test_even_split_sums_to_exactly_100() -> None:
    for n in range(1, 12):
        split = forms.even_split(n)
        assert len(split) == n
        assert forms.allocation_ok(forms.allocation_total(split)), (n, split)
    assert forms.even_split(3) == [33.34, 33.33, 33.33]
    assert forms.even_split(2) == [50.0, 50.0]


def test_rows_add_and_remove_keep_ids_and_never_drop_below_two() -> None:
    rows = forms.initial_rows()
    assert [r.name for r in rows] == ["control", "treatment"]
    assert forms.remove_row(rows, rows[0].id) == rows  # two rows: nothing removed
    rows = forms.add_row(rows)
    assert [r.id for r in rows] == [0, 1, 2]
    assert rows[2].name == "treatment_2" and rows[2].allocation_pct == 0
    rows = forms.remove_row(rows, 1)
    assert [r.id for r in rows] == [0, 2]
    rows = forms.add_row(rows)
    assert rows[-1].id == 3  # ids are never reused, so widget keys stay stable
    assert len({r.name for r in rows}) == len(rows)


@pytest.mark.parametrize(
    ("values", "color"),
    [([50, 50], "green"), ([30, 30, 30], "red"), ([40, 30, 30], "green"), ([60, 50], "red"),
     ([33.34, 33.33, 33.33], "green"), ([0.1 + 0.2, 99.7], "green"), ([None, 100], "green"), ([99.99], "red")],
)
def test_allocation_colour_is_green_exactly_at_100(values: list[float | None], color: str) -> None:
    total = forms.allocation_total(values)
    assert forms.allocation_color(total) == color
    assert f":{color}[" in forms.allocation_message(total)


def test_allocation_message_says_what_is_missing() -> None:
    assert "add 10 %" in forms.allocation_message(90)
    assert "remove 5 %" in forms.allocation_message(105)
    assert "ready" in forms.allocation_message(100)


def test_parse_config_messages() -> None:
    assert forms.parse_config("") == ({}, None)
    assert forms.parse_config('{"w": 0.5}') == ({"w": 0.5}, None)
    config, error = forms.parse_config('{"w": 0.5,}')
    assert config == {} and error is not None and "line 1, column 11" in error
    _, error = forms.parse_config("[1, 2]")
    assert error is not None and "JSON object" in error


def test_validate_rows_lists_every_problem() -> None:
    rows = [
        forms.VariantRow(0, "a", allocation_pct=50),
        forms.VariantRow(1, "A", allocation_pct=30, config_text="{bad"),
        forms.VariantRow(2, "", allocation_pct=10),
    ]
    problems = forms.validate_rows(rows)
    text = " ".join(problems)
    assert "used twice" in text
    assert "Variant 3 needs a name" in text
    assert "invalid JSON" in text
    assert "90 %" in text
    assert forms.validate_rows(forms.initial_rows()) == []
    assert "at least 2 variants" in forms.validate_rows([forms.VariantRow(0, "x", allocation_pct=100)])[0]


def test_targeting_rules_are_parsed_into_the_stored_shape() -> None:
    rows = [
        {"attribute": "country", "op": "in", "value": "DE, FR ,AT"},
        {"attribute": "age", "op": "gte", "value": "18"},
        {"attribute": "score", "op": "lt", "value": "0.5"},
        {"attribute": "platform", "op": "eq", "value": "ios"},
        {"attribute": None, "op": None, "value": None},  # empty editor row: ignored
    ]
    rules, problems = forms.parse_targeting(rows, "u1\nu2, u1\n\n")
    assert problems == []
    assert rules == [
        {"attribute": "country", "op": "in", "value": ["DE", "FR", "AT"]},
        {"attribute": "age", "op": "gte", "value": 18},
        {"attribute": "score", "op": "lt", "value": 0.5},
        {"attribute": "platform", "op": "eq", "value": "ios"},
        {"op": "user_ids", "value": ["u1", "u2"]},
    ]
    _, problems = forms.parse_targeting([{"attribute": "age", "op": "gt", "value": "old"},
                                         {"attribute": "", "op": "eq", "value": "x"},
                                         {"attribute": "c", "op": "", "value": "x"}])
    assert len(problems) == 3 and "not a number" in problems[0]
    assert forms.describe_rule(rules[0]) == "country is one of DE, FR, AT"


def test_build_experiment_create_produces_a_valid_draft() -> None:
    form = forms.CreateForm(
        name="  Ranking test ",
        rows=[forms.VariantRow(0, "control", model_id=None, allocation_pct=40, config_text=""),
              forms.VariantRow(1, "boost", allocation_pct=30, config_text='{"boost": 2}'),
              forms.VariantRow(2, "boost_more", allocation_pct=30)],
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
    assert forms.form_problems(form) == []
    data = forms.build_experiment_create(form)
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
    form = forms.CreateForm(name="", rows=[forms.VariantRow(0, "a", allocation_pct=90),
                                           forms.VariantRow(1, "b", allocation_pct=0)], traffic_pct=0)
    problems = forms.form_problems(form)
    assert "Give the experiment a name." in problems
    assert any("Traffic share" in p for p in problems)
    with pytest.raises(ValueError, match="must total exactly 100"):
        forms.build_experiment_create(form)


def test_sample_plan_matches_abcore_stats_and_counts_days() -> None:
    # 10 % baseline, +20 % relative = 12 %: R power.prop.test(p1=.1, p2=.12, power=.8) -> 3840.847 -> 3841
    plan = forms.sample_plan(baseline=0.10, mde=0.20, relative=True, n_variants=2, daily_traffic=1000)
    assert plan.per_variant == 3841 == sample_size_proportion(0.10, 0.02)
    assert plan.total == 7682
    assert plan.days == 8  # 3841 / (1000 * 1/2) = 7.68 -> 8 days
    # Half the traffic and a 20 % smallest arm: 3841 / (1000 * 0.5 * 0.2) = 38.4 -> 39 days
    assert forms.sample_plan(baseline=0.10, mde=0.02, relative=False, daily_traffic=1000, traffic_share=0.5,
                             smallest_allocation=0.2).days == 39
    assert forms.sample_plan(baseline=0.10, mde=0.0, daily_traffic=10).error is not None
    no_traffic = forms.sample_plan(baseline=0.10, mde=0.2)
    assert no_traffic.per_variant == 3841 and no_traffic.days is None
    # Means: (z_.975 + z_.8)^2 * 2 * std^2 / mde^2 = 7.849 * 2 * 25 / 1 = 392.4 -> 393 (hand derivation)
    assert forms.sample_plan(baseline=10, mde=1, relative=False, metric_kind="mean", std=5).per_variant == 393
    assert forms.sample_plan(baseline=10, mde=0.1, relative=True, metric_kind="mean", std=5).per_variant == 393


def test_power_curve_is_increasing_and_hits_target_at_the_planned_size() -> None:
    curve = forms.power_curve(baseline=0.10, mde=0.02, relative=False, n_max=7682, points=2)
    assert curve.n == (3841, 7682)
    assert curve.power[0] == pytest.approx(power_proportion(0.10, 0.02, 3841), abs=1e-12)
    assert curve.power[0] == pytest.approx(0.80, abs=1e-3)
    full = forms.power_curve(baseline=0.10, mde=0.02, relative=False, n_max=8000)
    assert all(a <= b for a, b in zip(full.power, full.power[1:], strict=False))


def test_formatting() -> None:
    assert forms.format_int(1234567) == "1,234,567"
    assert forms.format_int(None) == "–"
    assert forms.format_number(1234.5) == "1,234.5"
    assert forms.format_number(100.0) == "100"
    assert forms.format_pct(0.1234) == "12.3%"
    assert forms.format_pct(0.021, signed=True) == "+2.1%"
    assert forms.format_pct(-0.021, signed=True) == "-2.1%"
    assert forms.format_pvalue(0.0004) == "< 0.001"
    assert forms.format_pvalue(0.04567) == "0.046"
    assert forms.format_interval(-0.012, 0.034) == "[-1.2%, +3.4%]"


def test_status_colours_are_consistent_and_cover_every_status() -> None:
    assert set(forms.STATUS_COLORS) == set(forms.STATUS_ORDER)
    assert len(set(forms.STATUS_COLORS.values())) == len(forms.STATUS_COLORS)
    assert forms.status_badge("running") == ":green-badge[▶️ Running]"
    assert forms.status_color("unknown") == "gray"


def test_days_running() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    assert forms.days_running(None) is None
    assert forms.days_running(start, start + timedelta(days=3, hours=12)) == 3.5
    assert forms.days_running(start, now=start + timedelta(hours=6)) == 0.25
    assert forms.format_days(3.5) == "3 days"
    assert forms.format_days(1.2) == "1 day"
    assert forms.format_days(0.25) == "< 1 day"
    assert forms.format_days(None) == "not started"


def test_allocation_display_agrees_with_the_rule() -> None:
    # 3 x 33.333 = 99.999 (hand sum): refused by the 1e-6 rule, so never displayed as "100 %"
    total = forms.allocation_total([33.333, 33.333, 33.333])
    assert not forms.allocation_ok(total)
    message = forms.allocation_message(total)
    assert "99.999 %" in message and "add 0.001 %" in message and ":red[" in message
    problems = forms.validate_rows([forms.VariantRow(i, f"v{i}", allocation_pct=33.333) for i in range(3)])
    assert any("99.999 %" in p for p in problems)
    assert forms.allocation_ok(forms.allocation_total(forms.even_split(3)))  # the even split is accepted
    assert forms.format_allocation(100.0) == "100" and forms.format_allocation(90) == "90"


def test_duplicate_name_is_a_live_problem() -> None:
    assert forms.duplicate_name_problems(" Checkout ", ["Checkout", "Other"]) == [
        "An experiment named 'Checkout' already exists: choose another name."]
    assert forms.duplicate_name_problems("checkout", ["Checkout"]) == []  # the store's names are case-sensitive
    assert forms.duplicate_name_problems("", ["x"]) == []
