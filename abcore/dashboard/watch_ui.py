"""Dashboard pieces for the watcher (stopping rules, alerts, snapshots, webhooks); the logic is in abcore.watch.rules and abcore.watch.runner."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import streamlit as st

from abcore import experiments as ex
from abcore.config import redact_url
from abcore.dashboard import ui
from abcore.dashboard.views import html, result_charts
from abcore.watch import heartbeat, snapshots, webhooks
from abcore.watch import rules as watch_rules
from abcore.watch import runner as watch

CHOICES = ex.AUTO_STOP_CHOICES


def watcher_status() -> None:
    """One line on when the watcher last ran (:mod:`abcore.watch.heartbeat`), in red when no watcher has run
    or its last pass is older than twice its interval: stopping rules that are on are then not applied."""
    from abcore.config import setting

    with ui.session() as s:
        beat = heartbeat.read_heartbeat(s)
    state = heartbeat.watcher_state(beat, default_every=setting("watch_every"))
    with st.container(key="watcher_status"):
        if state.alarming:
            st.markdown(f":red[🔴 **{html.plain_text(state.text)}**]")
        else:
            st.caption(f"🟢 {html.plain_text(state.text)}")


def rules_inputs(prefix: str, current: dict[str, Any] | None = None, *, disabled: bool = False,
                 status: bool = True) -> dict[str, Any]:
    """Widgets for the stopping rules (keys ``<prefix>...``, read only when ``disabled``) under the watcher's
    status line (``status=False``: the page shows it once elsewhere); returns ``auto_stop``."""
    if status:
        watcher_status()
    rules = {**ex.AUTO_STOP_DEFAULTS, **(current or {})}
    enabled = st.checkbox("Watch this experiment (automated stopping rules and alerts)", value=bool(current)
                          if current is not None else True, key=f"{prefix}enabled", disabled=disabled)
    cols = st.columns(3)
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
    """An expander to edit the stopping rules of a draft, running or paused experiment (the page shows
    :func:`watcher_status` once, above the cards)."""
    st.caption("🛑 Stopping rules: " + watch_rules.describe_rules(experiment.auto_stop))
    if experiment.status not in ("draft", "running", "paused") or not ui.can_edit():
        return
    with st.expander("Edit stopping rules"):
        new = rules_inputs(f"rules_{experiment.id}_", experiment.auto_stop or {}, status=False)
        if st.button("Save stopping rules", key=f"rules_save_{experiment.id}"):
            try:
                with ui.session() as s:
                    ex.set_auto_stop(session=s, ref=experiment.id, auto_stop=new, actor=ui.actor())
            except ex.ExperimentError as exc:
                ui.show_error(exc)
            else:
                ui.flash(f"Stopping rules of '{experiment.name}' saved.")
                st.rerun()


def snapshot_first(experiment: Any) -> tuple[Any, str | None] | None:
    """The experiment's alerts and, when the watcher stored a snapshot, its header ("Results as of HH:MM",
    the watcher's status, "Refresh now"); returns (the snapshot, the SVG of the decision history or None)
    while the snapshot is shown instead of the live analysis (until "Refresh now"), else None.

    The snapshot itself is drawn by the results page as the same report as a live result.
    """
    with ui.session() as s:
        snap = snapshots.latest_snapshot(session=s, experiment_id=experiment.id)
        history = snapshots.snapshot_history(session=s, experiment_id=experiment.id, limit=200) if snap else []
    alerts(experiment.id)
    live_key = f"live_results_{experiment.id}"
    if snap is None and experiment.status == "running" and experiment.auto_stop:
        watcher_status()  # watched, yet no snapshot: is a watcher running at all?
    if snap is None or st.session_state.get(live_key, False):
        return None
    with st.container(border=True, key="snapshot_box"):
        when = snapshots.aware_utc(snap.computed_at).strftime("%H:%M UTC on %Y-%m-%d")
        left, right = st.columns([4, 1])
        left.markdown(f"**Results as of {when}**: the watcher's last analysis (sequential method, safe to "
                      "look at any time). *Refresh now* analyses the data as it is now, with the page's options.")
        right.button("Refresh now", key="snapshot_refresh", on_click=st.session_state.__setitem__,
                     args=(live_key, True), type="primary")
        watcher_status()
    return snap, result_charts.snapshot_history(history)


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
