"""Experiments (landing page): every experiment by status, with its lifecycle actions and audit log."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

import ui
import watch_ui
from abcore import experiments as ex
from abcore import forms
from abcore.queries import participants

TAB_EMPTY = {
    "running": "No experiment is running. Start a draft from the **Draft** tab.",
    "paused": "No experiment is paused.",
    "draft": "No drafts yet. Use **New experiment** to design one.",
    "completed": "No completed experiments yet. Stop a running experiment once it has enough data.",
    "cancelled": "No cancelled experiments.",
}
ACTIONS = {
    "start": ex.start_experiment,
    "pause": ex.pause_experiment,
    "resume": ex.resume_experiment,
    "stop": ex.stop_experiment,
    "cancel": ex.cancel_experiment,
    "delete": ex.delete_experiment,
}
DONE = {
    "start": "started",
    "pause": "paused",
    "resume": "resumed",
    "stop": "stopped",
    "cancel": "cancelled",
    "delete": "deleted",
    "ship": "shipped",
}


def _ask(experiment_id: int, action: str) -> None:
    st.session_state["pending_action"] = (experiment_id, action)


def _dismiss() -> None:
    st.session_state.pop("pending_action", None)


def _perform(experiment: Any, action: str, variants: list[Any]) -> None:
    """Run a confirmed action through abcore; abcore refuses invalid transitions."""
    with ui.session() as s:
        if action == "ship":
            variant_id = st.session_state[f"ship_variant_{experiment.id}"]
            rollout = float(st.session_state[f"ship_rollout_{experiment.id}"])
            ex.ship_winner(session=s, ref=experiment.id, variant=variant_id, rollout_pct=rollout, actor=ui.actor())
        else:
            ACTIONS[action](session=s, ref=experiment.id, actor=ui.actor())
    _dismiss()
    ui.flash(f"Experiment '{experiment.name}' {DONE[action]}.")
    st.rerun()


def _confirmation(experiment: Any, action: str, variants: list[Any]) -> None:
    label, icon, question = forms.ACTION_LABELS[action]
    with st.container(border=True, key=f"confirm_box_{experiment.id}"):
        st.warning(question, icon="❓")
        if action == "ship":
            names = {v.id: v.name for v in variants}
            winner = experiment.winner_variant_id if experiment.winner_variant_id in names else next(iter(names), None)
            cols = st.columns(2)
            cols[0].selectbox(
                "Variant to ship",
                options=list(names),
                index=list(names).index(winner) if winner in names else 0,
                format_func=lambda vid: names.get(vid, str(vid)),
                key=f"ship_variant_{experiment.id}",
            )
            cols[1].slider("Rollout (% of users)", 1, 100, 100, step=1, key=f"ship_rollout_{experiment.id}")
        cols = st.columns([1, 1, 4])
        confirm = cols[0].button(f"Yes, {label.lower()}", icon=icon, type="primary", key=f"confirm_{experiment.id}")
        cols[1].button("No, keep it", key=f"dismiss_{experiment.id}", on_click=_dismiss)
        if confirm:
            try:
                _perform(experiment, action, variants)
            except ex.ExperimentError as exc:
                _dismiss()
                ui.show_error(exc)


def _audit_table(entries: list[Any]) -> None:
    if not entries:
        st.caption("No changes recorded yet.")
        return
    rows = [
        {
            "When (UTC)": e.ts.strftime("%Y-%m-%d %H:%M:%S"),
            "Action": e.action,
            "From": e.from_status or "",
            "To": e.to_status or "",
            "By": e.actor or "—",
            "Details": ", ".join(f"{k}={v}" for k, v in (e.details or {}).items()),
        }
        for e in entries
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")


def _card(experiment: Any, editable: bool) -> None:
    with ui.session() as s:
        variants = ex.get_variants(session=s, experiment_id=experiment.id)
        counts = participants(session=s, experiment_id=experiment.id)
        audit = ex.audit_log(session=s, experiment_id=experiment.id)
    total = sum(counts.values())
    with st.container(border=True, key=f"exp_card_{experiment.id}"):
        left, right = st.columns([3, 1])
        with left:
            # user text is escaped: a name or description shows as typed, never as a link or remote image
            st.markdown(f"#### {forms.plain_text(experiment.name)} &nbsp; {forms.status_badge(experiment.status)}")
            if experiment.description:
                st.markdown(forms.plain_text(experiment.description))
            split = " · ".join(
                f"**{forms.plain_text(forms.variant_label(v.name, v.is_control))}** {forms.format_number(v.allocation_pct, 2)} %"
                f" – {forms.format_int(counts.get(v.id, 0))} users"
                for v in variants
            )
            st.markdown(split)
            audience = [f"{forms.format_number(experiment.traffic_allocation * 100, 1)} % of eligible users"]
            audience += [forms.describe_rule(rule) for rule in experiment.targeting]
            st.caption("Audience: " + " · ".join(audience))
            watch_ui.rules_editor(experiment)
            watch_ui.alerts(experiment.id, limit=3)
            if experiment.status == "completed" and experiment.winner_variant_id:
                winner = next((v.name for v in variants if v.id == experiment.winner_variant_id), "?")
                st.markdown(f"🏆 Shipped **{forms.plain_text(winner)}** to {forms.format_number(experiment.rollout_pct or 0, 1)} % of users")
        with right:
            st.metric("Participants", forms.format_int(total))
            st.caption(f"⏱ {forms.format_days(forms.days_running(experiment.started_at, experiment.stopped_at))}"
                       f" · primary metric `{experiment.primary_metric}`")

        buttons = st.columns(6)
        buttons[0].page_link(
            "pages/results.py", label="Results", icon="📊", query_params={"experiment": str(experiment.id)}
        )
        if editable:
            for i, action in enumerate(ex.allowed_actions(experiment.status), start=1):
                label, icon, _ = forms.ACTION_LABELS[action]
                buttons[i].button(
                    label,
                    icon=icon,
                    key=f"act_{action}_{experiment.id}",
                    on_click=_ask,
                    args=(experiment.id, action),
                    type="secondary",
                )
        pending = st.session_state.get("pending_action")
        if editable and pending and pending[0] == experiment.id and pending[1] in ex.allowed_actions(experiment.status):
            _confirmation(experiment, pending[1], variants)
        with st.expander(f"Audit log ({len(audit)})"):
            _audit_table(audit)


def body() -> None:
    head, new = st.columns([4, 1])
    head.title("🧪 Experiments")
    head.caption("Design, run, watch and conclude experiments. Every change is recorded in the audit log.")
    editable = ui.can_edit()
    if editable:
        new.page_link("pages/create.py", label="New experiment", icon="➕")
    ui.read_only_notice()

    with ui.session() as s:
        everything = ex.list_experiments(session=s)
    if not everything:
        st.info("There are no experiments yet. Create the first one with **New experiment**, "
                "or load the demo data with `abcore demo`.", icon="👋")
    by_status: dict[str, list[Any]] = {status: [] for status in forms.STATUS_ORDER}
    for experiment in everything:
        by_status.setdefault(experiment.status, []).append(experiment)
    labels = [f"{forms.STATUS_ICONS[s]} {s.capitalize()} ({len(by_status[s])})" for s in forms.STATUS_ORDER]
    wanted = st.session_state.pop(forms.OPEN_TAB_KEY, None)  # e.g. "draft" right after Create
    default = labels[forms.STATUS_ORDER.index(wanted)] if wanted in forms.STATUS_ORDER else None
    tabs = st.tabs(labels, default=default)
    for tab, status in zip(tabs, forms.STATUS_ORDER, strict=True):
        with tab:
            if not by_status[status]:
                st.info(TAB_EMPTY[status])
            for experiment in by_status[status]:
                _card(experiment, editable)
    watch_ui.webhooks_admin()


if ui.start_page():
    ui.guarded(body)
