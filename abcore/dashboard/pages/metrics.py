"""Metrics: the registry of metric definitions (abcore.metrics): list, define, edit, archive/restore.

Editors change definitions; viewers read the list. Every problem abcore.metrics.validate_metric
finds is shown live, before the button is pressed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import streamlit as st

from abcore.dashboard import ui
from abcore.dashboard.views import html
from abcore.dashboard.views import metric_forms as mf
from abcore.metrics import (
    CAPPABLE,
    DIRECTIONS,
    KINDS,
    archive_metric,
    define_metric,
    list_metrics,
    update_metric,
)

NEW = "md_"  # widget keys of the "define a new metric" form
EDIT = "me_"  # widget keys of the edit form
LOADED = "mt_loaded"  # (id, updated_at) of the definition the edit widgets were filled from
DEFAULTS: dict[str, Any] = {
    "name": "", "description": "", "kind": "binomial", "direction": "increase", "numerator": None,
    "denominator": None, "quantile": 0.95, "window_hours": None, "delay_hours": 0.0, "cap": "none",
    "cap_upper": None, "cap_lower": None, "min_effect_pct": None,
}


def _initial(row: Any) -> dict[str, Any]:
    """The form values of a stored definition."""
    values = {key: getattr(row, key, DEFAULTS[key]) for key in DEFAULTS if key != "min_effect_pct"}
    values["delay_hours"] = float(row.delay_hours or 0.0)
    values["cap"] = row.cap or "none"
    if values["quantile"] is None:
        values["quantile"] = DEFAULTS["quantile"]
    mde = row.min_detectable_effect
    values["min_effect_pct"] = None if mde is None else round(float(mde) * 100, 9)
    return values


def _fields(prefix: str, initial: Mapping[str, Any], event_names: list[str], *, editing: bool) -> dict[str, Any]:
    """Draw the definition's widgets (kind-dependent ones only for their kind); return the typed values."""
    for key, value in initial.items():
        st.session_state.setdefault(f"{prefix}{key}", value)
    k = lambda field: f"{prefix}{field}"  # noqa: E731 - a short key builder
    cols = st.columns([2, 3])
    name = cols[0].text_input("Name (the events' metric_name)", key=k("name"), max_chars=200, disabled=editing,
                              placeholder="latency_ms",
                              help="Experiments and events refer to a metric by its name, so it cannot be changed."
                              if editing else None)
    description = cols[1].text_input("Description", key=k("description"), placeholder="What one user's value is")
    cols = st.columns([2, 3])
    kind = cols[0].selectbox("Kind", list(KINDS), key=k("kind"), format_func=mf.KIND_NAMES.get)
    cols[0].caption(KINDS[kind])
    direction = cols[1].radio("Which way is better?", list(DIRECTIONS), key=k("direction"), horizontal=True,
                              format_func=mf.direction_label)
    numerator = denominator = quantile = None
    if kind == "ratio":
        options = sorted(set(event_names) | {v for v in (st.session_state.get(k("numerator")),
                                                         st.session_state.get(k("denominator"))) if v})
        cols = st.columns(2)
        numerator = cols[0].selectbox("Numerator (an event metric)", options, key=k("numerator"),
                                      accept_new_options=True, placeholder="e.g. revenue")
        denominator = cols[1].selectbox("Denominator (an event metric)", options, key=k("denominator"),
                                        accept_new_options=True, placeholder="e.g. sessions")
    if kind == "quantile":
        quantile = st.number_input("Quantile (between 0 and 1, e.g. 0.5, 0.95, 0.99)", key=k("quantile"),
                                   value=None, step=0.01, format="%.3f")
    cols = st.columns(2)
    window = cols[0].number_input("Window (hours after first exposure; empty = until the end)", key=k("window_hours"),
                                  value=None, step=1.0, format="%g")
    delay = cols[1].number_input("Delay (hours after first exposure before events count)", key=k("delay_hours"),
                                 value=None, step=1.0, format="%g")
    cap = cap_upper = cap_lower = None
    if kind in CAPPABLE:
        cols = st.columns(3)
        choice = cols[0].selectbox("Capping", list(mf.CAP_NAMES), key=k("cap"), format_func=mf.CAP_NAMES.get,
                                   help="Absolute: clip each user's value to [lower, upper]. Percentiles: the bounds "
                                        "are quantiles (e.g. 0.99) of the per-user values pooled over all variants.")
        cap = None if choice == "none" else choice
        if cap is not None:
            unit = "a quantile, e.g. 0.99" if cap == "percentile" else "a value"
            cap_upper = cols[1].number_input(f"Upper cap ({unit})", key=k("cap_upper"), value=None, format="%g")
            cap_lower = cols[2].number_input("Lower cap (optional)", key=k("cap_lower"), value=None, format="%g")
    mde = st.number_input("Minimum detectable effect (relative %, optional: the default threshold to ship)",
                          key=k("min_effect_pct"), value=None, step=0.5, format="%g")
    return mf.metric_values(
        name=name or "", kind=kind, direction=direction, description=description or "", numerator=numerator,
        denominator=denominator, quantile=quantile, window_hours=window, delay_hours=delay, cap=cap,
        cap_upper=cap_upper, cap_lower=cap_lower, min_effect_pct=mde,
    )


def _problems(key: str, problems: list[str], heading: str) -> None:
    with st.container(key=key):
        if problems:
            st.markdown(f"**{heading}**\n" + "\n".join(f"- {html.plain_text(p)}" for p in problems))
        else:
            st.success("The definition checks out.", icon="✅")


def _clear(prefix: str) -> None:
    for key in list(st.session_state.keys()):
        if str(key).startswith(prefix):
            del st.session_state[key]


def _define(rows: list[Any], event_names: list[str]) -> None:
    st.subheader("Define a new metric")
    values = _fields(NEW, DEFAULTS, event_names, editing=False)
    problems = mf.define_problems(values, [r.name for r in rows])
    _problems("md_problems", problems, "Before you can define it:")
    if st.button("Define metric", type="primary", key="md_submit", disabled=bool(problems)):
        try:
            with ui.session() as s:
                row = define_metric(session=s, data=values)
        except ValueError as exc:
            st.error(html.plain_text(exc), icon="⚠️")
        else:
            _clear(NEW)
            ui.flash(f"Metric '{row.name}' defined ({mf.direction_words(row.direction)}).")
            st.rerun()


def _edit(rows: list[Any], event_names: list[str]) -> None:
    st.subheader("Edit a metric")
    by_name = {r.name: r for r in rows}
    picked = st.selectbox("Metric", list(by_name), key="mt_pick", index=None, placeholder="Choose a metric to edit",
                          format_func=lambda n: f"{n} (archived)" if by_name[n].archived else n)
    if picked is None:
        return
    row = by_name[picked]
    marker = (row.id, row.updated_at.isoformat())
    if st.session_state.get(LOADED) != marker:  # another metric, or it changed: fill the widgets from the store
        _clear(EDIT)
        st.session_state[LOADED] = marker
    values = _fields(EDIT, _initial(row), [n for n in event_names if n != row.name], editing=True)
    values["name"] = row.name
    problems = mf.define_problems(values, list(by_name), editing=row.name)
    _problems("me_problems", problems, "Before you can save the changes:")
    cols = st.columns([1, 1, 4])
    if cols[0].button("Save changes", type="primary", key="me_save", disabled=bool(problems)):
        try:
            with ui.session() as s:
                update_metric(session=s, name=row.name, changes=values)
        except ValueError as exc:
            st.error(html.plain_text(exc), icon="⚠️")
        else:
            ui.flash(f"Metric '{row.name}' saved.")
            st.rerun()
    label, icon = ("Restore", ":material/unarchive:") if row.archived else ("Archive", ":material/archive:")
    if cols[1].button(label, icon=icon, key="me_archive",
                      help="Archived metrics are not offered in the create form; analyses still use them."):
        with ui.session() as s:
            archive_metric(session=s, name=row.name, archived=not row.archived)
        ui.flash(f"Metric '{row.name}' {'restored' if row.archived else 'archived'}.")
        st.rerun()


def body() -> None:
    st.title("📏 Metrics")
    st.caption("What each metric means: one user's value, which way is better, the window after exposure and the "
               "capping. Experiments pick metrics by name; every outcome colour and verdict reads this definition.")
    editable = ui.can_edit()
    ui.read_only_notice()
    with ui.session() as s:
        rows = list_metrics(session=s, include_archived=True)
    with st.container(key="mt_kinds"):
        st.markdown("**Kinds**\n" + "\n".join(f"- {text}" for text in KINDS.values()))
    with st.container(key="mt_table"):
        if rows:
            st.table(pd.DataFrame(mf.metric_table_rows(rows)).set_index("Name"))
        else:
            st.info("No metrics are defined yet." + (" Define the first one below." if editable else ""), icon="📏")
    if not editable:
        st.caption("You need the editor role to define, edit or archive metrics.")
        return
    event_names = [r.name for r in rows if r.kind != "ratio"]
    _define(rows, event_names)
    st.divider()
    if rows:
        _edit(rows, event_names)


if ui.start_page():
    ui.guarded(body)
