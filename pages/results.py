"""Results of one experiment: health, per-metric tables, recommendation, charts and CSV downloads.

Linkable: ``/results?experiment=<id or name>``. Aggregation runs in SQL (abcore.queries via
abcore.analysis); results are cached per experiment and its latest event id, so new data
is never hidden by the cache.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
import watch_ui
from abcore import experiments as ex
from abcore import forms, queries
from abcore.analysis import analyze
from abcore.config import database_url
from abcore.export import iter_csv

METHODS = {"frequentist": "Frequentist", "sequential": "Sequential (safe to peek)", "bayesian": "Bayesian"}
CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "None"}
REFRESH_SECONDS = 10
SENTIMENT_COLORS = {"positive": "#16a34a", "neutral": "#9ca3af", "negative": "#dc2626"}


@st.cache_data(show_spinner="Analysing…", max_entries=64)
def _analysis(url: str, experiment_id: int, latest_event: int, version: str, options: tuple[Any, ...]) -> Any:
    """analyze() cached on (database, experiment, latest event id, experiment version, options)."""
    method, correction, cuped, start, end, segment = options
    with ui.session() as s:
        return analyze(
            experiment_id, session=s, method=method, correction=correction, cuped=cuped,
            start=start, end=end, segment=segment or None, percentiles=False,
        )


@st.cache_data(show_spinner=False, max_entries=64)
def _assignments(url: str, experiment_id: int, latest_event: int) -> list[Any]:
    with ui.session() as s:
        return queries.assignments_per_day(session=s, experiment_id=experiment_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _distribution(url: str, experiment_id: int, latest_event: int, metric: str, window: tuple[Any, Any]) -> Any:
    with ui.session() as s:
        return queries.value_distribution(
            session=s, experiment_id=experiment_id, metric=metric, bins=30, start=window[0], end=window[1]
        )


@st.cache_data(show_spinner=False, max_entries=64, ttl=60)
def _segments(url: str, experiment_id: int) -> list[str]:
    with ui.session() as s:
        return queries.attribute_names(session=s, experiment_id=experiment_id)


def _csv_file(experiment_id: int, what: str, options: dict[str, Any]) -> Any:
    """A callable for st.download_button: streams the CSV from the database into a temp file on click."""

    def build() -> IO[bytes]:
        # Chunks go straight from the database cursor to disk; Streamlit reads the finished file.
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", newline="", suffix=".csv", delete=False) as out:
            for chunk in iter_csv(experiment=experiment_id, what=what, engine=ui.engine(), mode="safe",
                                  analyze_kwargs=options if what == "results" else None):
                out.write(chunk)
        handle = open(out.name, "rb")  # noqa: SIM115 - Streamlit reads it; a BufferedReader is what it accepts
        os.unlink(out.name)  # POSIX: the open handle keeps the data readable until it is closed
        return handle

    return build


def _pick_experiment(everything: list[Any]) -> Any | None:
    by_id = {e.id: e for e in everything}
    wanted = st.query_params.get("experiment")
    chosen_id = None
    if wanted:
        match = next((e for e in everything if str(e.id) == wanted or e.name == wanted), None)
        if match is None:
            st.warning(f"No experiment '{wanted}' – pick one below.", icon="🔎")
        else:
            chosen_id = match.id
    if chosen_id is not None and st.session_state.get("r_experiment") != chosen_id:
        st.session_state["r_experiment"] = chosen_id
    ids = list(by_id)
    if st.session_state.get("r_experiment") not in by_id:
        st.session_state.pop("r_experiment", None)
    picked = st.selectbox(
        "Experiment",
        options=ids,
        format_func=lambda i: f"{by_id[i].name} · {by_id[i].status}",
        key="r_experiment",
        placeholder="Choose an experiment",
        **({} if "r_experiment" in st.session_state else {"index": None}),
    )
    if picked is not None:
        st.query_params["experiment"] = str(picked)
    return by_id.get(picked)


def _health(results: Any) -> None:
    with st.container(key="r_health"):
        problems = [c for c in results.health if not c.ok]
        for check in problems:
            (st.error if check.severity == "error" else st.warning)(check.message, icon="🩺")
        for warning in results.warnings:
            st.warning(warning, icon="⚠️")
        if forms.health_level(results.health) == "ok" and not results.warnings:
            st.success("Healthy: " + " ".join(c.message for c in results.health), icon="🩺")


def _verdict(results: Any) -> None:
    label, color = forms.verdict_label(results.verdict.decision, results.verdict.variant)
    with st.container(border=True, key="r_verdict"):
        st.markdown(f"### :{color}[{label}]")
        st.markdown(results.verdict.reason)


def _forest(results: Any) -> go.Figure:
    rows = [r for r in results.metrics if pd.notna(r.test.lift)]
    labels = [f"{r.metric} · {r.variant}" for r in rows]
    lifts = [r.test.lift * 100 for r in rows]
    lows = [(r.test.lift - r.test.lift_ci_low) * 100 if pd.notna(r.test.lift_ci_low) else 0 for r in rows]
    highs = [(r.test.lift_ci_high - r.test.lift) * 100 if pd.notna(r.test.lift_ci_high) else 0 for r in rows]
    colors = ["#16a34a" if r.significant and r.test.lift > 0 else "#dc2626" if r.significant else "#6b7280" for r in rows]
    fig = go.Figure(go.Scatter(
        x=lifts, y=labels, mode="markers", marker={"size": 11, "color": colors},
        error_x={"type": "data", "symmetric": False, "array": highs, "arrayminus": lows, "thickness": 2},
        hovertemplate="%{y}: %{x:.2f}%<extra></extra>",
    ))
    fig.add_vline(x=0, line_dash="dash", line_color="#9ca3af")
    fig.update_layout(title="Relative lift vs. control (with confidence intervals)", xaxis_title="Lift (%)",
                      height=120 + 45 * max(1, len(rows)), margin={"t": 50, "b": 40, "l": 10, "r": 10})
    fig.update_yaxes(autorange="reversed")
    return fig


def _cumulative(results: Any, metric: str) -> tuple[go.Figure, go.Figure] | None:
    points = [p for p in results.daily if p.metric == metric]
    if not points:
        return None
    frame = pd.DataFrame([{"day": p.day, "variant": p.variant, "value": p.value, "lift": p.lift * 100} for p in points])
    value = px.line(frame, x="day", y="value", color="variant", markers=True,
                    title=f"Cumulative {metric} per variant")
    lift = px.line(frame.dropna(subset=["lift"]), x="day", y="lift", color="variant", markers=True,
                   title=f"Cumulative lift of {metric} vs. control (%)")
    lift.add_hline(y=0, line_dash="dash", line_color="#9ca3af")
    for fig in (value, lift):
        fig.update_layout(height=330, margin={"t": 50, "b": 30}, legend_title_text="")
    return value, lift


def _charts(experiment: Any, results: Any, latest: int, names: dict[int, str], window: tuple[Any, Any]) -> None:
    st.subheader("Charts")
    if any(pd.notna(r.test.lift) for r in results.metrics):
        st.plotly_chart(_forest(results), key="r_forest")
    else:
        st.caption("No lift to plot yet: every treatment needs users and data first.")
    metrics = [m for m, _ in forms.metrics_in_order(results)]
    if metrics:
        metric = st.selectbox("Metric for the charts over time", metrics, key="r_chart_metric")
        pair = _cumulative(results, metric)
        if pair:
            left, right = st.columns(2)
            left.plotly_chart(pair[0], key="r_cum_value")
            if any(trace.x is not None and len(trace.x) > 0 for trace in pair[1].data):
                right.plotly_chart(pair[1], key="r_cum_lift")
            else:
                right.caption("No cumulative lift yet: the treatments have no data.")
    url = database_url()
    continuous = [r.metric for r in results.metrics if r.kind == "mean"]
    left, right = st.columns(2)
    with left:
        if continuous:
            chosen = st.selectbox("Distribution of", sorted(set(continuous)), key="r_dist_metric")
            dist = _distribution(url, experiment.id, latest, chosen, window)
            if dist.edges:
                centers = [(a + b) / 2 for a, b in zip(dist.edges, dist.edges[1:], strict=False)]
                fig = go.Figure([go.Bar(x=centers, y=list(counts), name=names.get(vid, str(vid)), opacity=0.65)
                                 for vid, counts in dist.counts.items()])
                fig.update_layout(barmode="overlay", title=f"Distribution of {chosen} per variant",
                                  xaxis_title=chosen, yaxis_title="Events", height=330, margin={"t": 50, "b": 30})
                st.plotly_chart(fig, key="r_distribution")
        else:
            st.caption("No continuous metric to show a distribution for.")
    with right:
        per_day = _assignments(url, experiment.id, latest)
        if per_day:
            frame = pd.DataFrame([{"day": a.day, "variant": names.get(a.variant_id, str(a.variant_id)), "users": a.count}
                                  for a in per_day])
            fig = px.bar(frame, x="day", y="users", color="variant", barmode="group", title="Assignments per day")
            fig.update_layout(height=330, margin={"t": 50, "b": 30}, legend_title_text="")
            st.plotly_chart(fig, key="r_assignments")
        else:
            st.caption("No assignments yet.")
    feedback = results.feedback
    if any(sum(c.values()) for c in feedback.values()):
        frame = pd.DataFrame([{"variant": v, "sentiment": s, "count": n}
                              for v, counts in feedback.items() for s, n in counts.items()])
        fig = px.bar(frame, x="variant", y="count", color="sentiment", barmode="stack", title="User feedback",
                     color_discrete_map=SENTIMENT_COLORS, category_orders={"sentiment": list(SENTIMENT_COLORS)})
        fig.update_layout(height=330, margin={"t": 50, "b": 30}, legend_title_text="")
        st.plotly_chart(fig, key="r_feedback")


def _controls(experiment: Any) -> tuple[tuple[Any, ...], tuple[Any, Any]]:
    with st.expander("Analysis options", expanded=False):
        cols = st.columns([2, 2, 1])
        method = cols[0].radio("Method", list(METHODS), format_func=METHODS.get, key="r_method", horizontal=True)
        correction = cols[1].selectbox("Multiple-comparison correction", list(CORRECTIONS),
                                       format_func=CORRECTIONS.get, key="r_correction")
        cuped = cols[2].toggle("CUPED", key="r_cuped", help="Reduce variance with each user's pre-experiment value.")
        cols = st.columns(2)
        started = (experiment.started_at or experiment.created_at).date()
        ended = (experiment.stopped_at or datetime.now(UTC)).date()
        window = cols[0].date_input("Date window (UTC)", value=(started, ended), key=f"r_window_{experiment.id}")
        segment = cols[1].selectbox(
            "Segment by attribute", ["", *_segments(database_url(), experiment.id)], key=f"r_segment_{experiment.id}",
            format_func=lambda name: name or "No breakdown", help="An attribute passed at assignment time.",
        )
    start = end = None
    if isinstance(window, tuple | list) and len(window) == 2 and all(isinstance(d, date) for d in window):
        if window[0] > started:
            start = datetime.combine(window[0], time.min, tzinfo=UTC)
        if window[1] < ended:
            end = datetime.combine(window[1] + timedelta(days=1), time.min, tzinfo=UTC)
    return (method, correction, bool(cuped), start, end, (segment or "").strip()), (start, end)


def _report(experiment: Any, options: tuple[Any, ...], window: tuple[Any, Any]) -> None:
    with ui.session() as s:
        latest = queries.latest_event_id(session=s, experiment_id=experiment.id)
        variants = ex.get_variants(session=s, experiment_id=experiment.id)
    names = {v.id: v.name for v in variants}
    version = f"{experiment.status}|{experiment.updated_at.isoformat()}"
    results = _analysis(database_url(), experiment.id, latest, version, options)

    _health(results)
    _verdict(results)
    top = st.columns(4)
    top[0].metric("Users", forms.format_int(sum(v.users for v in results.variants)))
    top[1].metric("Assigned", forms.format_int(sum(v.assigned for v in results.variants)))
    top[2].metric("Days running", forms.format_number(results.days_run, 1))
    top[3].metric("Confidence", forms.format_pct(1 - results.alpha, 0))

    if not results.metrics:
        st.info("No metric data yet. Results appear as soon as users are assigned and events are tracked.", icon="⏳")
    for metric, role in forms.metrics_in_order(results):
        st.markdown(f"#### {metric} · {role}")
        st.dataframe(pd.DataFrame(forms.metric_rows(results, metric)), hide_index=True, width="stretch",
                     key=f"r_table_{metric}")
    if results.segments:
        with st.expander(f"By {results.segment}"):
            st.dataframe(pd.DataFrame([{
                results.segment: seg.value, "metric": seg.metric, "variant": seg.variant,
                "users": forms.format_int(seg.users), "control users": forms.format_int(seg.control_users),
                "lift": forms.format_pct(seg.test.lift, 1, signed=True),
                "p-value": forms.format_pvalue(seg.test.p_value),
            } for seg in results.segments]), hide_index=True, width="stretch")
    if results.metrics or results.variants:
        _charts(experiment, results, latest, names, window)


def _downloads(experiment: Any, options: tuple[Any, ...]) -> None:
    method, correction, cuped, start, end, segment = options
    kwargs = {"method": method, "correction": correction, "cuped": cuped, "start": start, "end": end}
    st.subheader("Download")
    cols = st.columns(3)
    slug = "".join(c if c.isalnum() else "_" for c in experiment.name).strip("_").lower() or str(experiment.id)
    for col, what, label in zip(cols, ("results", "assignments", "events"),
                                ("Results table", "Assignments", "Events"), strict=True):
        col.download_button(
            f"Download CSV: {label}", data=_csv_file(experiment.id, what, kwargs), file_name=f"{slug}_{what}.csv",
            mime="text/csv", icon=":material/download:", key=f"r_download_{what}", on_click="ignore",
        )


def body() -> None:
    st.title("📊 Results")
    with ui.session() as s:
        everything = ex.list_experiments(session=s)
    if not everything:
        st.info("No experiments yet. Create one on **Create experiment**, start it, and its results appear here.",
                icon="👋")
        return
    experiment = _pick_experiment(everything)
    if experiment is None:
        st.info("Pick an experiment to see its results.", icon="👆")
        return
    st.markdown(f"## {experiment.name} &nbsp; {forms.status_badge(experiment.status)}")
    if experiment.hypothesis:
        st.markdown(f"**Hypothesis:** {experiment.hypothesis}")
    started = experiment.started_at.strftime("%Y-%m-%d") if experiment.started_at else "not started"
    stopped = experiment.stopped_at.strftime("%Y-%m-%d") if experiment.stopped_at else "ongoing"
    st.caption(f"{started} → {stopped} · primary metric `{experiment.primary_metric}` · "
               f"{forms.format_pct(experiment.traffic_allocation, 0)} of eligible traffic")
    if experiment.status == "draft":
        st.info("This experiment is a draft: start it on the Experiments page to collect data.", icon="📝")
        return
    if watch_ui.snapshot_first(experiment):
        return
    options, window = _controls(experiment)
    live = experiment.status == "running" and st.session_state.get("live_refresh", True)

    @st.fragment(run_every=REFRESH_SECONDS if live else None)
    def live_report() -> None:
        ui.guarded(lambda: _report(experiment, options, window))
        if live:
            st.caption(f"🔄 Refreshing every {REFRESH_SECONDS} s (turn off *Live refresh* in the sidebar).")

    live_report()
    _downloads(experiment, options)


if ui.start_page():
    ui.guarded(body)
