"""Results of one experiment: health, per-metric tables, recommendation, charts and CSV downloads.

Linkable: ``/results?experiment=<id or name>``. Aggregation runs in SQL (abcore.queries via
abcore.analysis); results are cached per experiment and its latest event id, so new data
is never hidden by the cache.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter
from typing import IO, Any

import altair as alt
import pandas as pd
import streamlit as st

import ui
import watch_ui
from abcore import experiments as ex
from abcore import forms, queries
from abcore.analysis import analyze
from abcore.config import choose_analysis_engine, database_url
from abcore.export import iter_csv

METHODS = {"frequentist": "Frequentist", "sequential": "Sequential (safe to peek)", "bayesian": "Bayesian"}
CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "None"}
REFRESH_SECONDS = 10
# Okabe-Ito bluish green / grey / vermillion: readable with the common colour-vision deficiencies.
SENTIMENT_COLORS = {"positive": "#009E73", "neutral": "#9ca3af", "negative": "#D55E00"}
OUTCOME_COLORS = {"better": "#16a34a", "worse": "#dc2626", "inconclusive": "#6b7280"}


@st.cache_data(show_spinner="Analysing…", max_entries=64)
def _analysis(url: str, experiment_id: int, latest_event: int, version: str, options: tuple[Any, ...]) -> Any:
    """analyze() cached on (database, experiment, latest event id, experiment version, options)."""
    method, correction, cuped, start, end, segment = options
    with ui.session() as s:  # engine: ABCORE_ANALYSIS_ENGINE / ABCORE_DUCKDB_MIN_EVENTS (README, Dashboard)
        engine = choose_analysis_engine(lambda: queries.event_total(session=s, experiment_id=experiment_id))
        began = perf_counter()
        results = analyze(
            experiment_id, session=s, method=method, correction=correction, cuped=cuped,
            start=start, end=end, segment=segment or None, percentiles=False, engine=engine,
        )
        return results, perf_counter() - began


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
        passed = [c.message for c in results.health if c.ok]
        if passed:  # shown also when a warning is up: what was checked and passed stays visible
            healthy = forms.health_level(results.health) == "ok" and not results.warnings
            st.success(("Healthy: " if healthy else "Passed: ") + " ".join(passed), icon="🩺")


def _verdict(results: Any) -> None:
    label, color = forms.verdict_label(results.verdict.decision, results.verdict.variant)
    with st.container(border=True, key="r_verdict"):
        st.markdown(f"### :{color}[{label}]")
        st.markdown(results.verdict.reason)


def _forest(results: Any) -> alt.Chart:
    """Relative lift per metric and treatment with its CI; colour by outcome (green better, red worse, grey open)."""
    rows = [r for r in results.metrics if pd.notna(r.test.lift)]
    frame = pd.DataFrame([{
        "row": f"{r.metric} · {r.variant}",
        "lift": r.test.lift * 100,
        "low": (r.test.lift_ci_low if pd.notna(r.test.lift_ci_low) else r.test.lift) * 100,
        "high": (r.test.lift_ci_high if pd.notna(r.test.lift_ci_high) else r.test.lift) * 100,
        "outcome": r.outcome,  # judged by the metric's definition (abcore.decisions), never by the sign here
    } for r in rows])
    y = alt.Y("row:N", title=None, sort=None)
    color = alt.Color("outcome:N", scale=alt.Scale(domain=list(OUTCOME_COLORS), range=list(OUTCOME_COLORS.values())),
                      legend=alt.Legend(title=None, orient="top"))
    tooltip = [alt.Tooltip("row:N", title="metric · variant"), alt.Tooltip("lift:Q", format="+.2f", title="lift (%)"),
               alt.Tooltip("low:Q", format="+.2f", title="CI low (%)"), alt.Tooltip("high:Q", format="+.2f", title="CI high (%)")]
    base = alt.Chart(frame)
    bars = base.mark_rule(strokeWidth=2).encode(x=alt.X("low:Q", title="Lift vs. control (%)"), x2="high:Q", y=y, color=color)
    dots = base.mark_circle(size=110, opacity=1).encode(x="lift:Q", y=y, color=color, tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0]})).mark_rule(strokeDash=[4, 4], color="#9ca3af").encode(x="x:Q")
    return (bars + dots + zero).properties(title="Relative lift vs. control (with confidence intervals)",
                                           height=40 + 40 * max(1, len(rows)))


def _color(palette: dict[str, str]) -> alt.Color:
    """The page's one colour per variant (abcore.forms.variant_colors), the same in every chart."""
    return alt.Color("variant:N", scale=alt.Scale(domain=list(palette), range=list(palette.values())),
                     legend=alt.Legend(title=None, orient="top"))


def _cumulative(results: Any, metric: str, palette: dict[str, str]) -> tuple[alt.Chart, alt.Chart | None] | None:
    points = [p for p in results.daily if p.metric == metric]
    if not points:
        return None
    binary = next((r.kind == "binary" for r in results.metrics if r.metric == metric), False)
    scale = 100 if binary else 1
    frame = pd.DataFrame({
        "day": forms.day_labels(p.day for p in points),
        "variant": [p.variant for p in points],
        "value": [p.value * scale for p in points],
        "lift": [p.lift * 100 for p in points],
    })
    x = alt.X("day:O", title="Day (UTC)", axis=alt.Axis(labelAngle=-45, labelOverlap=True))
    unit = " (%)" if binary else ""
    value = alt.Chart(frame).mark_line(point=True).encode(
        x=x, y=alt.Y("value:Q", title=f"{metric}{unit}"), color=_color(palette),
        tooltip=["day:O", "variant:N", alt.Tooltip("value:Q", format=".2f" if binary else ".3f")],
    ).properties(title=f"Cumulative {metric} per variant", height=300)
    lifts = frame.dropna(subset=["lift"])
    if lifts.empty:
        return value, None
    lift = alt.Chart(lifts).mark_line(point=True).encode(
        x=x, y=alt.Y("lift:Q", title="Lift (%)"), color=_color(palette),
        tooltip=["day:O", "variant:N", alt.Tooltip("lift:Q", format="+.2f")],
    ).properties(title=f"Cumulative lift of {metric} vs. control (%)", height=300)
    zero = alt.Chart(pd.DataFrame({"y": [0]})).mark_rule(strokeDash=[4, 4], color="#9ca3af").encode(y="y:Q")
    return value, lift + zero


def _chart(chart: Any, key: str) -> None:
    """Draw an Altair chart as its Vega-Lite spec, built once without Altair's schema validation.

    Measured: validation costs ~65 ms per chart on a loaded server; the specs above are fixed
    shapes covered by the dashboard tests, so the browser validates nothing new.
    """
    with st.container(key=key):  # the stable CSS class st-key-<key> that browser tests select on
        st.vega_lite_chart(chart.to_dict(validate=False), width="stretch")


def _charts(experiment: Any, results: Any, latest: int, names: dict[int, str], window: tuple[Any, Any],
            palette: dict[str, str]) -> None:
    st.subheader("Charts")
    if any(pd.notna(r.test.lift) for r in results.metrics):
        _chart(_forest(results), "r_forest")
    else:
        st.caption("No lift to plot yet: every treatment needs users and data first.")
    metrics = [m for m, _ in forms.metrics_in_order(results)]
    if metrics:
        metric = st.selectbox("Metric for the charts over time", metrics, key="r_chart_metric")
        pair = _cumulative(results, metric, palette)
        if pair:
            left, right = st.columns(2)
            with left:
                _chart(pair[0], "r_cum_value")
            if pair[1] is not None:
                with right:
                    _chart(pair[1], "r_cum_lift")
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
                frame = pd.DataFrame([
                    {"variant": names.get(vid, str(vid)), "low": a, "high": b, "events": n}
                    for vid, counts in dist.counts.items()
                    for a, b, n in zip(dist.edges, dist.edges[1:], counts, strict=False)
                ])
                fig = alt.Chart(frame).mark_bar(opacity=0.55, binSpacing=0).encode(
                    x=alt.X("low:Q", title=chosen, bin="binned"), x2="high:Q",
                    y=alt.Y("events:Q", title="Events", stack=None), color=_color(palette),
                    tooltip=["variant:N", alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"),
                             "events:Q"],
                ).properties(title=f"Distribution of {chosen} per variant", height=300)
                _chart(fig, "r_distribution")
        else:
            st.caption("No continuous metric to show a distribution for.")
    with right:
        per_day = _assignments(url, experiment.id, latest)
        if per_day:
            frame = pd.DataFrame({
                "day": forms.day_labels(a.day for a in per_day),
                "variant": [names.get(a.variant_id, str(a.variant_id)) for a in per_day],
                "users": [a.count for a in per_day],
            })
            fig = alt.Chart(frame).mark_bar().encode(
                x=alt.X("day:O", title="Day (UTC)", axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
                xOffset="variant:N", y=alt.Y("users:Q", title="Users"), color=_color(palette),
                tooltip=["day:O", "variant:N", "users:Q"],
            ).properties(title="Assignments per day", height=300)
            _chart(fig, "r_assignments")
        else:
            st.caption("No assignments yet.")
    feedback = results.feedback
    if any(sum(c.values()) for c in feedback.values()):
        frame = pd.DataFrame([{"variant": v, "sentiment": s, "count": n}
                              for v, counts in feedback.items() for s, n in counts.items()])
        fig = alt.Chart(frame).mark_bar().encode(
            x=alt.X("variant:N", sort=list(palette), title=None, axis=alt.Axis(labelAngle=0)),
            y=alt.Y("count:Q", title="Feedback events"),
            color=alt.Color("sentiment:N", scale=alt.Scale(domain=list(SENTIMENT_COLORS),
                                                           range=list(SENTIMENT_COLORS.values())),
                            legend=alt.Legend(title=None, orient="top")),
            order=alt.Order("sentiment:N"), tooltip=["variant:N", "sentiment:N", "count:Q"],
        ).properties(title="User feedback", height=300)
        _chart(fig, "r_feedback")


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
    palette = forms.variant_colors([v.name for v in sorted(variants, key=lambda v: not v.is_control)])
    version = f"{experiment.status}|{experiment.updated_at.isoformat()}"
    results, seconds = _analysis(database_url(), experiment.id, latest, version, options)
    st.caption(forms.engine_caption(results.engine, seconds, ui.engine().dialect.name))

    _health(results)
    _verdict(results)
    top = st.columns(4)
    top[0].metric("Users", forms.format_int(sum(v.users for v in results.variants)))
    top[1].metric("Assigned", forms.format_int(sum(v.assigned for v in results.variants)))
    top[2].metric("Days running", forms.format_whole_days(results.days_run))
    top[3].metric("Confidence", forms.format_pct(1 - results.alpha, 0))

    if not results.metrics:
        st.info("No metric data yet. Results appear as soon as users are assigned and events are tracked.", icon="⏳")
    for metric, role in forms.metrics_in_order(results):
        st.markdown(f"#### {metric} · {role}")
        # st.table: plain HTML, drawn with the first paint and wrapped (never cut) at any width
        with st.container(key=f"r_table_{metric}"):
            st.table(pd.DataFrame(forms.metric_rows(results, metric)).set_index("Variant"))
    if results.segments:
        with st.expander(f"By {results.segment}"):
            st.table(pd.DataFrame([{
                results.segment: seg.value, "metric": seg.metric, "variant": seg.variant,
                "users": forms.format_int(seg.users), "control users": forms.format_int(seg.control_users),
                "lift": forms.format_pct(seg.test.lift, 1, signed=True),
                "p-value": forms.format_pvalue(seg.test.p_value),
            } for seg in results.segments]).set_index(results.segment))
    if results.metrics or results.variants:
        _charts(experiment, results, latest, names, window, palette)


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
    st.markdown(f"## {forms.plain_text(experiment.name)} &nbsp; {forms.status_badge(experiment.status)}")
    if experiment.hypothesis:
        st.markdown(f"**Hypothesis:** {forms.plain_text(experiment.hypothesis)}")
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
