"""Dashboard pieces for the watcher (stopping rules, alerts, snapshots, webhooks); the logic is in abcore.watch.rules and abcore.watch.runner."""

from __future__ import annotations

from html import escape
from types import SimpleNamespace
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from abcore import experiments as ex
from abcore.config import redact_url
from abcore.dashboard import ui
from abcore.dashboard.views import html
from abcore.watch import rules as watch_rules
from abcore.watch import runner as watch
from abcore.watch import snapshots, webhooks

CHOICES = ex.AUTO_STOP_CHOICES
OUTCOME_LEVEL = {"worse": -1, "inconclusive": 0, "better": 1}


def rules_inputs(prefix: str, current: dict[str, Any] | None = None, *, disabled: bool = False) -> dict[str, Any]:
    """Widgets for the stopping rules (keys ``<prefix>...``, read only when ``disabled``); returns ``auto_stop``."""
    rules = {**ex.AUTO_STOP_DEFAULTS, **(current or {})}
    enabled = st.checkbox("Watch this experiment (automated stopping rules and alerts)", value=bool(current)
                          if current is not None else True, key=f"{prefix}enabled", disabled=disabled)
    cols = st.columns(len(CHOICES))
    picked = {}
    for col, key in zip(cols, CHOICES, strict=True):
        options = list(CHOICES[key])
        picked[key] = col.selectbox(watch_rules.RULE_LABELS[key], options, index=options.index(rules[key]),
                                    key=f"{prefix}{key}", disabled=disabled or not enabled)
    cols = st.columns(4)
    limits = {
        "max_days": cols[0].number_input("Stop after (days, 0 = never)", min_value=0.0,
                                         value=float(rules["max_days"] or 0), step=1.0, key=f"{prefix}max_days",
                                         disabled=disabled or not enabled),
        "max_users": cols[1].number_input("Stop at users (0 = never)", min_value=0,
                                          value=int(rules["max_users"] or 0), step=1000, key=f"{prefix}max_users",
                                          disabled=disabled or not enabled),
        "min_days": cols[2].number_input("No significance action before (days)", min_value=0.0,
                                         value=float(rules["min_days"] or 0), step=1.0, key=f"{prefix}min_days",
                                         disabled=disabled or not enabled),
        "min_users": cols[3].number_input("… nor before (users)", min_value=0, value=int(rules["min_users"] or 0),
                                          step=100, key=f"{prefix}min_users", disabled=disabled or not enabled),
    }
    st.caption("Significance rules use the sequential (always-valid) test, whatever the results page shows, "
               "so a watcher looking every few minutes keeps the error rate at alpha.")
    return watch_rules.rules_from_inputs(enabled=enabled, **picked, **limits)


def alerts(experiment_id: int, *, limit: int = 5) -> None:
    """The experiment's newest alerts as warnings (nothing when there are none)."""
    with ui.session() as s:
        rows = snapshots.list_alerts(session=s, experiment_id=experiment_id, limit=limit)
    with st.container(key=f"alerts_{experiment_id}"):
        for alert in rows:
            st.warning(_alert_text(alert), icon="🚨")


def _alert_text(alert: Any) -> str:
    """:func:`abcore.watch.runner.alert_line` with the rule and the message (which name metrics and variants)
    shown as plain text."""
    shown = SimpleNamespace(**{f: getattr(alert, f) for f in ("created_at", "action", "action_taken", "delivery")},
                            rule=html.plain_text(alert.rule), message=html.plain_text(alert.message))
    return watch.alert_line(shown)


def rules_editor(experiment: Any) -> None:
    """An expander to edit the stopping rules of a draft, running or paused experiment."""
    st.caption("🛑 Stopping rules: " + watch_rules.describe_rules(experiment.auto_stop))
    if experiment.status not in ("draft", "running", "paused") or not ui.can_edit():
        return
    with st.expander("Edit stopping rules"):
        new = rules_inputs(f"rules_{experiment.id}_", experiment.auto_stop or {})
        if st.button("Save stopping rules", key=f"rules_save_{experiment.id}"):
            try:
                with ui.session() as s:
                    ex.set_auto_stop(session=s, ref=experiment.id, auto_stop=new, actor=ui.actor())
            except ex.ExperimentError as exc:
                ui.show_error(exc)
            else:
                ui.flash(f"Stopping rules of '{experiment.name}' saved.")
                st.rerun()


def snapshot_first(experiment: Any) -> bool:
    """Show the latest watcher snapshot ("results as of HH:MM", refresh now) and the decision history.

    Returns True while the snapshot is shown instead of the live analysis (until "Refresh now").
    """
    with ui.session() as s:
        snap = snapshots.latest_snapshot(session=s, experiment_id=experiment.id)
        history = snapshots.snapshot_history(session=s, experiment_id=experiment.id)
    alerts(experiment.id)
    if snap is None:
        return False
    live_key = f"live_results_{experiment.id}"
    showing = not st.session_state.get(live_key, False)
    with st.container(border=True, key="snapshot_box"):
        when = snapshots.aware_utc(snap.computed_at).strftime("%H:%M UTC on %Y-%m-%d")
        left, right = st.columns([4, 1])
        left.markdown(f"**Results as of {when}** (watcher snapshot, {snap.method} method) · primary metric "
                      f"decision: **{snap.primary_outcome}** · verdict `{snap.verdict}`")
        if showing:
            right.button("Refresh now", key="snapshot_refresh", on_click=st.session_state.__setitem__,
                         args=(live_key, True), type="primary")
            frame = pd.DataFrame(snap.results.get("frame") or [])
            if not frame.empty:
                columns = [c for c in ("metric", "role", "variant", "control_users", "users", "control_value",
                                       "value", "lift", "lift_ci_low", "lift_ci_high", "p_value_adjusted",
                                       "significant") if c in frame]
                st.dataframe(frame[columns], hide_index=True, width="stretch", key="snapshot_table")
            verdict = (snap.results.get("verdict") or {}).get("reason")
            if verdict:
                st.caption(html.plain_text(verdict))
        if len(history) > 1:
            st.plotly_chart(_history_chart(history), key="snapshot_history")
    return showing


def _history_chart(history: list[dict[str, Any]]) -> go.Figure:
    fig = go.Figure()
    x = [h["computed_at"] for h in history]
    fig.add_trace(go.Scatter(x=x, y=[h["lift"] for h in history], mode="lines+markers", name="lift",
                             text=[h["outcome"] for h in history],
                             error_y={"type": "data", "symmetric": False,
                                      "array": [(h["lift_ci_high"] - h["lift"]) if h["lift"] is not None and
                                                h["lift_ci_high"] is not None else None for h in history],
                                      "arrayminus": [(h["lift"] - h["lift_ci_low"]) if h["lift"] is not None and
                                                     h["lift_ci_low"] is not None else None for h in history]}))
    fig.add_hline(y=0, line_dash="dot")
    metric = next((h["metric"] for h in history if h["metric"]), "primary metric")
    fig.update_layout(title=f"{escape(str(metric))}: lift and always-valid CI per watcher pass (hover: decision)",
                      yaxis_tickformat=".0%", height=300, margin={"t": 40, "b": 20})
    return fig


def webhooks_admin() -> None:
    """Configure alert webhooks (editors only); $ABCORE_WEBHOOK_URLS are listed read-only. URLs are shown
    redacted (scheme and host: their paths carry tokens); a URL the address checks refuse is refused here."""
    with st.expander("🔔 Alert webhooks"):
        env = webhooks.WatchSettings.from_env().webhook_urls
        if env:
            st.caption("From $ABCORE_WEBHOOK_URLS: " + html.plain_text(", ".join(redact_url(u) for u in env)))
        with ui.session() as s:
            hooks = webhooks.list_webhooks(session=s)
        for hook in hooks:
            cols = st.columns([5, 1])
            cols[0].markdown(f"{html.plain_text(redact_url(hook.url))} · {html.plain_text(hook.name)}")
            if ui.can_edit() and cols[1].button("Remove", key=f"hook_rm_{hook.id}"):
                with ui.session() as s:
                    webhooks.remove_webhook(session=s, webhook_id=hook.id, actor=ui.actor())
                st.rerun()
        if not ui.can_edit():
            return
        cols = st.columns([4, 2, 1])
        url = cols[0].text_input("Webhook URL (Slack incoming webhook or any JSON receiver)", key="hook_url")
        name = cols[1].text_input("Name", key="hook_name")
        if cols[2].button("Add", key="hook_add"):
            try:
                with ui.session() as s:
                    webhooks.add_webhook(session=s, url=url, name=name, actor=ui.actor())
            except ex.ExperimentError as exc:
                ui.show_error(exc)
            else:
                ui.flash("Webhook added.")
                st.rerun()
