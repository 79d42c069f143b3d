"""Experiments (landing page): search, filter and sort every experiment; cards by status or a compact table,
with progress toward the planned sample, lifecycle actions (ship dialog with the recommendation) and audit log."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore import formatting as fmt
from abcore.analysis.overview import VariantUsers, experiment_overview, latest_event_id, variant_users
from abcore.dashboard import ui, watch_ui
from abcore.dashboard.views import create_form, forms, html
from abcore.dashboard.views import experiment_list as xl

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
EDIT_PAGE = "edit.py"  # the edit / clone / archive page (url edit?id=<id>)
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
    pending = st.session_state.pop("pending_action", None)
    if pending:  # the next ship dialog starts again from the recommended variant
        st.session_state.pop(f"ship_variant_{pending[0]}", None)


def _perform(experiment: Any, action: str, variants: list[VariantUsers]) -> None:
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


def _ship_advice(experiment: Any) -> xl.ShipAdvice | None:
    """The recommendation for the ship dialog (cheap analysis: no percentiles, no daily series).

    Kept in the session per experiment, latest event id and last change, so moving the rollout
    slider does not analyse again, while a new event or a change of the experiment does.
    """
    from abcore.analysis.pipeline import analyze

    with ui.session() as s:
        latest = (latest_event_id(session=s, experiment_id=experiment.id), experiment.updated_at)
        key = f"_ship_advice_{experiment.id}"
        cached = st.session_state.get(key)
        if cached is not None and cached[0] == latest:
            return cached[1]
        try:
            advice = xl.ship_advice(analyze(experiment.id, session=s, percentiles=False, daily=False))
        except ex.ExperimentError:
            advice = None
    st.session_state[key] = (latest, advice)
    return advice


def _ship_fields(experiment: Any, variants: list[VariantUsers]) -> None:
    names = {v.variant_id: v.name for v in variants}
    advice = _ship_advice(experiment)
    key = f"ship_variant_{experiment.id}"
    if advice is not None and advice.variant_id in names:
        default = advice.variant_id
    else:
        default = next((v.variant_id for v in variants if v.is_control), next(iter(names), None))
    if st.session_state.get(key) not in names:  # first open: the recommended variant
        st.session_state[key] = default
    if advice is not None:
        label = forms.verdict_label(advice.decision, names.get(advice.variant_id))[0]
        st.caption(f"Recommendation: **{html.plain_text(label)}**. {html.plain_text(advice.reason)}")
    cols = st.columns(2)
    chosen = cols[0].selectbox(
        "Variant to ship",
        options=list(names),
        format_func=lambda vid: names.get(vid, str(vid)) + (" (recommended)" if vid == default else ""),
        key=key,
    )
    cols[1].slider("Rollout (% of users)", 1, 100, 100, step=1, key=f"ship_rollout_{experiment.id}")
    broken = advice.breaches.get(chosen, ()) if advice is not None else ()
    if broken:
        metrics = ", ".join(html.plain_text(m) for m in broken)
        st.error(
            f"**{html.plain_text(names.get(chosen, '?'))}** broke the guardrail{'s' if len(broken) > 1 else ''} "
            f"{metrics}: shipping it makes {'these metrics' if len(broken) > 1 else 'this metric'} worse.",
            icon="🛑",
        )


def _confirmation(experiment: Any, action: str, variants: list[VariantUsers]) -> None:
    label, icon, question = forms.ACTION_LABELS[action]
    with st.container(border=True, key=f"confirm_box_{experiment.id}"):
        st.warning(question, icon="❓")
        if action == "ship":
            _ship_fields(experiment, variants)
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


def _progress(item: xl.ListItem) -> None:
    """Progress toward the planned sample size and the days left of the minimum duration."""
    if item.progress is None:
        st.caption("No planned sample size (minimum samples per variant is 0).")
    else:
        st.progress(
            min(1.0, item.progress),
            text=f"{fmt.format_int(item.participants)} of {fmt.format_int(item.planned)} planned users "
                 f"({fmt.format_number(item.progress * 100, 0)} %)",
        )
    left = item.days_left()
    if left is not None and item.status in ("draft", "running", "paused"):
        if left == 0:
            st.caption(f"📅 Minimum duration of {item.min_duration_days} days reached")
        else:
            when = "" if item.started_at is not None else " (not started)"
            st.caption(f"📅 {left} day{'s' if left != 1 else ''} left of the minimum {item.min_duration_days}{when}")


def _edit_link(experiment: Any, where: Any) -> None:
    if ui.page_registered(EDIT_PAGE):
        where.page_link(f"pages/{EDIT_PAGE}", label="Edit / clone", icon="✏️",
                        query_params={"id": str(experiment.id)})


def _card(experiment: Any, item: xl.ListItem, variants: list[VariantUsers], audit: list[Any], editable: bool) -> None:
    with st.container(border=True, key=f"exp_card_{experiment.id}"):
        left, right = st.columns([3, 1])
        with left:
            # user text is escaped: a name or description shows as typed, never as a link or remote image
            archived = " &nbsp; :gray-badge[🗄 Archived]" if item.archived else ""
            st.markdown(f"#### {html.plain_text(experiment.name)} &nbsp; {forms.status_badge(experiment.status)}{archived}")
            if experiment.description:
                st.markdown(html.plain_text(experiment.description))
            split = " · ".join(
                f"**{html.plain_text(forms.variant_label(v.name, v.is_control))}** {fmt.format_number(v.allocation_pct, 2)} %"
                f" – {fmt.format_int(v.users)} users"
                for v in variants
            )
            st.markdown(split)
            audience = [f"{fmt.format_number(experiment.traffic_allocation * 100, 1)} % of eligible users"]
            audience += [create_form.describe_rule(rule) for rule in experiment.targeting]
            st.caption("Audience: " + " · ".join(html.plain_text(a) for a in audience))
            _progress(item)
            watch_ui.rules_editor(experiment)
            watch_ui.alerts(experiment.id, limit=3)
            if experiment.status == "completed" and experiment.winner_variant_id:
                winner = next((v.name for v in variants if v.variant_id == experiment.winner_variant_id), "?")
                st.markdown(f"🏆 Shipped **{html.plain_text(winner)}** to {fmt.format_number(experiment.rollout_pct or 0, 1)} % of users")
        with right:
            st.metric("Participants", fmt.format_int(item.participants))
            st.caption(f"⏱ {forms.format_days(forms.days_running(experiment.started_at, experiment.stopped_at))}"
                       f" · primary metric {html.plain_text(experiment.primary_metric)}"
                       + (f" · owner {html.plain_text(item.owner)}" if item.owner else ""))

        buttons = st.columns(7)
        buttons[0].page_link(
            "pages/results.py", label="Results", icon="📊", query_params={"experiment": str(experiment.id)}
        )
        _edit_link(experiment, buttons[1])
        if editable:
            for i, action in enumerate(ex.allowed_actions(experiment.status), start=2):
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


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value is not None else ""


def _table(items: list[xl.ListItem]) -> None:
    """The compact view: one row per experiment, the same filters and order as the cards. Plain HTML
    (abcore.dashboard.views.html.html_table): it wraps at any width instead of scrolling off the right,
    and a missing figure reads "–" (formatted by abcore.formatting), never "None". Times are UTC."""
    edit = ui.page_registered(EDIT_PAGE)
    rows = [
        {
            "Name": i.name,
            "Status": i.status + (" · archived" if i.archived else ""),
            "Owner": i.owner or xl.NO_OWNER,
            "Metric": i.primary_metric,
            "Users": fmt.format_int(i.participants),
            "Planned": fmt.format_int(i.planned) if i.planned else "–",
            "Progress": fmt.format_pct(min(1.0, i.progress), 0) if i.progress is not None else "–",
            "Days left": str(i.days_left()) if i.status in ("draft", "running", "paused")
            and i.days_left() is not None else "–",
            "Started": _when(i.started_at) or "–",
            "Last activity": _when(i.last_activity) or "–",
            "Results": html.Link("📊 Results", f"results?experiment={i.id}"),
            **({"Edit": html.Link("✏️ Edit", f"{EDIT_PAGE.removesuffix('.py')}?id={i.id}")} if edit else {}),
        }
        for i in items
    ]
    with st.container(key="x_table_view"):
        st.markdown(html.html_table(rows, key_columns=4, fit=True), unsafe_allow_html=True)


def _filters(items: list[xl.ListItem]) -> tuple[list[xl.ListItem], bool]:
    """The search box, filters, sort and view switches; returns the matching items in order and the view."""
    row = st.columns([3, 2, 2, 2, 2], vertical_alignment="bottom")
    search = row[0].text_input("Search", key="x_search", placeholder="Search name or description",
                               label_visibility="collapsed")
    statuses = row[1].multiselect("Status", forms.STATUS_ORDER, key="x_status", placeholder="Any status",
                                  format_func=lambda s: f"{forms.STATUS_ICONS[s]} {s.capitalize()}",
                                  label_visibility="collapsed")
    owners = row[2].multiselect("Owner", xl.owner_choices(items), key="x_owner", placeholder="Any owner",
                                label_visibility="collapsed")
    metrics = row[3].multiselect("Metric", xl.metric_choices(items), key="x_metric", placeholder="Any metric",
                                 label_visibility="collapsed")
    sort = row[4].selectbox("Sort by", list(xl.SORT_OPTIONS), format_func=xl.SORT_OPTIONS.__getitem__, key="x_sort",
                            label_visibility="collapsed")
    row = st.columns([1, 1, 2, 2])
    table = row[0].toggle("Table view", key="x_table", help="One compact row per experiment instead of cards.")
    archived = row[1].toggle("Show archived", key="x_archived")
    layer_names = sorted({i.layer for i in items if i.layer})
    layers = row[3].multiselect("Layer", layer_names, key="x_layer", placeholder="Any layer",
                                label_visibility="collapsed") if layer_names else []
    shown = xl.sort_items(
        xl.filter_items(items, search=search, statuses=statuses, owners=owners, metrics=metrics,
                        include_archived=archived, layers=layers),
        sort,
    )
    hidden = len(items) - len(shown)
    if hidden and items:
        row[2].caption(f"Showing {len(shown)} of {len(items)} experiments.")
    return shown, table


def body() -> None:
    head, new = st.columns([4, 1])
    head.title("🧪 Experiments")
    head.caption("Design, run, watch and conclude experiments. Every change is recorded in the audit log.")
    editable = ui.can_edit()
    if editable:
        new.page_link("pages/create.py", label="New experiment", icon="➕")
    ui.read_only_notice()
    watch_ui.watcher_status()  # the cards show stopping rules: are they being applied?

    with ui.session() as s:  # a fixed number of queries, however many experiments there are
        everything = ex.list_experiments(session=s, include_archived=True)  # the Show archived toggle filters
        overview = experiment_overview(session=s)
        variants = variant_users(session=s)
        audit: dict[int, list[Any]] = {}
        for entry in ex.audit_log(session=s):
            audit.setdefault(entry.experiment_id, []).append(entry)
    if not everything:
        st.info("There are no experiments yet. Create the first one with **New experiment**, "
                "or load the demo data with `abcore demo`.", icon="👋")
    with ui.session() as s:
        layer_by_id = {layer.id: layer.name for layer in ex.list_layers(session=s)}
    items = xl.with_layers(xl.build_items(everything, overview, variants), everything, layer_by_id)
    shown, table = _filters(items)
    by_id = {e.id: e for e in everything}
    wanted = st.session_state.pop(forms.OPEN_TAB_KEY, None)  # e.g. "draft" right after Create
    if table:
        if shown:
            _table(shown)
        elif everything:
            st.info("No experiment matches the search and filters.")
        watch_ui.webhooks_admin()
        return
    statuses = [s for s in forms.STATUS_ORDER if not st.session_state.get("x_status") or s in st.session_state["x_status"]]
    by_status: dict[str, list[xl.ListItem]] = {status: [] for status in statuses}
    for item in shown:
        by_status.setdefault(item.status, []).append(item)
    labels = [f"{forms.STATUS_ICONS[s]} {s.capitalize()} ({len(by_status[s])})" for s in statuses]
    filtered = len(shown) < len([i for i in items if not i.archived or st.session_state.get("x_archived")])
    if wanted is None and filtered:  # a search opens the first tab with a match, never an empty one
        wanted = next((status for status in statuses if by_status[status]), None)
    default = labels[statuses.index(wanted)] if wanted in statuses else None
    tabs = st.tabs(labels, default=default)
    for tab, status in zip(tabs, statuses, strict=True):
        with tab:
            if not by_status[status]:
                st.info("No experiment in this tab matches the search and filters." if filtered else TAB_EMPTY[status])
            for item in by_status[status]:
                _card(by_id[item.id], item, variants.get(item.id, []), audit.get(item.id, []), editable)
    watch_ui.webhooks_admin()


if ui.start_page():
    ui.guarded(body)
