"""Models: the registry the create form's Model dropdown offers (register, edit, retire, reactivate)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore.dashboard import ui
from abcore.dashboard.views import create_form, html
from abcore.experiments import ml_models as registry


def _table(models: list[Any]) -> None:
    rows = [
        {
            "Name": m.name,
            "Version": m.version,
            "Status": "active" if m.is_active else "retired",
            "Description": m.description,
            "Config": json.dumps(m.config) if m.config else "",
            "Updated (UTC)": m.updated_at.strftime("%Y-%m-%d %H:%M"),
        }
        for m in models
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="models_table")


def _register(models: list[Any]) -> None:
    # not clear_on_submit: a JSON or name error keeps everything typed; the fields clear after a success
    with st.form("model_register", border=True):
        st.markdown("**Register a model** — or a new version of one: same name, another version")
        cols = st.columns([3, 1])
        name = cols[0].text_input("Name", key="m_new_name", placeholder="boosted-ranker")
        version = cols[1].text_input("Version", value="1", key="m_new_version")
        description = st.text_input("Description", key="m_new_description")
        config_text = st.text_area("Config (JSON, optional)", key="m_new_config", height=80, placeholder='{"alpha": 0.3}')
        config_error = st.empty()  # a JSON error shows right under the JSON field
        submitted = st.form_submit_button("Register model", type="primary")
        problem = st.empty()
    if not submitted:
        return
    config, error = create_form.parse_config(config_text)
    if error:
        config_error.error(f"Config: {html.plain_text(error)}", icon="🧾")
        return
    try:
        with ui.session() as s:
            model = registry.create_model(session=s, name=name, version=version, description=description, config=config)
    except ex.ExperimentError as exc:
        with problem.container():
            ui.show_error(exc)
        return
    for key in ("m_new_name", "m_new_version", "m_new_description", "m_new_config"):
        st.session_state.pop(key, None)
    earlier = [m.version for m in models if m.name == model.name]
    ui.flash(f"Model '{model.name}' version {model.version} registered"
             + (f" (earlier: {', '.join(earlier)})." if earlier else "."))
    st.rerun()


def _edit(models: list[Any]) -> None:
    by_id = {m.id: m for m in models}
    chosen = st.selectbox(
        "Model to edit",
        options=list(by_id),
        format_func=lambda mid: f"{by_id[mid].name} (v{by_id[mid].version}{'' if by_id[mid].is_active else ', retired'})",
        key="m_edit_choice",
    )
    model = by_id[chosen]
    with st.form(f"model_edit_{model.id}", border=True):
        cols = st.columns([3, 1])
        name = cols[0].text_input("Name", value=model.name, key=f"m_name_{model.id}")
        version = cols[1].text_input("Version", value=model.version, key=f"m_version_{model.id}")
        description = st.text_input("Description", value=model.description, key=f"m_description_{model.id}")
        config_text = st.text_area(
            "Config (JSON)", value=json.dumps(model.config, indent=2) if model.config else "",
            key=f"m_config_{model.id}", height=100,
        )
        config_error = st.empty()  # a JSON error shows right under the JSON field; the fields keep what was typed
        save = st.form_submit_button("Save changes", type="primary")
        problem = st.empty()
    if save:
        config, error = create_form.parse_config(config_text)
        if error:
            config_error.error(f"Config: {html.plain_text(error)}", icon="🧾")
        else:
            try:
                with ui.session() as s:
                    registry.update_model(
                        session=s, model_id=model.id, name=name, version=version, description=description, config=config
                    )
            except ex.ExperimentError as exc:
                with problem.container():
                    ui.show_error(exc)
            else:
                ui.flash(f"Model '{name}' saved.")
                st.rerun()
    cols = st.columns(2, vertical_alignment="center")
    if model.is_active:
        confirm = cols[1].checkbox("Yes, retire it", key=f"m_retire_sure_{model.id}")
        if cols[0].button("Retire", icon=":material/archive:", key=f"m_retire_{model.id}", disabled=not confirm,
                          help="Retired models are no longer offered for new variants; old experiments keep them."):
            with ui.session() as s:
                registry.retire_model(session=s, model_id=model.id)
            ui.flash(f"Model '{model.name}' retired.")
            st.rerun()
    elif cols[0].button("Reactivate", icon=":material/unarchive:", key=f"m_reactivate_{model.id}"):
        with ui.session() as s:
            registry.update_model(session=s, model_id=model.id, is_active=True)
        ui.flash(f"Model '{model.name}' is offered again.")
        st.rerun()


def body() -> None:
    st.title("🤖 Models")
    st.caption("The recommender models a variant can serve. The create form offers the active ones.")
    ui.read_only_notice()
    with ui.session() as s:
        models = registry.list_models(session=s, active_only=False)
    if models:
        _table(models)
    else:
        st.info("No models yet. Register the models you want to compare, then pick one per variant "
                "when you create an experiment.", icon="👋")
    if not ui.can_edit():
        return
    left, right = st.columns(2)
    with left:
        _register(models)
    with right:
        if models:
            st.markdown("**Edit or retire a model**")
            _edit(models)


if ui.start_page():
    ui.guarded(body)
