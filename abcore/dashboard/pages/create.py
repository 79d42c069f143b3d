"""Create experiment: the design form (seed 000's variant rows, seed 004's wizard fields). Saves a draft."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore.dashboard import ui, watch_ui
from abcore.dashboard.views import forms
from abcore.dashboard.views import metric_forms as mf
from abcore.experiments.ml_models import list_models
from abcore.metrics import list_metrics

ROWS_KEY = "variant_rows"
FORM_PREFIXES = ("c_", "v_", "targeting_", "plan_", "crit_")


# "— no model —" is a real, selected option (a None value would leave the box empty, showing a placeholder)
NO_MODEL = 0


def _rows() -> list[forms.VariantRow]:
    if ROWS_KEY not in st.session_state:
        st.session_state[ROWS_KEY] = forms.initial_rows()
    return st.session_state[ROWS_KEY]


def _add_row() -> None:
    st.session_state[ROWS_KEY] = forms.add_row(_rows())


def _remove_row(row_id: int) -> None:
    st.session_state[ROWS_KEY] = forms.remove_row(_rows(), row_id)
    for prefix in ("v_name_", "v_model_", "v_alloc_", "v_config_"):
        st.session_state.pop(f"{prefix}{row_id}", None)


def _even_split() -> None:
    rows = _rows()
    for row, pct in zip(rows, forms.even_split(len(rows)), strict=True):
        st.session_state[f"v_alloc_{row.id}"] = pct


def _reset_form() -> None:
    for key in list(st.session_state.keys()):
        if key == ROWS_KEY or str(key).startswith(FORM_PREFIXES):
            del st.session_state[key]


def _use_plan(per_variant: int) -> None:
    st.session_state["crit_min_samples"] = int(per_variant)


def _variant_rows(models: list[Any], disabled: bool = False) -> list[forms.VariantRow]:
    """Draw the rows (read only when ``disabled``); returns them with the values the user typed."""
    model_names = {m.id: f"{m.name} (v{m.version})" for m in models}
    rows = _rows()
    header = st.columns([3, 3, 2, 4, 1])
    for col, label in zip(header, ("Variant name", "Model", "Allocation %", "Config (JSON, optional)", ""), strict=True):
        col.caption(f"**{label}**" if label else "")
    current: list[forms.VariantRow] = []
    for index, row in enumerate(rows):
        # Seed widget state once; afterwards the widget owns it (no value= so keys survive removals).
        st.session_state.setdefault(f"v_name_{row.id}", row.name)
        st.session_state.setdefault(f"v_model_{row.id}", row.model_id or NO_MODEL)
        st.session_state.setdefault(f"v_alloc_{row.id}", float(row.allocation_pct))
        st.session_state.setdefault(f"v_config_{row.id}", row.config_text)
        if st.session_state[f"v_model_{row.id}"] not in model_names:
            st.session_state[f"v_model_{row.id}"] = NO_MODEL  # none chosen, or the model was retired meanwhile
        cols = st.columns([3, 3, 2, 4, 1], vertical_alignment="top")
        cols[0].text_input(
            "Variant name", key=f"v_name_{row.id}", label_visibility="collapsed",
            placeholder="control" if index == 0 else "treatment", disabled=disabled,
        )
        cols[1].selectbox(
            "Model",
            options=[NO_MODEL, *model_names],
            format_func=lambda mid: "— no model —" if mid == NO_MODEL else model_names.get(mid, f"model {mid}"),
            key=f"v_model_{row.id}",
            label_visibility="collapsed",
            disabled=disabled,
        )
        cols[2].number_input(
            "Allocation %", min_value=0.0, max_value=100.0, step=1.0, format="%.2f",
            key=f"v_alloc_{row.id}", label_visibility="collapsed", disabled=disabled,
        )
        cols[3].text_input(
            "Config", key=f"v_config_{row.id}", label_visibility="collapsed", placeholder='{"weight": 0.5}',
            disabled=disabled,
        )
        cols[4].button(  # the label is the accessible name; TRASH_CSS hides it visually (an empty label reads "delete icon")
            f"Remove variant {index + 1}", icon=":material/delete:", key=f"v_remove_{row.id}",
            help=f"Remove variant {index + 1}",
            disabled=disabled or len(rows) <= forms.MIN_VARIANTS, on_click=_remove_row, args=(row.id,),
        )
        values = forms.VariantRow(
            id=row.id,
            name=st.session_state[f"v_name_{row.id}"] or "",
            model_id=st.session_state[f"v_model_{row.id}"] or None,
            allocation_pct=float(st.session_state[f"v_alloc_{row.id}"] or 0.0),
            config_text=st.session_state[f"v_config_{row.id}"] or "",
        )
        _, error = forms.parse_config(values.config_text)
        if error:
            st.error(f"Config of '{values.name or index + 1}': {error}", icon="🧾")
        current.append(values)
    return current


def _metric_registry() -> tuple[list[str], dict[str, str]]:
    """The pickers' options (defined, not archived metrics; plus the default "conversion") and the
    direction of every defined metric, archived ones included (a typed name may be one)."""
    with ui.session() as s:
        everything = list_metrics(session=s, include_archived=True)
    directions = {m.name: m.direction for m in everything}
    return mf.metric_options([m.name for m in everything if not m.archived]), directions


def _metric_pickers(metrics: list[str], directions: dict[str, str], ro: bool) -> None:
    """Primary, secondary and guardrail metrics from the registry, each shown with its direction."""
    offered = {name: directions[name] for name in metrics if name in directions}  # typed names map to themselves
    label = lambda name: mf.option_label(name, offered)  # noqa: E731 - the pickers' entry text
    cols = st.columns(3)
    # accept_new_options: typing a name not in the registry still works, as it always did (warned below)
    cols[0].selectbox("Primary metric", options=metrics, key="c_primary_metric", accept_new_options=True,
                      index=metrics.index("conversion") if "conversion" in metrics else 0, format_func=label,
                      disabled=ro)
    cols[1].multiselect("Secondary metrics", options=metrics, key="c_secondary", accept_new_options=True,
                        format_func=label, disabled=ro)
    cols[2].multiselect("Guardrail metrics", options=metrics, key="c_guardrails", accept_new_options=True,
                        format_func=label, disabled=ro,
                        help="Metrics that must not get worse (e.g. latency, errors).")
    chosen = [st.session_state.get("c_primary_metric") or "", *st.session_state.get("c_secondary", []),
              *st.session_state.get("c_guardrails", [])]
    with st.container(key="c_metric_notes"):
        warning = mf.undefined_warning(chosen, directions)
        if warning:
            st.warning(warning, icon="📏")
        st.page_link("pages/metrics.py", label="Define a new metric on the Metrics page", icon="📏")


# Screen-reader-only text (the usual "visually hidden" pattern) for the trash buttons' labels.
TRASH_CSS = (
    "<style>[class*='st-key-v_remove_'] button [data-testid='stMarkdownContainer']"
    "{position:absolute;width:1px;height:1px;padding:0;margin:-1px;overflow:hidden;clip:rect(0,0,0,0);"
    "white-space:nowrap;border:0}</style>"
)


def body() -> None:
    st.html(TRASH_CSS)
    st.title("➕ Create experiment")
    st.caption("Design an experiment; it is saved as a **draft** that you start from the Experiments page.")
    editable = ui.can_edit()
    ro = not editable  # viewers see the form read only, without the Create button
    if ro:
        st.info("You need the **editor** role to create experiments: the form below is read only.", icon="🔒")
    with ui.session() as s:
        models = list_models(session=s, active_only=True)
    metrics, directions = _metric_registry()

    st.subheader("1 · What are you testing?")
    st.text_input("Name", key="c_name", placeholder="Algorithm weighting vs. engagement boost", max_chars=200,
                  disabled=ro)
    st.text_area("Description", key="c_description", height=80, placeholder="What changes for users?", disabled=ro)
    st.text_area("Hypothesis", key="c_hypothesis", height=80,
                 placeholder="If we ..., then <metric> will increase because ...", disabled=ro)

    st.subheader("2 · Variants")
    if not models:
        st.caption("No models are registered yet – register them on the **Models** page to pick one per variant.")
    rows = _variant_rows(models, disabled=ro)
    tools = st.columns([1, 1, 4])
    tools[0].button("Add variant", icon=":material/add:", key="add_variant", on_click=_add_row, disabled=ro)
    tools[1].button("Split evenly", icon=":material/balance:", key="split_evenly", on_click=_even_split, disabled=ro)
    total = forms.allocation_total(r.allocation_pct for r in rows)
    with st.container(key="allocation_total"):
        st.markdown(forms.allocation_message(total))
    st.caption("The first variant is the control.")

    st.subheader("3 · Who enters?")
    st.slider("Share of eligible traffic that enters (%)", 1, 100, 100, key="c_traffic_pct", disabled=ro)
    st.caption("Targeting rules (all must hold). Lists are comma-separated; comparisons need a number.")
    editor = st.data_editor(
        pd.DataFrame({"attribute": pd.Series(dtype="str"), "op": pd.Series(dtype="str"), "value": pd.Series(dtype="str")}),
        num_rows="dynamic",
        key="targeting_rules",
        width="stretch",
        disabled=ro,
        column_config={
            "attribute": st.column_config.TextColumn("Attribute", help="e.g. country, platform, age"),
            "op": st.column_config.SelectboxColumn(
                "Operator", options=list(forms.TARGETING_OPS), help=", ".join(f"{k}: {v}" for k, v in forms.TARGETING_OPS.items())
            ),
            "value": st.column_config.TextColumn("Value", help="DE · DE, FR, AT · 18"),
        },
    )
    st.text_area("Only these user ids (optional, one per line)", key="targeting_user_ids", height=68, disabled=ro)
    targeting_rows = [
        {k: (None if pd.isna(v) else v) for k, v in record.items()} for record in editor.to_dict("records")
    ]

    st.subheader("4 · How do we judge it?")
    _metric_pickers(metrics, directions, ro)
    primary = st.session_state.get("c_primary_metric") or ""
    cols = st.columns(3)
    defined_direction = directions.get(primary)
    if defined_direction is None:  # no definition: the criterion's direction is the one the analysis uses
        cols[0].radio("Direction", forms.DIRECTIONS, key="crit_direction", horizontal=True, disabled=ro,
                      format_func=lambda d: "↑ increase" if d == "increase" else "↓ decrease")
        direction = st.session_state.get("crit_direction", "increase")
    else:  # the definition decides which way is better (abcore.analysis.pipeline reads it, not the criterion)
        with cols[0].container(key="crit_direction_defined"):
            st.markdown(f"**Direction**  \n{mf.direction_label(defined_direction)} "
                        f"(from the definition of `{primary}`)")
        direction = defined_direction
    cols[1].number_input("Minimum relative effect (%)", min_value=0.0, max_value=1000.0, value=2.0, step=0.5,
                         key="crit_min_effect", disabled=ro)
    cols[2].radio("Confidence", forms.CONFIDENCE_LEVELS, index=1, key="crit_confidence", horizontal=True,
                  format_func=lambda c: f"{c:.0%}", disabled=ro)
    cols = st.columns(2)
    cols[0].number_input("Minimum duration (days)", min_value=0, value=7, step=1, key="crit_min_days", disabled=ro)
    # seeded in session state, no value=: "Use as minimum samples per variant" sets it without a widget warning
    st.session_state.setdefault("crit_min_samples", 0)
    cols[1].number_input("Minimum samples per variant", min_value=0, step=100, key="crit_min_samples", disabled=ro)

    with st.container(border=True, key="plan_box"):
        st.markdown("**Sample size and run time** (conversion metric, 80 % power)")
        cols = st.columns(4)
        cols[0].number_input("Baseline conversion rate (%)", min_value=0.01, max_value=99.99, value=10.0,
                             step=0.5, key="plan_baseline", disabled=ro)
        cols[1].number_input("Daily eligible users", min_value=0, value=1000, step=100, key="plan_daily", disabled=ro)
        effect = float(st.session_state.get("crit_min_effect", 2.0))
        smallest = min((r.allocation_pct for r in rows), default=0.0) / 100.0
        plan = forms.sample_plan(
            baseline=float(st.session_state["plan_baseline"]) / 100.0,
            mde=effect / 100.0,
            relative=True,
            alpha=1.0 - float(st.session_state.get("crit_confidence", 0.95)),
            n_variants=len(rows),
            daily_traffic=float(st.session_state["plan_daily"]),
            traffic_share=float(st.session_state.get("c_traffic_pct", 100)) / 100.0,
            smallest_allocation=smallest if smallest > 0 else None,
        )
        if plan.error:
            cols[2].metric("Users per variant", "–")
            st.caption(f"Cannot compute: {plan.error}. Set a minimum effect above 0 %.")
        else:
            cols[2].metric("Users per variant", forms.format_int(plan.per_variant))
            cols[3].metric("Estimated run time", forms.format_days(plan.days) if plan.days else "no traffic")
            st.button("Use as minimum samples per variant", key="plan_use", on_click=_use_plan,
                      args=(plan.per_variant,), disabled=ro)

    with st.container(border=True, key="c_watch_box"):
        st.markdown("**Automated stopping rules** (applied by `abcore watch`)")
        auto_stop = watch_ui.rules_inputs("c_watch_", disabled=ro)

    form = forms.CreateForm(
        name=st.session_state.get("c_name", ""),
        description=st.session_state.get("c_description", ""),
        hypothesis=st.session_state.get("c_hypothesis", ""),
        rows=rows,
        traffic_pct=float(st.session_state.get("c_traffic_pct", 100)),
        targeting_rows=targeting_rows,
        user_ids_text=st.session_state.get("targeting_user_ids", ""),
        primary_metric=st.session_state.get("c_primary_metric") or "",
        secondary_metrics=list(st.session_state.get("c_secondary", [])),
        guardrail_metrics=list(st.session_state.get("c_guardrails", [])),
        direction=direction,
        min_effect_pct=float(st.session_state.get("crit_min_effect", 2.0)),
        confidence=float(st.session_state.get("crit_confidence", 0.95)),
        min_duration_days=int(st.session_state.get("crit_min_days", 7)),
        min_samples_per_variant=int(st.session_state.get("crit_min_samples", 0)),
        created_by=ui.actor(),
    )
    problems = forms.form_problems(form) + ex.validate_auto_stop(auto_stop)
    with ui.session() as s:  # checked live, with the other problems, not only after Create
        problems += forms.duplicate_name_problems(form.name, [e.name for e in ex.list_experiments(session=s, include_archived=True)])
    st.divider()
    if ro:
        return
    with st.container(key="form_problems"):
        if problems:
            st.markdown("**Before you can create it:**\n" + "\n".join(f"- {p}" for p in problems))
        else:
            st.success("Everything checks out.", icon="✅")
    if st.button("Create experiment", type="primary", key="create_experiment", disabled=bool(problems)):
        try:
            data = forms.build_experiment_create(form)
            data.auto_stop = auto_stop
            with ui.session() as s:
                created = ex.create_experiment(session=s, data=data, actor=ui.actor())
        except ex.ExperimentError as exc:
            ui.show_error(exc)
        else:
            _reset_form()
            ui.flash(f"Draft '{created.name}' created. Start it from the Draft tab.")
            st.session_state[forms.OPEN_TAB_KEY] = "draft"  # the landing page opens the tab the draft is in
            st.switch_page("pages/experiments.py")


if ui.start_page():
    ui.guarded(body)
