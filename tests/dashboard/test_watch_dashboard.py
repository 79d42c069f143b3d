"""The watcher in the dashboard (AppTest): stopping rules in the create form and on the card, alerts,
the latest snapshot on the results page with "refresh now", webhook configuration."""

from __future__ import annotations

import pytest
import streamlit as st
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.dashboard import APP_PATH
from abcore.store.db import make_engine
from abcore.watch import urls
from abcore.watch.runner import run_pass
from abcore.watch.webhooks import WatchSettings, list_webhooks
from tests.dashboard.markdown_view import text
from tests.watch.conftest import simulated_experiment

APP = str(APP_PATH)


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("ABCORE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("ABCORE_USERS", raising=False)
    monkeypatch.delenv("ABCORE_WEBHOOK_URLS", raising=False)
    monkeypatch.delenv("ABCORE_WEBHOOK_ALLOW", raising=False)
    monkeypatch.setattr(urls, "resolve_host", lambda host, port, timeout: ["93.184.216.34"])  # no DNS query
    st.cache_resource.clear()
    st.cache_data.clear()
    return sqlite_url


def _open(page: str, **params: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    for key, value in params.items():
        at.query_params[key] = value
    at.switch_page(f"pages/{page}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def test_create_form_saves_the_stopping_rules(store: str) -> None:
    at = _open("create")
    at.text_input(key="c_name").set_value("Watched")
    at.selectbox(key="c_watch_guardrails").set_value("stop")
    at.number_input(key="c_watch_max_days").set_value(21.0)
    at.number_input(key="c_watch_min_users").set_value(500)
    at.run()
    at.button(key="create_experiment").click().run()
    assert not at.exception
    with Session(make_engine(store)) as s:
        exp = ex.get_experiment(session=s, ref="Watched")
    assert exp.auto_stop == {"guardrails": "stop", "success": "alert", "srm": "alert", "max_days": 21.0,
                             "max_users": None, "min_days": 0.0, "min_users": 500}


def test_card_shows_rules_and_alert_results_page_shows_snapshot(store: str) -> None:
    engine = make_engine(store)
    with Session(engine, expire_on_commit=False) as s:
        exp, _ = simulated_experiment(s, "harmful", error_rates=(0.10, 0.14), seed=11)
        calm, _ = simulated_experiment(s, "calm", seed=12)
    run_pass(engine, settings=WatchSettings())
    at = _open("experiments")
    captions = " ".join(c.value for c in at.caption)
    assert "Stopping rules: guardrails: pause · success: alert · srm: alert" in captions
    warnings = [text(w.value) for w in at.warning]
    assert any("guardrail:errors" in w and "paused by the watcher" in w for w in warnings), warnings

    assert any("Watcher: last pass just now" in text(c.value) for c in at.caption)  # the pass above, shown in green

    run_pass(engine, settings=WatchSettings())  # a second pass: "calm" (still running) has two snapshots
    at = _open("results", experiment=str(exp.id))
    shown = " ".join(m.value for m in at.markdown)
    assert "Results as of" in shown and "the watcher's last analysis (sequential method" in shown
    # the same report as a live result: verdict words, formatted tables, no raw snapshot columns or codes
    assert "abcore-table" in shown and "Lift [CI]" in shown and "p-value (adj.)" in shown
    for raw in ("keep_running", "p_value_adjusted", "lift_ci_low", "control_users"):
        assert raw not in shown, raw
    assert any("Watcher snapshot: Sequential (safe to peek) method" in c.value for c in at.caption)
    assert "abcore-chart" in shown and "per watcher pass" not in shown  # the forest plot; one pass: no history
    assert any("guardrail:errors" in text(w.value) for w in at.warning)
    at = _open("results", experiment=str(calm.id))
    shown = " ".join(m.value for m in at.markdown)
    assert "per watcher pass" in shown and "abcore-chart" in shown  # the history: an SVG chart as every other
    assert not at.get("plotly_chart") and not at.dataframe  # no Plotly, no data grid
    assert at.button(key="snapshot_refresh")
    at.button(key="snapshot_refresh").click().run()
    assert not at.exception
    assert not [b for b in at.button if b.key == "snapshot_refresh"]  # the live analysis is shown now


def test_a_store_no_watcher_ran_on_shows_it_in_red(store: str) -> None:
    at = _open("experiments")
    status = [m.value for m in at.markdown if "No watcher has run" in m.value]
    assert status and status[0].startswith(":red[")  # stopping rules are on by default: say they are not applied
    at = _open("create")
    assert any("No watcher has run" in m.value and m.value.startswith(":red[") for m in at.markdown)
    with Session(make_engine(store), expire_on_commit=False) as s:
        watched, _ = simulated_experiment(s, "watched", seed=3)
    at = _open("results", experiment=str(watched.id))  # running, rules on, no snapshot: no watcher
    assert any("No watcher has run" in m.value and m.value.startswith(":red[") for m in at.markdown)


def test_rules_editor_saves_and_audits(store: str) -> None:
    engine = make_engine(store)
    with Session(engine, expire_on_commit=False) as s:
        exp, _ = simulated_experiment(s, "edit-me", users_per_arm=20, auto_stop={})
    at = _open("experiments")
    prefix = f"rules_{exp.id}_"
    at.checkbox(key=f"{prefix}enabled").check().run()
    at.selectbox(key=f"{prefix}success").set_value("stop").run()
    at.button(key=f"rules_save_{exp.id}").click().run()
    assert not at.exception
    with Session(engine) as s:
        fresh = ex.get_experiment(session=s, ref=exp.id)
        entry = ex.audit_log(session=s, experiment_id=exp.id)[0]
    assert fresh.auto_stop["success"] == "stop" and entry.action == "set_auto_stop"


def test_webhooks_can_be_added(store: str) -> None:
    at = _open("experiments")
    at.text_input(key="hook_url").set_value("https://hooks.example.com/abc")
    at.button(key="hook_add").click().run()
    assert not at.exception
    with Session(make_engine(store)) as s:
        assert [h.url for h in list_webhooks(session=s)] == ["https://hooks.example.com/abc"]
    at.text_input(key="hook_url").set_value("nope")
    at.button(key="hook_add").click().run()
    assert any("needs an http:// or https:// URL" in text(e.value) for e in at.error)


def test_webhook_admin_refuses_an_internal_address_and_shows_urls_redacted(store: str) -> None:
    at = _open("experiments")
    at.text_input(key="hook_url").set_value("http://169.254.169.254/latest/meta-data/")
    at.button(key="hook_add").click().run()
    assert any("169.254.169.254 is a link-local address" in text(e.value) for e in at.error), [e.value for e in at.error]
    with Session(make_engine(store)) as s:
        assert list_webhooks(session=s) == []
    at.text_input(key="hook_url").set_value("https://hooks.slack.com/services/T1/B2/xoxb-secret")
    at.button(key="hook_add").click().run()
    assert not at.exception
    shown = " ".join(text(m.value) for m in at.markdown)
    assert "https://hooks.slack.com/…" in shown and "xoxb-secret" not in shown
