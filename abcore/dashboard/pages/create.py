"""Create experiment: the design form (what, variants, who enters, how it is judged, stopping rules). Saves a draft.

The page lays out widgets; parsing, checks and the sample-size plan are in :mod:`abcore.dashboard.views`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from abcore import experiments as ex
from abcore import formatting as fmt
from abcore.dashboard import ui, watch_ui
from abcore.dashboard.views import create_form, forms, html, layer_view, sample_size
from abcore.dashboard.views import metric_forms as mf
from abcore.experiments.ml_models import list_models
from abcore.metrics import list_metrics

ROWS_KEY = "variant_rows"
FORM_PREFIXES = ("c_", "v_", "targeting_", "plan_", "crit_")


# "— no model —" is a real, selected option (a None value would leave the box empty, showing a placeholder)
NO_MODEL = 0


def _rows() -> list[create_form.VariantRow]:
    if ROWS_KEY not in st.session_state:
        st.session_state[ROWS_KEY] = create_form.initial_rows()
    return st.session_state[ROWS_KEY]


def _add_row() -> None:
    st.session_state[ROWS_KEY] = create_form.add_row(_rows())


def _remove_row(row_id: int) -> None:
    st.session_state[ROWS_KEY] = create_form.remove_row(_rows(), row_id)
    for prefix in ("v_name_", "v_model_", "v_alloc_", "v_config_"):
        st.session_state.pop(f"{prefix}{row_id}", None)


def _even_split() -> None:
    rows = _rows()
    for row, pct in zip(rows, create_form.even_split(len(rows)), strict=True):
        st.session_state[f"v_alloc_{row.id}"] = pct


def _reset_form() -> None:
    for key in list(st.session_state.keys()):
        if key == ROWS_KEY or str(key).startswith(FORM_PREFIXES):
            del st.session_state[key]


def _use_plan(per_variant: int) -> None:
    st.session_state["crit_min_samples"] = int(per_variant)


def _variant_rows(models: list[Any], disabled: bool = False) -> list[create_form.VariantRow]:
    """Draw the rows (read only when ``disabled``); returns them with the values the user typed."""
    model_names = {m.id: f"{m.name} (v{m.version})" for m in models}
    rows = _rows()
    header = st.columns([3, 3, 2, 4, 1])
    for col, label in zip(header, ("Variant name", "Model", "Allocation %", "Config (JSON, optional)", ""), strict=True):
        col.caption(f"**{label}**" if label else "")
    current: list[create_form.VariantRow] = []
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
            "Allocation %", min_value=0.0, max_value=100.0, step=1.0, format=create_form.ALLOCATION_FORMAT,
            key=f"v_alloc_{row.id}", label_visibility="collapsed", disabled=disabled,
        )
        cols[3].text_input(
            "Config", key=f"v_config_{row.id}", label_visibility="collapsed", placeholder='{"weight": 0.5}',
            disabled=disabled,
        )
        cols[4].button(  # the label is the accessible name; TRASH_CSS hides it visually (an empty label reads "delete icon")
            f"Remove variant {index + 1}", icon=":material/delete:", key=f"v_remove_{row.id}",
            help=f"Remove variant {index + 1}",
            disabled=disabled or len(rows) <= create_form.MIN_VARIANTS, on_click=_remove_row, args=(row.id,),
        )
        values = create_form.VariantRow(
            id=row.id,
            name=st.session_state[f"v_name_{row.id}"] or "",
            model_id=st.session_state[f"v_model_{row.id}"] or None,
            allocation_pct=float(st.session_state[f"v_alloc_{row.id}"] or 0.0),
            config_text=st.session_state[f"v_config_{row.id}"] or "",
        )
        _, error = create_form.parse_config(values.config_text)
        if error:
            st.error(html.plain_text(f"Config of '{values.name or index + 1}': {error}"), icon="🧾")
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
    """The create page: five sections, the live problems list and the Create button (editors only)."""
    st.html(TRASH_CSS)
    st.title("➕ Create experiment")
    st.caption("Design an experiment; it is saved as a **draft** that you start from the Experiments page.")
    ro = not ui.can_edit()  # viewers see the form read only, without the Create button
    if ro:
        st.info("You need the **editor** role to create experiments: the form below is read only.", icon="🔒")
    with ui.session() as s:
        models = list_models(session=s, active_only=True)
    metrics, directions = _metric_registry()
    _what_section(ro)
    rows = _variants_section(models, ro)
    targeting_rows = _who_section(ro)
    direction = _judge_section(metrics, directions, ro)
    _plan_box(rows, ro)
    with st.container(border=True, key="c_watch_box"):
        st.markdown("**Automated stopping rules** (applied by `abcore watch`)")
        auto_stop = watch_ui.rules_inputs("c_watch_", disabled=ro)
    form = create_form.form_from_state(st.session_state, rows=rows, targeting_rows=targeting_rows,
                                       direction=direction, created_by=ui.actor())
    problems = create_form.form_problems(form) + ex.validate_auto_stop(auto_stop)
    with ui.session() as s:  # checked live, with the other problems, not only after Create
        existing = [e.name for e in ex.list_experiments(session=s, include_archived=True)]
    problems += create_form.duplicate_name_problems(form.name, existing)
    st.divider()
    if not ro:
        _submit(form, auto_stop, problems)


def _what_section(ro: bool) -> None:
    """1 · name, description and hypothesis."""
    st.subheader("1 · What are you testing?")
    st.text_input("Name", key="c_name", placeholder="Algorithm weighting vs. engagement boost", max_chars=200,
                  disabled=ro)
    st.text_area("Description", key="c_description", height=80, placeholder="What changes for users?", disabled=ro)
    st.text_area("Hypothesis", key="c_hypothesis", height=80,
                 placeholder="If we ..., then <metric> will increase because ...", disabled=ro)


def _variants_section(models: list[Any], ro: bool) -> list[create_form.VariantRow]:
    """2 · the variant rows with their tools and the live allocation total; returns the rows as typed."""
    st.subheader("2 · Variants")
    kinds = {"ab": "A/B test: the variants split the users", "interleaving": "Interleaving: the variants are rankers "
             "merged in one list per user (abcore.assign.interleave)"}
    st.radio("What do the variants compare?", list(kinds), format_func=kinds.__getitem__, key="c_kind", disabled=ro)
    if st.session_state.get("c_kind") == "interleaving":
        st.selectbox("Interleaving method", ["team_draft", "balanced", "probabilistic"], key="c_interleaving_method",
                     disabled=ro, help="team_draft (default; 2 or more rankers), balanced (exactly 2), probabilistic")
    if not models:
        st.caption("No models are registered yet – register them on the **Models** page to pick one per variant.")
    rows = _variant_rows(models, disabled=ro)
    tools = st.columns([1, 1, 4])
    tools[0].button("Add variant", icon=":material/add:", key="add_variant", on_click=_add_row, disabled=ro)
    tools[1].button("Split evenly", icon=":material/balance:", key="split_evenly", on_click=_even_split, disabled=ro)
    total = create_form.allocation_total(r.allocation_pct for r in rows)
    with st.container(key="allocation_total"):
        st.markdown(create_form.allocation_message(total))
    st.caption("The first variant is the control.")
    return rows


def _who_section(ro: bool) -> list[dict[str, Any]]:
    """3 · traffic share, targeting rules and the user-id list; returns the targeting table's rows."""
    st.subheader("3 · Who enters?")
    st.slider("Share of eligible traffic that enters (%)", 1, 100, 100, key="c_traffic_pct", disabled=ro)
    _layer_picker(ro)
    ops = create_form.TARGETING_OPS
    # In a popover: the browser loads the data grid's code (the heaviest widget here) only when it is opened,
    # so the form draws without it; the rules typed are listed under the button in words.
    box = st.popover("Targeting rules (all must hold)", icon=":material/filter_alt:", disabled=ro)
    box.caption("Lists are comma-separated; comparisons need a number.")
    editor = box.data_editor(
        pd.DataFrame({"attribute": pd.Series(dtype="str"), "op": pd.Series(dtype="str"), "value": pd.Series(dtype="str")}),
        num_rows="dynamic",
        key="targeting_rules",
        width="stretch",
        disabled=ro,
        column_config={
            "attribute": st.column_config.TextColumn("Attribute", help="e.g. country, platform, age"),
            "op": st.column_config.SelectboxColumn(
                "Operator", options=list(ops), help=", ".join(f"{k}: {v}" for k, v in ops.items())
            ),
            "value": st.column_config.TextColumn("Value", help="DE · DE, FR, AT · 18"),
        },
    )
    rows = [{k: (None if pd.isna(v) else v) for k, v in record.items()} for record in editor.to_dict("records")]
    rules, _ = create_form.parse_targeting(rows)
    st.caption("Targeting: " + (" · ".join(html.plain_text(create_form.describe_rule(r)) for r in rules)
                                or "every eligible user (no rule)"))
    st.text_area("Only these user ids (optional, one per line)", key="targeting_user_ids", height=68, disabled=ro)
    return rows


def _layer_picker(ro: bool) -> None:
    """The layer (surface) the experiment joins, the share it claims, and the layer's ranges as a live bar."""
    with ui.session() as s:
        usages = {u.layer.name: u for u in (ex.layer_usage(session=s, ref=x) for x in ex.list_layers(session=s))}
    if not usages:
        return
    cols = st.columns([2, 1])
    layer = cols[0].selectbox("Layer (experiments of a layer never share a user)", ["", *usages], key="c_layer",
                              format_func=lambda n: n or "No layer", disabled=ro)
    if not layer:
        return
    share = cols[1].number_input("Share of the layer (%)", min_value=0.01, max_value=100.0, value=min(100.0, max(
        usages[layer].free_pct, 0.01)), step=5.0, key="c_layer_share", disabled=ro)
    st.html(layer_view.bar_html(layer_view.segments(usages[layer].holders, float(share))))
    problem = layer_view.claim_problem(usages[layer].free_pct, float(share))
    st.caption(problem or f"{usages[layer].free_pct:g} % of the layer is free; the hatched part is what this experiment "
                          "would hold once started.")


def _judge_section(metrics: list[str], directions: dict[str, str], ro: bool) -> str:
    """4 · metrics, direction, minimum effect, confidence, minimum duration and samples; returns the
    direction in force (the metric definition's when the primary metric has one, else the one picked)."""
    st.subheader("4 · How do we judge it?")
    _metric_pickers(metrics, directions, ro)
    primary = st.session_state.get("c_primary_metric") or ""
    cols = st.columns(3)
    defined_direction = directions.get(primary)
    if defined_direction is None:  # no definition: the criterion's direction is the one the analysis uses
        cols[0].radio("Direction", create_form.DIRECTIONS, key="crit_direction", horizontal=True, disabled=ro,
                      format_func=lambda d: "↑ increase" if d == "increase" else "↓ decrease")
        direction = st.session_state.get("crit_direction", "increase")
    else:  # the definition decides which way is better (abcore.analysis.pipeline reads it, not the criterion)
        with cols[0].container(key="crit_direction_defined"):
            st.markdown(f"**Direction**  \n{mf.direction_label(defined_direction)} "
                        f"(from the definition of `{primary}`)")
        direction = defined_direction
    cols[1].number_input("Minimum relative effect (%)", min_value=0.0, max_value=1000.0, value=2.0, step=0.5,
                         key="crit_min_effect", disabled=ro)
    cols[2].radio("Confidence", create_form.CONFIDENCE_LEVELS, index=1, key="crit_confidence", horizontal=True,
                  format_func=lambda c: f"{c:.0%}", disabled=ro)
    cols = st.columns(2)
    cols[0].number_input("Minimum duration (days)", min_value=0, value=7, step=1, key="crit_min_days", disabled=ro)
    # seeded in session state, no value=: "Use as minimum samples per variant" sets it without a widget warning
    st.session_state.setdefault("crit_min_samples", 0)
    cols[1].number_input("Minimum samples per variant", min_value=0, step=100, key="crit_min_samples", disabled=ro)
    return direction


def _plan_box(rows: list[create_form.VariantRow], ro: bool) -> None:
    """The sample size and run time of the form's design, with a button to use it as the minimum samples."""
    with st.container(border=True, key="plan_box"):
        in_layer = f", at {float(st.session_state.get('c_layer_share', 100.0)):g} % of layer {st.session_state['c_layer']}" if (
            st.session_state.get("c_layer")) else ""
        st.markdown(f"**Sample size and run time** (conversion metric, 80 % power{html.plain_text(in_layer)})")
        cols = st.columns(4)
        cols[0].number_input("Baseline conversion rate (%)", min_value=0.01, max_value=99.99, value=10.0,
                             step=0.5, key="plan_baseline", disabled=ro)
        cols[1].number_input("Daily eligible users", min_value=0, value=1000, step=100, key="plan_daily", disabled=ro)
        state = st.session_state
        plan = sample_size.design_plan(
            baseline_pct=float(state["plan_baseline"]),
            min_effect_pct=float(state.get("crit_min_effect", 2.0)),
            confidence=float(state.get("crit_confidence", 0.95)),
            allocations=[r.allocation_pct for r in rows],
            daily_traffic=float(state["plan_daily"]),
            traffic_pct=float(state.get("c_traffic_pct", 100)),
            layer_share_pct=float(state.get("c_layer_share", 100.0)) if state.get("c_layer") else 100.0,
        )
        if plan.error:
            st.caption(f"Cannot compute: {plan.error}. Set a minimum effect above 0 %.")
        else:  # text, not st.metric: no extra chunk for the browser to load before the form is drawn
            run_time = forms.format_days(plan.days) if plan.days else "no traffic"
            st.markdown(f"Users per variant **{fmt.format_int(plan.per_variant)}** &nbsp;·&nbsp; "
                        f"Estimated run time **{run_time}**")
            st.button("Use as minimum samples per variant", key="plan_use", on_click=_use_plan,
                      args=(plan.per_variant,), disabled=ro)


def _submit(form: create_form.CreateForm, auto_stop: dict[str, Any], problems: list[str]) -> None:
    """The problems still open (or "Everything checks out") and the Create button: saves the draft and
    opens the Experiments page on the Draft tab."""
    with st.container(key="form_problems"):
        if problems:
            st.markdown("**Before you can create it:**\n" + "\n".join(f"- {html.plain_text(p)}" for p in problems))
        else:
            st.success("Everything checks out.", icon="✅")
    if st.button("Create experiment", type="primary", key="create_experiment", disabled=bool(problems)):
        try:
            data = create_form.build_experiment_create(form)
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
