"""Dashboard pages through streamlit.testing.v1.AppTest, against a temporary SQLite store."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.access.users import hash_password
from abcore.dashboard import APP_PATH
from abcore.experiments.ml_models import create_model, list_models
from abcore.store.db import make_engine
from tests.dashboard.markdown_view import text
from tests.factories import make_experiment

APP = str(APP_PATH)
TIMEOUT = 30


def _session(url: str) -> Session:
    return Session(make_engine(url), expire_on_commit=False)



def _experiment(url: str, name: str, status: str = "draft") -> int:
    """A two-arm experiment described as "About <name>", brought to ``status`` by the actor "test"."""
    return int(make_experiment(url, name, status=status, actor="test", description=f"About {name}").id)


def _status(url: str, experiment_id: int) -> str:
    with _session(url) as s:
        return ex.get_experiment(session=s, ref=experiment_id).status


def _open(page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    if page is not None:
        at.switch_page(f"pages/{page}.py")
        at.run()
    assert not at.exception, at.exception
    return at


def _keys(at: AppTest) -> set[str]:
    return {b.key for b in at.button if b.key}


def _total_line(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("**Total allocation:**"))


# --------------------------------------------------------------------------- create


def test_create_form_allocation_total_turns_green_exactly_at_100(store: str) -> None:
    at = _open("create")
    assert ":green[" in _total_line(at)  # two rows start at 50/50
    at.number_input(key="v_alloc_1").set_value(40).run()
    assert ":red[" in _total_line(at) and "90 %" in _total_line(at)
    assert at.button(key="create_experiment").disabled
    at.button(key="add_variant").click().run()
    assert ":red[" in _total_line(at)  # a new row starts at 0 %
    at.number_input(key="v_alloc_2").set_value(10).run()
    assert ":green[" in _total_line(at) and "100 %" in _total_line(at)
    at.number_input(key="v_alloc_2").set_value(15).run()
    assert ":red[" in _total_line(at) and "remove 5 %" in _total_line(at)


def test_rows_can_be_removed_but_never_below_two(store: str) -> None:
    at = _open("create")
    assert at.button(key="v_remove_0").disabled and at.button(key="v_remove_1").disabled
    at.button(key="add_variant").click().run()
    at.text_input(key="v_name_2").set_value("third").run()
    assert not at.button(key="v_remove_1").disabled
    at.button(key="v_remove_1").click().run()  # remove the middle row: the others keep their values
    names = [t.value for t in at.text_input if t.key and t.key.startswith("v_name_")]
    assert names == ["control", "third"]
    assert at.button(key="v_remove_0").disabled


def test_create_form_validation_messages_and_bad_json(store: str) -> None:
    at = _open("create")
    assert "Give the experiment a name." in text(at.markdown[-1].value) or any(
        "Give the experiment a name." in text(m.value) for m in at.markdown
    )
    at.text_input(key="v_config_1").set_value('{"boost": }').run()
    errors = [text(e.value) for e in at.error]
    assert any("invalid JSON at line 1, column 11" in e for e in errors), errors
    at.text_input(key="v_name_1").set_value("control").run()
    problems = next(text(m.value) for m in at.markdown if m.value.startswith("**Before you can create it:**"))
    assert "used twice" in problems and "invalid JSON" in problems
    assert at.button(key="create_experiment").disabled


def test_create_saves_a_draft_with_models_targeting_and_criteria(store: str) -> None:
    with _session(store) as s:
        model = create_model(session=s, name="ranker-b", version="2")
    at = _open("create")
    assert "ranker-b (v2)" in at.selectbox(key="v_model_1").options
    at.text_input(key="c_name").set_value("Ranking test")
    at.text_area(key="c_hypothesis").set_value("Boosting raises conversion")
    at.selectbox(key="v_model_1").set_value(model.id)
    at.text_input(key="v_config_1").set_value('{"boost": 2}')
    at.slider(key="c_traffic_pct").set_value(50)
    at.text_area(key="targeting_user_ids").set_value("u1\nu2")
    at.radio(key="crit_confidence").set_value(0.99)
    at.run()
    assert not at.button(key="create_experiment").disabled
    at.button(key="create_experiment").click().run()
    assert not at.exception
    with _session(store) as s:
        exp = ex.get_experiment(session=s, ref="Ranking test")
        variants = ex.get_variants(session=s, experiment_id=exp.id)
    assert exp.status == "draft"
    assert exp.traffic_allocation == 0.5
    assert exp.targeting == [{"op": "user_ids", "value": ["u1", "u2"]}]
    assert exp.success_criteria["confidence"] == 0.99
    assert [(v.name, v.allocation_pct, v.model_id, v.config) for v in variants] == [
        ("control", 50.0, None, {}),
        ("treatment", 50.0, model.id, {"boost": 2}),
    ]


def test_duplicate_name_is_refused_with_a_readable_message(store: str) -> None:
    _experiment(store, "Taken")
    at = _open("create")
    at.text_input(key="c_name").set_value("Taken").run()
    # live, with the other problems, once; Create stays disabled (no error after the click)
    problems = next(text(m.value) for m in at.markdown if m.value.startswith("**Before you can create it:**"))
    assert problems.count("already exists") == 1
    assert at.button(key="create_experiment").disabled
    assert not at.exception


def test_after_create_the_draft_tab_is_open(store: str) -> None:
    _experiment(store, "already running", "running")
    at = _open("create")
    at.text_input(key="c_name").set_value("Fresh draft").run()
    at.button(key="create_experiment").click().run()
    assert not at.exception
    container = next(b for b in _blocks(at) if b.proto.WhichOneof("type") == "tab_container")
    labels = [t.label for t in at.tabs]
    assert labels[container.proto.tab_container.default_tab_index].endswith("Draft (1)")


def test_a_search_opens_the_tab_with_the_match(store: str) -> None:
    _experiment(store, "already running", "running")
    _experiment(store, "Needle draft")
    at = _open("experiments")
    at.text_input(key="x_search").set_value("needle").run()  # the first tab (Running) has no match now
    container = next(b for b in _blocks(at) if b.proto.WhichOneof("type") == "tab_container")
    labels = [t.label for t in at.tabs]
    assert labels[container.proto.tab_container.default_tab_index].endswith("Draft (1)")


def test_a_zero_percent_variant_is_refused_by_the_form(store: str) -> None:
    at = _open("create")
    at.text_input(key="c_name").set_value("Zero arm").run()
    at.number_input(key="v_alloc_0").set_value(100.0)
    at.number_input(key="v_alloc_1").set_value(0.0).run()
    problems = next(text(m.value) for m in at.markdown if m.value.startswith("**Before you can create it:**"))
    assert "more than 0 %" in problems  # the rule of abcore.experiments.validation, as every surface
    assert at.button(key="create_experiment").disabled


def test_plan_shows_sample_size_and_run_time(store: str) -> None:
    at = _open("create")
    at.number_input(key="crit_min_effect").set_value(20.0).run()  # 10 % -> 12 %
    shown = " ".join(m.value for m in at.markdown)
    # R: power.prop.test(p1=.1, p2=.12, power=.8) -> 3840.85 per arm; 1000/day split in two -> 8 days
    assert "Users per variant **3,841**" in shown
    assert "Estimated run time **8 days**" in shown
    at.button(key="plan_use").click().run()
    assert at.number_input(key="crit_min_samples").value == 3841
    # no "created with a default value but also had its value set via the Session State API" warning
    assert not at.exception and not [w.value for w in at.warning if "Session State" in str(w.value)]


# --------------------------------------------------------------------------- experiments


@pytest.mark.parametrize(
    ("status", "offered"),
    [
        ("draft", {"start", "delete", "cancel"}),
        ("running", {"pause", "stop", "cancel"}),
        ("paused", {"resume", "stop", "cancel"}),
        ("completed", {"ship"}),
        ("cancelled", set()),
    ],
)
def test_lifecycle_buttons_follow_the_status(store: str, status: str, offered: set[str]) -> None:
    exp_id = _experiment(store, f"exp-{status}", status)
    at = _open()
    actions = {k.split("_")[1] for k in _keys(at) if k.startswith("act_") and k.endswith(f"_{exp_id}")}
    assert actions == offered


def test_tabs_show_counts_and_empty_states(store: str) -> None:
    _experiment(store, "one", "running")
    _experiment(store, "two", "running")
    _experiment(store, "three", "draft")
    at = _open()
    labels = [t.label for t in at.tabs]
    assert labels[0].endswith("Running (2)") and labels[2].endswith("Draft (1)") and labels[3].endswith("Completed (0)")
    assert any("No completed experiments yet" in i.value for i in at.info)


def test_empty_store_tells_the_user_what_to_do(store: str) -> None:
    at = _open()
    assert any("There are no experiments yet" in i.value for i in at.info)


def test_start_needs_confirmation_and_writes_the_audit_log(store: str) -> None:
    exp_id = _experiment(store, "to-start")
    at = _open()
    at.button(key=f"act_start_{exp_id}").click().run()
    assert _status(store, exp_id) == "draft"  # nothing happens before the confirmation
    assert any("Start this experiment?" in w.value for w in at.warning)
    at.button(key=f"dismiss_{exp_id}").click().run()
    assert f"confirm_{exp_id}" not in _keys(at)
    at.button(key=f"act_start_{exp_id}").click().run()
    at.button(key=f"confirm_{exp_id}").click().run()
    assert not at.exception
    assert _status(store, exp_id) == "running"
    assert {f"act_pause_{exp_id}", f"act_stop_{exp_id}"} <= _keys(at)
    with _session(store) as s:
        entries = ex.audit_log(session=s, experiment_id=exp_id)
    assert entries[0].action == "start" and entries[0].actor == "dashboard"


def test_pause_resume_stop_and_ship(store: str) -> None:
    exp_id = _experiment(store, "full-cycle", "running")
    at = _open()
    for action, expected in (("pause", "paused"), ("resume", "running"), ("stop", "completed")):
        at.button(key=f"act_{action}_{exp_id}").click().run()
        at.button(key=f"confirm_{exp_id}").click().run()
        assert _status(store, exp_id) == expected
    at.button(key=f"act_ship_{exp_id}").click().run()
    with _session(store) as s:
        treatment = ex.get_variants(session=s, experiment_id=exp_id)[1]
    at.selectbox(key=f"ship_variant_{exp_id}").set_value(treatment.id)
    at.slider(key=f"ship_rollout_{exp_id}").set_value(25)
    at.button(key=f"confirm_{exp_id}").click().run()
    assert not at.exception
    with _session(store) as s:
        exp = ex.get_experiment(session=s, ref=exp_id)
    assert (exp.winner_variant_id, exp.rollout_pct) == (treatment.id, 25.0)
    assert any("Shipped **treatment** to 25 %" in m.value for m in at.markdown)


def test_stale_confirmation_is_withdrawn_when_the_status_changed_elsewhere(store: str) -> None:
    exp_id = _experiment(store, "raced", "running")
    at = _open()
    at.button(key=f"act_pause_{exp_id}").click().run()
    assert f"confirm_{exp_id}" in _keys(at)
    with _session(store) as s:  # someone else pauses it first
        ex.pause_experiment(session=s, ref=exp_id, actor="other")
    at.run()
    assert not at.exception
    assert f"confirm_{exp_id}" not in _keys(at)  # pausing a paused experiment is not offered
    assert f"act_resume_{exp_id}" in _keys(at)


def test_unexpected_errors_are_readable_with_details(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(ex, "list_experiments", broken)
    at = _open()
    assert any("Something went wrong: database on fire" in e.value for e in at.error)
    assert at.expander and at.expander[0].label == "Details for the developers"


def test_delete_a_draft(store: str) -> None:
    exp_id = _experiment(store, "doomed")
    at = _open()
    at.button(key=f"act_delete_{exp_id}").click().run()
    at.button(key=f"confirm_{exp_id}").click().run()
    with _session(store) as s:
        assert ex.list_experiments(session=s) == []


# --------------------------------------------------------------------------- auth


def test_viewer_sees_everything_but_changes_nothing(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    users = {"vera": {"password_hash": hash_password("secret-v"), "role": "viewer"},
             "ed": {"password_hash": hash_password("secret-e"), "role": "editor"}}
    monkeypatch.setenv("ABCORE_USERS", json.dumps(users))
    exp_id = _experiment(store, "watched", "running")
    at = _open()
    assert at.text_input(key="login_username") is not None
    assert not [k for k in _keys(at) if k.startswith("act_")]  # nothing shown before signing in
    at.text_input(key="login_username").set_value("vera")
    at.text_input(key="login_password").set_value("wrong")
    _submit(at)
    assert any("wrong password" in e.value for e in at.error)
    at.text_input(key="login_username").set_value("vera")
    at.text_input(key="login_password").set_value("secret-v")
    _submit(at)
    assert not [k for k in _keys(at) if k.startswith("act_")]
    assert any("viewer" in i.value for i in at.info)
    at.switch_page("pages/create.py").run()
    assert "create_experiment" not in _keys(at)  # a read-only form (tests/dashboard/test_metrics_page.py)
    at.button(key="sign_out").click().run()
    at.text_input(key="login_username").set_value("ed")
    at.text_input(key="login_password").set_value("secret-e")
    _submit(at)
    at.switch_page("pages/experiments.py").run()
    assert f"act_pause_{exp_id}" in _keys(at)


def _submit(at: AppTest) -> None:
    next(b for b in at.button if b.proto.is_form_submitter).click().run()


def test_open_mode_says_so(store: str) -> None:
    at = _open()
    assert any("Open mode" in c.value for c in at.sidebar.caption)


# --------------------------------------------------------------------------- models and sample size


def test_models_page_registers_edits_and_retires(store: str) -> None:
    at = _open("models")
    assert any("No models yet" in i.value for i in at.info)
    at.text_input(key="m_new_name").set_value("ranker-a")
    at.text_area(key="m_new_config").set_value('{"alpha": 0.3}')
    _submit(at)
    assert not at.exception
    with _session(store) as s:
        (model,) = list_models(session=s)
    assert model.config == {"alpha": 0.3}
    at.checkbox(key=f"m_retire_sure_{model.id}").check().run()
    at.button(key=f"m_retire_{model.id}").click().run()
    with _session(store) as s:
        assert list_models(session=s) == []
    at.text_input(key="m_new_name").set_value("ranker-b")
    at.text_area(key="m_new_config").set_value("[1,")
    _submit(at)
    assert any("invalid JSON" in e.value for e in at.error)
    # the JSON error keeps what was typed
    assert at.text_input(key="m_new_name").value == "ranker-b"
    assert at.text_area(key="m_new_config").value == "[1,"


def test_sample_size_page(store: str) -> None:
    at = _open("sample_size")
    at.number_input(key="ss_mde_rel").set_value(20.0).run()
    shown = " ".join(m.value for m in at.markdown)
    # R: power.prop.test(p1=.1, p2=.12, power=.8) -> 3841 per arm; 5000/day, half each -> 2 days
    assert "Users per variant **3,841**" in shown and "Users in total **7,682**" in shown
    assert "Days needed **2**" in shown
    assert "abcore-chart" in shown and "3,841 users reach the target" in shown  # the SVG power curve
    assert not at.get("plotly_chart") and not at.metric  # no Plotly bundle, no metric chunk to load


def _blocks(at: AppTest) -> list:
    """Every block node of the rendered tree (depth first)."""
    out, stack = [], [at._tree]
    while stack:
        node = stack.pop()
        children = getattr(node, "children", {})
        proto = getattr(node, "proto", None)
        if children and proto is not None and "type" in getattr(getattr(proto, "DESCRIPTOR", None), "oneofs_by_name", {}):
            out.append(node)  # a Block proto (an Element proto has no "type" oneof)
        stack.extend(children.values())
    return out
