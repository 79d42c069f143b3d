"""Layers: every layer's ranges (who holds what, what is free), creating a layer, and the holdouts."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore.dashboard import ui
from abcore.dashboard.views import html, layer_view
from abcore.experiments.layers import layer_names


def _layers() -> None:
    with ui.session() as s:
        usages = [ex.layer_usage(session=s, ref=layer) for layer in ex.list_layers(session=s)]
    if not usages:
        st.info("No layers yet. A layer is a surface (the home slate, the search results) whose experiments must not"
                " share users; create one below, then pick it in the create form.", icon="🧱")
    for usage in usages:
        with st.container(border=True, key=f"layer_{usage.layer.id}"):
            st.markdown(f"**{html.plain_text(usage.layer.name)}** · {usage.free_pct:g} % free"
                        + (f" — {html.plain_text(usage.layer.description)}" if usage.layer.description else ""))
            st.html(layer_view.bar_html(layer_view.segments(usage.holders)))
            if usage.holders:
                st.dataframe(pd.DataFrame([{"Experiment": h.name, "Status": h.status, "Share (%)": h.layer_share,
                                            "Ranges": " ".join(f"[{a}, {b})" for a, b in h.ranges)}
                                           for h in usage.holders]), hide_index=True, width="stretch")


def _create() -> None:
    with st.form("layer_create", border=True):
        st.markdown("**Create a layer** — its salt is fixed now; experiments in it never share a user")
        name = st.text_input("Name", key="l_new_name", placeholder="home_slate")
        description = st.text_input("Description", key="l_new_description")
        submitted = st.form_submit_button("Create layer", type="primary")
        problem = st.empty()
    if not submitted:
        return
    try:
        with ui.session() as s:
            layer = ex.create_layer(name, session=s, description=description, actor=ui.actor())
    except ex.ExperimentError as exc:
        with problem.container():
            ui.show_error(exc)
        return
    for key in ("l_new_name", "l_new_description"):
        st.session_state.pop(key, None)
    ui.flash(f"Layer '{layer.name}' created.")
    st.rerun()


def _holdouts() -> None:
    with ui.session() as s:
        rows = []
        for e in ex.list_experiments(session=s, include_archived=True):
            if e.kind != "holdout":
                continue
            _, covered = layer_names(s, e)
            share = next((v.allocation_pct for v in ex.get_variants(session=s, experiment_id=e.id) if v.name == "holdout"), None)
            overlap = ex.holdout_overlap(session=s, ref=e) if e.started_at else None
            rows.append({"Holdout": e.name, "Status": e.status, "Held out (%)": share,
                         "Covers": ", ".join(covered) if covered else "every experiment",
                         "Assigned before its start (held out)": "" if overlap is None else f"{overlap.held_before:,}"})
    st.subheader("Holdouts")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    else:
        st.caption("No holdouts. Create one with `abcore holdout create NAME --percent 5 --layer LAYER` or the"
                   " HTTP API; start, stop and analyse it like an experiment.")


def body() -> None:
    st.title("🧱 Layers")
    st.caption("Experiments of one layer hold disjoint ranges of its hash: a user is in at most one of them. "
               "Ranges are reserved when an experiment starts and released when it stops.")
    _layers()
    if ui.can_edit():
        _create()
    _holdouts()


if ui.start_page():
    ui.guarded(body)
