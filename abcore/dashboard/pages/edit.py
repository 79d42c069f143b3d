"""Edit experiment (``edit?id=<experiment id>``): edit a draft, the safe fields of a running one, clone,
archive, and the approval panel. Every rule is in abcore.experiments.lifecycle; parsing in abcore.dashboard.views.edit_form."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore.access.users import can_approve as _can_approve
from abcore.dashboard import ui, watch_ui
from abcore.dashboard.views import create_form, edit_form, forms, html
from abcore.experiments.ml_models import list_models


def _can_approve_now() -> bool:
    if not ui.auth_enabled():
        return True
    if st.session_state.get("auth_error"):
        return False
    return _can_approve(ui.current_user(), st.session_state.get("auth_users", {}))


def _pick() -> int | None:
    """The experiment named by ``?id=``, else one picked here (the choice goes into the URL)."""
    wanted = st.query_params.get("id")
    with ui.session() as s:
        everything = ex.list_experiments(session=s, include_archived=True)
    ids = {e.id: e for e in everything}
    if wanted is not None and str(wanted).isdigit() and int(wanted) in ids:
        return int(wanted)
    if wanted is not None:
        st.warning(f"No experiment with id '{html.plain_text(wanted)}'; pick one below.", icon="🔎")
    if not everything:
        st.info("There are no experiments yet. Create one on the **Create experiment** page.", icon="👋")
        return None
    picked = st.selectbox(
        "Experiment", options=list(ids), index=None, key="edit_pick", placeholder="Choose an experiment",
        format_func=lambda i: f"{ids[i].name} ({ids[i].status}{', archived' if ids[i].archived_at else ''})",
    )
    if picked is not None:
        st.query_params["id"] = str(picked)
    return picked


def _variant_rows(form: edit_form.EditForm, model_names: dict[Any, str], k: str) -> list[create_form.VariantRow]:
    """The draft's variant rows (model, allocation, config) and the live allocation total; returns them as typed."""
    st.markdown("Variants (names are fixed; clone the experiment to add or rename variants)")
    rows: list[create_form.VariantRow] = []
    for row in form.rows:
        cols = st.columns([2, 3, 2, 4])
        cols[0].markdown(f"**{html.plain_text(forms.variant_label(row.name, row.id == 0))}**")
        model = cols[1].selectbox(
            "Model", options=[None, *model_names], key=f"{k}model_{row.id}",
            index=[None, *model_names].index(row.model_id) if row.model_id in model_names else 0,
            format_func=lambda mid: "— no model —" if mid is None else model_names.get(mid, f"model {mid}"),
        )
        alloc = cols[2].number_input("Allocation %", min_value=0.0, max_value=100.0, step=1.0,
                                     format=create_form.ALLOCATION_FORMAT, value=float(row.allocation_pct),
                                     key=f"{k}alloc_{row.id}")
        config = cols[3].text_input("Config (JSON)", value=row.config_text, key=f"{k}config_{row.id}")
        rows.append(create_form.VariantRow(id=row.id, name=row.name, model_id=model, allocation_pct=float(alloc),
                                           config_text=config))
    total = create_form.allocation_total(r.allocation_pct for r in rows)
    with st.container(key=f"{k}allocation_total"):  # live, as on the create form; Save waits for 100 %
        st.markdown(create_form.allocation_message(total))
    return rows


def _draft_form(exp: Any, variants: list[Any], models: list[Any], editable: bool) -> None:
    form = edit_form.prefill(exp, variants)
    model_names = {m.id: f"{m.name} (v{m.version})" for m in models}
    for v in variants:  # a retired model stays selectable on the variant that uses it
        if v.model_id is not None and v.model_id not in model_names:
            model_names[v.model_id] = f"model {v.model_id} (retired)"
    k = f"e{exp.id}_"
    metrics = sorted({"conversion", exp.primary_metric, *exp.secondary_metrics, *exp.guardrail_metrics})
    # live widgets, not st.form: the stopping-rules box enables its fields as the checkbox is ticked
    with st.container(key=f"{k}form", border=True):
        st.markdown("**Draft: every field can change**")
        description = st.text_area("Description", value=form.description, key=f"{k}description", height=80)
        hypothesis = st.text_area("Hypothesis", value=form.hypothesis, key=f"{k}hypothesis", height=80)
        rows = _variant_rows(form, model_names, k)
        traffic = st.slider("Share of eligible traffic that enters (%)", 1, 100,
                            max(1, min(100, round(form.traffic_pct))), key=f"{k}traffic")
        # in a popover, as on the create form: the data grid's code loads only when it is opened
        box = st.popover(f"Targeting rules ({len(form.targeting_rows or [])}, all must hold)",
                         icon=":material/filter_alt:")
        table = box.data_editor(
            pd.DataFrame(form.targeting_rows or [], columns=["attribute", "op", "value"]).astype("object"),
            num_rows="dynamic", key=f"{k}targeting", width="stretch",
            column_config={
                "attribute": st.column_config.TextColumn("Attribute"),
                "op": st.column_config.SelectboxColumn("Operator", options=list(create_form.TARGETING_OPS)),
                "value": st.column_config.TextColumn("Value"),
            },
        )
        user_ids = st.text_area("Only these user ids (one per line)", value=form.user_ids_text, key=f"{k}user_ids")
        cols = st.columns(3)
        primary = cols[0].selectbox("Primary metric", metrics, index=metrics.index(form.primary_metric),
                                    key=f"{k}primary", accept_new_options=True)
        secondary = cols[1].multiselect("Secondary metrics", metrics, default=form.secondary_metrics,
                                        key=f"{k}secondary", accept_new_options=True)
        guardrails = cols[2].multiselect("Guardrail metrics", metrics, default=form.guardrail_metrics,
                                         key=f"{k}guardrails", accept_new_options=True)
        cols = st.columns(3)
        direction = cols[0].radio("Direction", create_form.DIRECTIONS, index=create_form.DIRECTIONS.index(form.direction)
                                  if form.direction in create_form.DIRECTIONS else 0, key=f"{k}direction", horizontal=True)
        effect = cols[1].number_input("Minimum relative effect (%)", min_value=0.0, max_value=1000.0,
                                      value=float(form.min_effect_pct), step=0.5, key=f"{k}effect")
        confidence = cols[2].radio("Confidence", create_form.CONFIDENCE_LEVELS, horizontal=True, key=f"{k}confidence",
                                   index=create_form.CONFIDENCE_LEVELS.index(form.confidence),
                                   format_func=lambda c: f"{c:.0%}")
        cols = st.columns(2)
        min_days = cols[0].number_input("Minimum duration (days)", min_value=0, value=form.min_duration_days,
                                        step=1, key=f"{k}min_days")
        min_samples = cols[1].number_input("Minimum samples per variant", min_value=0,
                                           value=form.min_samples_per_variant, step=100, key=f"{k}min_samples")
        st.markdown("Automated stopping rules")
        auto_stop = watch_ui.rules_inputs(f"{k}watch_", dict(exp.auto_stop or {}))
        split_ok = not ex.allocation_problems([r.allocation_pct for r in rows])
        saved = st.button("Save changes", type="primary", disabled=not editable or not split_ok, key=f"{k}save",
                          help=None if split_ok else "The allocations must be above 0 % and total exactly 100 %.")
    if not saved:
        return
    values = edit_form.EditForm(
        description=description, hypothesis=hypothesis, rows=rows, traffic_pct=float(traffic),
        targeting_rows=[{c: (None if pd.isna(x) else x) for c, x in r.items()} for r in table.to_dict("records")],
        user_ids_text=user_ids, primary_metric=primary or "", secondary_metrics=list(secondary),
        guardrail_metrics=list(guardrails), direction=direction, min_effect_pct=float(effect),
        confidence=float(confidence), min_duration_days=int(min_days), min_samples_per_variant=int(min_samples),
    )
    update, problems = edit_form.draft_update(values, auto_stop)
    problems += ex.validate_auto_stop(auto_stop)
    if problems or update is None:
        with st.container(key="edit_problems"):
            st.error("The changes cannot be saved:", icon="⚠️")
            st.markdown("\n".join(f"- {html.plain_text(p)}" for p in problems))
        return
    _save(exp, update)


def _save(exp: Any, update: ex.ExperimentUpdate) -> None:
    try:
        with ui.session() as s:
            diff = ex.planned_changes(session=s, ref=exp.id, changes=update)
            ex.update_experiment(session=s, ref=exp.id, changes=update, actor=ui.actor())
    except ex.ExperimentError as exc:
        with st.container(key="edit_problems"):
            ui.show_error(exc)
        return
    if diff:
        ui.flash(f"Saved {len(diff)} change(s) to '{exp.name}'.")
    else:
        ui.flash("Nothing changed: every value is the current one.", icon="ℹ️")
    st.rerun()


def _running_form(exp: Any, editable: bool) -> None:
    k = f"e{exp.id}_"
    metrics = sorted({"conversion", exp.primary_metric, *exp.secondary_metrics, *exp.guardrail_metrics})
    with st.container(key=f"{k}safe_form", border=True):
        st.markdown(f"**{exp.status.capitalize()}: only the safe fields can change** (description, hypothesis, "
                    "secondary metrics, a higher traffic share). Clone the experiment to change anything else.")
        description = st.text_area("Description", value=exp.description, key=f"{k}description")
        hypothesis = st.text_area("Hypothesis", value=exp.hypothesis, key=f"{k}hypothesis")
        secondary = st.multiselect("Secondary metrics", metrics, default=list(exp.secondary_metrics),
                                   key=f"{k}secondary", accept_new_options=True)
        traffic = st.number_input("Share of eligible traffic that enters (%) — can only go up", min_value=0.0,
                                  max_value=100.0, value=float(exp.traffic_allocation) * 100.0, step=5.0,
                                  key=f"{k}traffic")
        saved = st.button("Save changes", type="primary", disabled=not editable, key=f"{k}save")
    if saved:
        _save(exp, edit_form.running_update(description, hypothesis, secondary, traffic))


def _clone_box(exp: Any) -> None:
    k = f"e{exp.id}_"
    with st.container(border=True, key=f"{k}clone_box"):
        st.markdown("**Clone** into a new draft with the same configuration")
        cols = st.columns([3, 2, 1], vertical_alignment="bottom")
        name = cols[0].text_input("Name of the copy", value=f"{exp.name} (copy)"[:200], key=f"{k}clone_name")
        keep = cols[1].checkbox("Keep the salt (users land in the same variants)", key=f"{k}clone_keep_salt")
        if cols[2].button("Clone", icon=":material/content_copy:", key=f"{k}clone"):
            try:
                with ui.session() as s:
                    copy = ex.clone_experiment(session=s, ref=exp.id, name=name, keep_salt=keep, actor=ui.actor())
            except ex.ExperimentError as exc:
                ui.show_error(exc)
            else:
                ui.flash(f"Draft '{copy.name}' created from '{exp.name}'.")
                st.query_params["id"] = str(copy.id)
                st.rerun()


def _archive_box(exp: Any) -> None:
    k = f"e{exp.id}_"
    archived = exp.archived_at is not None
    label = "Restore from the archive" if archived else "Archive"
    with st.container(border=True, key=f"{k}archive_box"):
        st.markdown("**Archive**: hidden from the experiment lists (results stay readable)" if not archived
                    else f"**Archived** on {exp.archived_at:%Y-%m-%d %H:%M} UTC")
        if st.button(label, icon=":material/archive:", key=f"{k}archive"):
            try:
                with ui.session() as s:
                    ex.archive_experiment(session=s, ref=exp.id, actor=ui.actor(), archived=not archived)
            except ex.ExperimentError as exc:
                ui.show_error(exc)
            else:
                ui.flash(f"'{exp.name}' {'restored' if archived else 'archived'}.")
                st.rerun()


def _approval_panel(exp: Any, models: list[Any], editable: bool, approver: bool) -> None:
    k = f"e{exp.id}_"
    with ui.session() as s:
        state = ex.approval_state(session=s, ref=exp.id)
        configuration = ex.run_configuration(session=s, ref=exp.id)
        edits = ex.edits_since_decision(session=s, ref=exp.id)
    status = {"": "not requested", "requested": "waiting for an approver", "approved": "approved",
              "rejected": "rejected"}.get(state.status, state.status)
    if state.status == "approved" and not state.current:
        status = "approved, but changed since: needs a new approval"
    with st.container(border=True, key=f"{k}approval_box"):
        st.markdown(f"**Approval** · {'required before it can start' if state.required else 'not required in this store'}"
                    f" · status: **{status}**")
        if state.approved_by and state.current:
            st.caption(f"Approved by {html.plain_text(state.approved_by)} on {state.approved_at:%Y-%m-%d %H:%M} UTC")
        if state.comment:
            st.caption(f"Last comment{f' by {html.plain_text(state.decided_by)}' if state.decided_by else ''}: "
                       f"{html.plain_text(state.comment)}")
        if editable and state.status in ("", "rejected") and st.button(
                "Request approval", key=f"{k}request_approval", icon=":material/how_to_reg:"):
            _decide(exp, "request", "")
        if not approver:
            return
        st.markdown("What will run when it starts:")
        names = {m.id: m.name for m in models}
        with st.container(key=f"{k}approval_config"):
            st.markdown("\n".join(f"- {html.plain_text(line)}" for line in edit_form.describe_configuration(configuration, names)))
        if edits:
            st.markdown("What changed since the last request or decision:")
            lines = [line for e in edits for line in edit_form.describe_changes(
                e.details.get("changes") or {e.action: {"before": e.details.get("before"), "after": e.details.get("after")}})]
            with st.container(key=f"{k}approval_changes"):
                st.markdown("\n".join(f"- {html.plain_text(line)}" for line in lines))
        comment = st.text_area("Comment (required to reject)", key=f"{k}approval_comment", height=68)
        cols = st.columns([1, 1, 4])
        if cols[0].button("Approve", type="primary", icon=":material/check:", key=f"{k}approve",
                          disabled=state.status == "approved" and state.current):
            _decide(exp, "approve", comment)
        if cols[1].button("Reject", icon=":material/close:", key=f"{k}reject"):
            _decide(exp, "reject", comment)


def _decide(exp: Any, decision: str, comment: str) -> None:
    function = {"approve": ex.approve_experiment, "reject": ex.reject_experiment, "request": ex.request_approval}
    try:
        with ui.session() as s:
            options = {"allow_self_approval": not ui.auth_enabled()} if decision == "approve" else {}
            function[decision](session=s, ref=exp.id, actor=ui.actor(), comment=comment, **options)
    except ex.ExperimentError as exc:
        ui.show_error(exc)
        return
    done = {"approve": "approved", "reject": "rejected", "request": "sent for approval"}[decision]
    ui.flash(f"'{exp.name}' {done}.")
    st.rerun()


def _read_only(exp: Any, models: list[Any]) -> None:
    with ui.session() as s:
        configuration = ex.run_configuration(session=s, ref=exp.id)
    names = {m.id: m.name for m in models}
    with st.container(border=True, key=f"e{exp.id}_summary"):
        if exp.description:
            st.markdown(html.plain_text(exp.description))
        st.markdown("\n".join(f"- {html.plain_text(line)}" for line in edit_form.describe_configuration(configuration, names)))


def body() -> None:
    st.title("✏️ Edit experiment")
    experiment_id = _pick()
    if experiment_id is None:
        return
    editable = ui.can_edit()
    approver = _can_approve_now() and editable
    ui.read_only_notice()
    with ui.session() as s:
        exp = ex.get_experiment(session=s, ref=experiment_id)
        variants = ex.get_variants(session=s, experiment_id=experiment_id)
        models = list_models(session=s, active_only=False)
    archived = " · 🗄️ archived" if exp.archived_at is not None else ""
    st.markdown(f"#### {html.plain_text(exp.name)} &nbsp; {forms.status_badge(exp.status)}{archived}")
    st.page_link("pages/results.py", label="Results", icon="📊", query_params={"experiment": str(exp.id)})
    if not editable:
        _read_only(exp, models)
    elif exp.status == "draft":
        _draft_form(exp, variants, models, editable)
    elif exp.status in ("running", "paused"):
        _running_form(exp, editable)
    else:
        st.info(f"This experiment is {exp.status}: it is not edited any more. Clone it to run a changed version.",
                icon="🏁")
        _read_only(exp, models)
    if exp.status == "draft":
        _approval_panel(exp, models, editable, approver)
    if editable:
        _clone_box(exp)
        if exp.status in ex.FINISHED:
            _archive_box(exp)


if ui.start_page():
    ui.guarded(body)
