"""The dashboard's layer views (pure): the bar of ranges, the claim check, the planning at a layer share."""

from __future__ import annotations

from abcore.dashboard.views import create_form, layer_view, sample_size
from abcore.experiments.layers import LayerHolder


def _holder(name: str, *ranges: tuple[int, int]) -> LayerHolder:
    return LayerHolder(1, name, "running", 0.0, tuple(ranges))


def test_segments_show_holders_the_claim_as_the_start_would_reserve_it_and_the_free_rest() -> None:
    holders = [_holder("a", (0, 3000)), _holder("b<x>", (5000, 6000))]
    parts = layer_view.segments(holders, claim_pct=25)
    assert [(p.start, p.end, p.kind) for p in parts] == [
        (0, 3000, "held"), (3000, 5000, "claim"), (5000, 6000, "held"), (6000, 6500, "claim"), (6500, 10_000, "free")
    ]
    html = layer_view.bar_html(parts)
    assert "b&lt;x&gt;" in html and "<x>" not in html  # names are escaped
    assert html.count("<div title=") == 5


def test_claim_problem_and_experiment_line() -> None:
    assert layer_view.claim_problem(20.0, 25.0) is not None
    assert layer_view.claim_problem(20.0, 20.0) is None
    assert layer_view.claim_problem(20.0, 0.0) is not None
    assert layer_view.experiment_line("ab", None, None, None) is None
    assert "holds 40 %" in layer_view.experiment_line("ab", "home", 40.0, None)  # type: ignore[operator]
    assert "5 % of users out of home" in layer_view.experiment_line("holdout", None, None, ["home"], 5.0)  # type: ignore[operator]


def test_the_plan_runs_at_the_share_of_the_layer() -> None:
    # hand derivation: 3841 users per variant (10 % baseline, +20 % relative, 95 %: see test_sample_size), the 20 %
    # arm gets 1000 x 50 % traffic x 25 % of the layer x 20 % = 25 users a day: ceil(3841 / 25) = 154 days
    plan = sample_size.design_plan(baseline_pct=10, min_effect_pct=20, confidence=0.95, allocations=[80, 20],
                                   daily_traffic=1000, traffic_pct=50, layer_share_pct=25)
    assert plan.per_variant == 3841 and plan.days == 154


def test_the_create_form_carries_the_layer() -> None:
    form = create_form.CreateForm(name="exp", layer="home", layer_share_pct=30.0)
    data = create_form.build_experiment_create(form)
    assert (data.layer, data.layer_share) == ("home", 30.0)
    assert create_form.build_experiment_create(create_form.CreateForm(name="exp")).layer is None
    assert create_form.form_problems(create_form.CreateForm(name="exp", layer="home", layer_share_pct=0.0))


def test_the_list_filters_by_layer() -> None:
    from types import SimpleNamespace

    from abcore.dashboard.views import experiment_list as xl

    rows = [SimpleNamespace(id=i, name=f"e{i}", description="", status="running", created_by="", primary_metric="m",
                            secondary_metrics=[], guardrail_metrics=[], min_samples_per_variant=0, min_duration_days=0,
                            created_at=None, started_at=None, stopped_at=None, updated_at=None, layer_id=layer)
            for i, layer in ((1, 7), (2, None))]
    items = xl.with_layers(xl.build_items(rows, {}, {}), rows, {7: "home"})
    assert [i.layer for i in items] == ["home", ""]
    assert [i.id for i in xl.filter_items(items, layers=["home"])] == [1]
    assert [i.id for i in xl.filter_items(items)] == [1, 2]


def test_the_interaction_table_escapes_names() -> None:
    from abcore.analysis.interactions import InteractionFinding

    finding = InteractionFinding("a", "b|*x*", "effect", "clicks", ("t", "u"), 0.5, 0.001, 0.002, True, 100)
    table = layer_view.interaction_table([finding])
    assert table.count("\n") == 2 and "b\\|\\*x\\*" in table and "interaction" in table
    assert layer_view.interaction_table([]) == ""
