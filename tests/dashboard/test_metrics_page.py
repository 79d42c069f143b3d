"""The Metrics page and the create form's metric pickers through AppTest, on a temporary SQLite store.

Expected problems come from :func:`abcore.metrics.validate_metric` itself (the page must show every
one of them, live); stored values are read back with :func:`abcore.metrics.get_metric`.
"""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.access.users import hash_password
from abcore.assign import Assigner
from abcore.dashboard import APP_PATH
from abcore.dashboard.views.metric_forms import metric_values
from abcore.metrics import MetricCreate, define_metric, get_metric, validate_metric
from abcore.store.db import make_engine
from tests.dashboard.markdown_view import text

APP = str(APP_PATH)
TIMEOUT = 30


def _session(url: str) -> Session:
    return Session(make_engine(url), expire_on_commit=False)


def _define(url: str, **fields: object) -> None:
    with _session(url) as s:
        define_metric(session=s, data=MetricCreate(**fields))


def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def _problems(at: AppTest, form: str = "define") -> list[str]:
    """The bullet list of the define (or edit) form's problems ([] when its success message shows instead)."""
    heading = "**Before you can define it:**" if form == "define" else "**Before you can save the changes:**"
    block = next((m.value for m in at.markdown if m.value.startswith(heading)), None)
    if block is None:
        assert any("checks out" in s.value for s in at.success), "neither problems nor success shown"
        return []
    return [text(line[2:]) for line in block.splitlines()[1:]]


def _table(at: AppTest) -> dict[str, dict[str, str]]:
    frame = at.table[0].value
    return {str(name): {str(k): str(v) for k, v in row.items()} for name, row in frame.iterrows()}


def _sign_in(at: AppTest, user: str, password: str) -> None:
    at.text_input(key="login_username").set_value(user)
    at.text_input(key="login_password").set_value(password)
    next(b for b in at.button if b.proto.is_form_submitter).click().run()


# --------------------------------------------------------------------------- Metrics page


def test_define_a_metric_and_read_it_in_words(store: str) -> None:
    at = _open("metrics")
    assert any("No metrics are defined yet" in i.value for i in at.info)
    kinds = next(m.value for m in at.markdown if m.value.startswith("**Kinds**"))
    assert kinds.count("\n- ") == 6  # one sentence per kind
    assert "\n- Mean per user: " in kinds and "\n- Mean per event: " in kinds
    at.text_input(key="md_name").set_value("latency_ms")
    at.text_input(key="md_description").set_value("Serving time per user")
    at.selectbox(key="md_kind").set_value("mean")
    at.radio(key="md_direction").set_value("decrease")
    at.run()
    assert "md_cap" in {s.key for s in at.selectbox}  # a mean can be capped: the cap fields appear
    at.selectbox(key="md_cap").set_value("percentile").run()
    at.number_input(key="md_cap_upper").set_value(0.99)
    at.number_input(key="md_window_hours").set_value(24.0)
    at.run()
    assert _problems(at) == []
    at.button(key="md_submit").click().run()
    assert not at.exception, at.exception
    with _session(store) as s:
        row = get_metric(session=s, name="latency_ms")
    assert (row.kind, row.direction, row.cap, row.cap_upper, row.cap_lower, row.window_hours, row.delay_hours) == (
        "mean", "decrease", "percentile", 0.99, None, 24.0, 0.0)
    assert row.description == "Serving time per user"
    shown = _table(at)["latency_ms"]
    assert shown["Kind"] == "Mean per user"
    assert shown["Better when"] == "↓ lower is better"
    assert shown["Window"] == "first 24 h after exposure"
    assert shown["Capping"] == "at the 99th percentile of all users"
    assert shown["Archived"] == "no"
    assert at.text_input(key="md_name").value == ""  # the form is empty again for the next one


def test_the_form_defines_a_mean_per_event(store: str) -> None:
    at = _open("metrics")
    at.text_input(key="md_name").set_value("request_ms")
    at.selectbox(key="md_kind").set_value("event_mean")
    at.radio(key="md_direction").set_value("decrease")
    at.run()
    assert "md_cap" not in {s.key for s in at.selectbox}  # a per-event mean is not capped per user
    assert _problems(at) == []
    at.button(key="md_submit").click().run()
    assert not at.exception, at.exception
    with _session(store) as s:
        assert get_metric(session=s, name="request_ms").kind == "event_mean"
    assert _table(at)["request_ms"]["Kind"] == "Mean per event"


def test_every_validation_problem_is_shown_live_and_blocks_the_button(store: str) -> None:
    _define(store, name="conversion")
    at = _open("metrics")
    # a ratio without numerator and denominator
    at.text_input(key="md_name").set_value("revenue_per_session")
    at.selectbox(key="md_kind").set_value("ratio").run()
    expected = validate_metric(metric_values(name="revenue_per_session", kind="ratio", direction="increase"))
    assert expected == ["a ratio metric needs a numerator and denominator (event metric names)."]
    assert _problems(at) == expected
    assert at.button(key="md_submit").disabled
    # a quantile outside (0, 1), a negative window and a negative minimum effect: all three at once
    at.selectbox(key="md_kind").set_value("quantile").run()
    at.number_input(key="md_quantile").set_value(1.5)
    at.number_input(key="md_window_hours").set_value(-3.0)
    at.number_input(key="md_min_effect_pct").set_value(-1.0)
    at.run()
    expected = validate_metric(metric_values(name="revenue_per_session", kind="quantile", direction="increase",
                                             quantile=1.5, window_hours=-3.0, min_effect_pct=-1.0))
    assert len(expected) == 3 and _problems(at) == expected
    assert at.button(key="md_submit").disabled
    # an absolute cap with the lower bound above the upper one, and a name already defined
    at.text_input(key="md_name").set_value("conversion")
    at.selectbox(key="md_kind").set_value("count").run()
    at.selectbox(key="md_cap").set_value("absolute").run()
    at.number_input(key="md_cap_upper").set_value(5.0)
    at.number_input(key="md_cap_lower").set_value(10.0)
    at.number_input(key="md_window_hours").set_value(None)
    at.number_input(key="md_min_effect_pct").set_value(None)
    at.run()
    problems = _problems(at)
    assert problems == ["cap_lower (10.0) must be below cap_upper (5.0).",
                        "a metric named 'conversion' already exists (edit it below instead)."]
    assert at.button(key="md_submit").disabled
    # fixed: the button works and the definition is stored
    at.text_input(key="md_name").set_value("items_viewed")
    at.number_input(key="md_cap_lower").set_value(0.0)
    at.run()
    assert _problems(at) == [] and not at.button(key="md_submit").disabled
    at.button(key="md_submit").click().run()
    with _session(store) as s:
        row = get_metric(session=s, name="items_viewed")
    assert (row.kind, row.cap, row.cap_lower, row.cap_upper) == ("count", "absolute", 0.0, 5.0)
    assert _table(at)["items_viewed"]["Capping"] == "per-user values clipped to [0, 5]"


def test_a_ratio_picks_numerator_and_denominator_from_the_registry(store: str) -> None:
    _define(store, name="revenue", kind="mean")
    _define(store, name="sessions", kind="count")
    at = _open("metrics")
    at.text_input(key="md_name").set_value("revenue_per_session")
    at.selectbox(key="md_kind").set_value("ratio").run()
    assert at.selectbox(key="md_numerator").options == ["revenue", "sessions"]
    at.selectbox(key="md_numerator").set_value("revenue")
    at.selectbox(key="md_denominator").set_value("sessions")
    at.run()
    assert _problems(at) == []
    at.button(key="md_submit").click().run()
    with _session(store) as s:
        row = get_metric(session=s, name="revenue_per_session")
    assert (row.kind, row.numerator, row.denominator, row.cap) == ("ratio", "revenue", "sessions", None)
    assert _table(at)["revenue_per_session"]["Kind"] == "Ratio: revenue / sessions"


def test_edit_then_archive_and_restore(store: str) -> None:
    _define(store, name="latency_ms", kind="mean", direction="increase")  # defined the wrong way round
    at = _open("metrics")
    at.selectbox(key="mt_pick").set_value("latency_ms").run()
    assert at.text_input(key="me_name").disabled and at.text_input(key="me_name").value == "latency_ms"
    assert at.radio(key="me_direction").value == "increase"  # filled from the store
    at.radio(key="me_direction").set_value("decrease")
    at.number_input(key="me_delay_hours").set_value(1.0)
    at.number_input(key="me_window_hours").set_value(48.0)
    at.run()
    assert _problems(at, "edit") == [] and not at.button(key="me_save").disabled
    at.button(key="me_save").click().run()
    assert not at.exception, at.exception
    with _session(store) as s:
        row = get_metric(session=s, name="latency_ms")
    assert (row.direction, row.delay_hours, row.window_hours, row.archived) == ("decrease", 1.0, 48.0, False)
    shown = _table(at)["latency_ms"]
    assert shown["Better when"] == "↓ lower is better" and shown["Window"] == "48 h, starting 1 h after exposure"
    assert at.radio(key="me_direction").value == "decrease"  # reloaded from the saved definition

    at.button(key="me_archive").click().run()
    with _session(store) as s:
        assert get_metric(session=s, name="latency_ms").archived
    assert _table(at)["latency_ms"]["Archived"] == "yes"
    assert at.button(key="me_archive").label == "Restore"
    create = _open("create")  # archived: not offered by the create form any more
    assert not [o for o in create.multiselect(key="c_guardrails").options if o.startswith("latency_ms")]
    at.button(key="me_archive").click().run()
    with _session(store) as s:
        assert not get_metric(session=s, name="latency_ms").archived
    assert _table(at)["latency_ms"]["Archived"] == "no"


def test_an_invalid_edit_is_refused_live(store: str) -> None:
    _define(store, name="watch_time", kind="mean", cap="absolute", cap_upper=600.0)
    at = _open("metrics")
    at.selectbox(key="mt_pick").set_value("watch_time").run()
    assert at.number_input(key="me_cap_upper").value == 600.0
    at.selectbox(key="me_cap").set_value("percentile").run()  # 600 is no quantile
    assert _problems(at, "edit") == ["cap_upper of a percentile cap must be in (0, 1), a quantile such as 0.99; got 600.0."]
    assert at.button(key="me_save").disabled
    with _session(store) as s:
        assert get_metric(session=s, name="watch_time").cap == "absolute"


def test_viewers_read_the_metrics_but_cannot_change_them(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    users = {"vera": {"password_hash": hash_password("secret-v"), "role": "viewer"}}
    monkeypatch.setenv("ABCORE_USERS", json.dumps(users))
    _define(store, name="latency_ms", kind="mean", direction="decrease")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    _sign_in(at, "vera", "secret-v")
    at.switch_page("pages/metrics.py").run()
    assert not at.exception, at.exception
    assert _table(at)["latency_ms"]["Better when"] == "↓ lower is better"
    assert not at.text_input and not at.selectbox  # no form at all
    assert not {b.key for b in at.button} & {"md_submit", "me_save", "me_archive"}
    assert any("editor role" in c.value for c in at.caption)


# --------------------------------------------------------------------------- the create form's pickers


def test_create_form_picks_metrics_from_the_registry_with_their_direction(store: str) -> None:
    _define(store, name="latency_ms", kind="mean", direction="decrease")
    _define(store, name="watch_time", kind="mean", direction="increase")
    _define(store, name="old_metric", kind="count")
    with _session(store) as s:
        from abcore.metrics import archive_metric

        archive_metric(session=s, name="old_metric")
    at = _open("create")
    expected = ["latency_ms — lower is better", "watch_time — higher is better",
                "conversion"]  # not defined (warned below); the archived old_metric is not offered
    assert at.selectbox(key="c_primary_metric").options == expected
    assert at.multiselect(key="c_secondary").options == expected
    assert at.multiselect(key="c_guardrails").options == expected
    assert at.selectbox(key="c_primary_metric").value == "conversion"  # the default, as before
    assert any("No metric definition for conversion" in text(w.value) for w in at.warning)
    links = at.get("page_link")
    # the sidebar menu (ui.sidebar_menu) draws the router's page links too; the form adds exactly one
    assert [link.proto.label for link in links].count("Define a new metric on the Metrics page") == 1
    assert next(link for link in links if link.proto.label.startswith("Define")).proto.page.endswith("metrics")
    assert "crit_direction" in {r.key for r in at.radio}  # undefined primary: the criterion's direction is asked

    at.text_input(key="c_name").set_value("Latency guard")
    at.selectbox(key="c_primary_metric").set_value("watch_time")
    at.multiselect(key="c_guardrails").select("latency_ms")
    at.run()
    assert not [w for w in at.warning if "No metric definition" in w.value]
    assert "crit_direction" not in {r.key for r in at.radio}  # the definition decides
    assert any(m.value.startswith("**Direction**  \n↑ higher is better (from the definition of `watch_time`)")
               for m in at.markdown)
    at.button(key="create_experiment").click().run()
    assert not at.exception, at.exception
    with _session(store) as s:
        exp = ex.get_experiment(session=s, ref="Latency guard")
    assert (exp.primary_metric, exp.secondary_metrics, exp.guardrail_metrics) == ("watch_time", [], ["latency_ms"])
    assert exp.success_criteria["direction"] == "increase"


def test_a_typed_metric_name_still_works_with_a_defaults_warning(store: str) -> None:
    _define(store, name="latency_ms", kind="mean", direction="decrease")
    at = _open("create")
    at.text_input(key="c_name").set_value("Typed metrics")
    at.multiselect(key="c_guardrails").select("errors_5xx")  # typed: not in the registry
    at.run()
    warning = next(text(w.value) for w in at.warning if "No metric definition" in w.value)
    assert "conversion, errors_5xx: analysed with defaults" in warning
    at.button(key="create_experiment").click().run()
    with _session(store) as s:
        exp = ex.get_experiment(session=s, ref="Typed metrics")
    assert exp.guardrail_metrics == ["errors_5xx"]


def test_viewers_see_the_create_form_read_only(store: str, monkeypatch: pytest.MonkeyPatch) -> None:
    users = {"vera": {"password_hash": hash_password("secret-v"), "role": "viewer"}}
    monkeypatch.setenv("ABCORE_USERS", json.dumps(users))
    at = AppTest.from_file(APP, default_timeout=TIMEOUT)
    at.run()
    _sign_in(at, "vera", "secret-v")
    at.switch_page("pages/create.py").run()
    assert not at.exception, at.exception
    assert any("You need the **editor** role to create experiments" in i.value for i in at.info)
    widgets = [*at.text_input, *at.text_area, *at.selectbox, *at.multiselect, *at.number_input, *at.radio,
               *at.slider, *at.checkbox]
    assert len(widgets) > 15
    editable = [w.key for w in widgets if not w.disabled and w.key not in ("live_refresh",)]
    assert editable == []
    buttons = [b.key for b in at.button if b.key and b.key != "sign_out" and not b.disabled]
    assert buttons == []
    assert "create_experiment" not in {b.key for b in at.button}  # no Create button at all
    assert not [m for m in at.markdown if m.value.startswith("**Before you can create it:**")]


# --------------------------------------------------------------------------- results


def test_results_show_each_metrics_direction_from_its_definition(store: str) -> None:
    _define(store, name="latency_ms", kind="mean", direction="decrease")
    with _session(store) as s:
        exp = ex.create_experiment(session=s, data=ex.ExperimentCreate(
            name="Guarded", guardrail_metrics=["latency_ms"],
            variants=[ex.VariantCreate(name="control", allocation_pct=50),
                      ex.VariantCreate(name="fast", allocation_pct=50)]))
        ex.start_experiment(session=s, ref=exp.id)
    assigner = Assigner(store, timeout=10.0, cache_ttl=0.0)
    for i in range(40):
        assert assigner.assign(f"u{i}", "Guarded") is not None
        if i % 3 == 0:
            assigner.track(f"u{i}", "Guarded", "conversion")
        assigner.track(f"u{i}", "Guarded", "latency_ms", 100.0 + i)
    assigner.close()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/results.py")
    at.session_state["live_refresh"] = False
    at.query_params["experiment"] = "Guarded"
    at.run()
    assert not at.exception, at.exception
    directions = [c.value for c in at.caption if c.value.startswith("Direction:")]
    # conversion has no definition: the default (higher is better); latency_ms: its definition
    assert directions == ["Direction: ↑ higher is better", "Direction: ↓ lower is better"]
