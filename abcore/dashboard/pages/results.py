"""Results of one experiment: health, per-metric tables, recommendation, charts and CSV downloads.

Linkable: ``/results?experiment=<id or name>``. Aggregation runs in SQL (abcore.analysis.sql via
abcore.analysis.pipeline); results are cached per experiment and its latest event id, so new data
is never hidden by the cache.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, date, datetime, time, timedelta
from time import perf_counter
from typing import IO, Any

import streamlit as st

from abcore import experiments as ex
from abcore import formatting as fmt
from abcore.analysis import overview
from abcore.analysis.metric_counts import value_distribution
from abcore.analysis.pipeline import analyze
from abcore.analysis.results import Results
from abcore.config import choose_analysis_engine, database_url
from abcore.dashboard import interleaving_ui, ui, watch_ui
from abcore.dashboard.views import forms, html, layer_view, over_time, result_charts
from abcore.dashboard.views.metric_forms import direction_label
from abcore.experiments.layers import layer_names
from abcore.io.csv_export import iter_csv

METHODS = {"frequentist": "Frequentist", "sequential": "Sequential (safe to peek)", "bayesian": "Bayesian"}
CORRECTIONS = {"holm": "Holm", "fdr_bh": "Benjamini-Hochberg", "bonferroni": "Bonferroni", "none": "None"}
REFRESH_SECONDS = 10


@st.cache_data(show_spinner="Analysing…", max_entries=64)
def _page_data(url: str, experiment_id: int, latest_event: int, version: str, options: tuple[Any, ...],
               palette: dict[str, str]) -> dict[str, Any]:
    """analyze() and what the page draws from it, cached on (database, experiment, latest event id,
    experiment version, options, variant colours): new data changes the latest event id, so it is
    never hidden by the cache, and a rerun on the same data builds nothing again.

    Keys: ``results`` (abcore.analysis.results.Results), ``no_data`` (metrics without any tracked event),
    ``forest``, ``cumulative`` (per metric) and ``feedback`` chart specs (None: nothing to draw), ``seconds``
    (how long ``analyze`` took on the engine chosen by ABCORE_ANALYSIS_ENGINE / ABCORE_DUCKDB_MIN_EVENTS).
    """
    method, correction, cuped, start, end, segment = options
    with ui.session() as s:  # engine: ABCORE_ANALYSIS_ENGINE / ABCORE_DUCKDB_MIN_EVENTS (docs: configuration)
        engine = choose_analysis_engine(lambda: overview.event_total(session=s, experiment_id=experiment_id))
        began = perf_counter()
        results = analyze(
            experiment_id, session=s, method=method, correction=correction, cuped=cuped,
            start=start, end=end, segment=segment or None, percentiles=False, engine=engine,
        )
        seconds = perf_counter() - began
        tracked = set(overview.metric_names(session=s, experiment_id=experiment_id))
    metrics = [m for m, _ in forms.metrics_in_order(results)]
    return {
        "results": results,
        "seconds": seconds,
        "no_data": {m for m in metrics if m not in tracked},
        "forest": result_charts.forest(results),
        "cumulative": {m: result_charts.cumulative(results, m, palette) for m in metrics},
        "feedback": result_charts.feedback(results.feedback, palette),
    }


@st.cache_data(show_spinner=False, max_entries=64)
def _snapshot_page(url: str, snapshot_id: int, _stored: dict[str, Any], palette: dict[str, str]) -> dict[str, Any]:
    """What the page draws from a watcher snapshot (``_stored``: its ``Results.to_dict()``), the keys of
    :func:`_page_data`, cached on the snapshot's id: the same report as a live result, read back
    (:meth:`abcore.analysis.results.Results.from_dict`), not analysed again."""
    results = Results.from_dict(_stored)
    with ui.session() as s:
        tracked = set(overview.metric_names(session=s, experiment_id=results.experiment_id))
    metrics = [m for m, _ in forms.metrics_in_order(results)]
    return {
        "results": results,
        "seconds": None,
        "no_data": {m for m in metrics if m not in tracked},
        "forest": result_charts.forest(results),
        "cumulative": {},
        "feedback": result_charts.feedback(results.feedback, palette),
    }


@st.cache_data(show_spinner=False, max_entries=64)
def _assignments_svg(url: str, experiment_id: int, latest_event: int, palette: dict[str, str]) -> str | None:
    """The assignments-per-day chart (None: no assignments), cached on the latest event id."""
    with ui.session() as s:
        per_day = overview.assignments_per_day(session=s, experiment_id=experiment_id)
        names = {v.id: v.name for v in ex.get_variants(session=s, experiment_id=experiment_id)}
    return result_charts.assignments(per_day, names, palette) if per_day else None


@st.cache_data(show_spinner=False, max_entries=64)
def _distribution_svg(url: str, experiment_id: int, latest_event: int, metric: str, window: tuple[Any, Any],
                       palette: dict[str, str]) -> str | None:
    """The value histogram of ``metric`` per variant (None: no values), cached on the latest event id: the
    qualifying event values of the analysis population in ``window`` (its start defaults to the experiment's,
    as in the analysis; the definition's window and delay apply)."""
    with ui.session() as s:
        start = window[0] or overview.as_utc(ex.get_experiment(session=s, ref=experiment_id).started_at)
        dist = value_distribution(session=s, experiment_id=experiment_id, metric=metric, bins=30, start=start,
                                  end=window[1])
        names = {v.id: v.name for v in ex.get_variants(session=s, experiment_id=experiment_id)}
    return result_charts.distribution(dist, names, metric, palette) if dist.edges else None


@st.cache_data(show_spinner=False, max_entries=64, ttl=60)
def _segments(url: str, experiment_id: int) -> list[str]:
    with ui.session() as s:
        return overview.attribute_names(session=s, experiment_id=experiment_id)


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
            st.warning(f"No experiment '{html.plain_text(wanted)}' – pick one below.", icon="🔎")
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
        format_func=lambda i: f"{by_id[i].name} · {by_id[i].status}" + (" · archived" if by_id[i].archived_at else ""),
        key="r_experiment",
        placeholder="Choose an experiment",
        **({} if "r_experiment" in st.session_state else {"index": None}),
    )
    if picked is not None:
        st.query_params["experiment"] = str(picked)
    return by_id.get(picked)


def _is_cuped_warning(message: str) -> bool:
    """Warnings about CUPED (e.g. no pre-exposure data) are shown next to the CUPED option, not in the banner."""
    return "cuped" in message.lower()


def _health(results: Any) -> None:
    with st.container(key="r_health"):
        problems = [c for c in results.health if not c.ok]
        for check in problems:
            (st.error if check.severity == "error" else st.warning)(html.plain_text(check.message), icon="🩺")
        for warning in results.warnings:
            if not _is_cuped_warning(warning):
                st.warning(html.plain_text(warning), icon="⚠️")
        passed = [c.message for c in results.health if c.ok]
        if passed:  # shown also when a warning is up: what was checked and passed stays visible
            healthy = forms.health_level(results.health) == "ok" and not results.warnings
            st.success(("Healthy: " if healthy else "Passed: ") + html.plain_text(" ".join(passed)), icon="🩺")


def _verdict(results: Any) -> None:
    label, color = forms.verdict_label(results.verdict.decision, results.verdict.variant)
    with st.container(border=True, key="r_verdict"):
        st.markdown(f"### :{color}[{html.plain_text(label)}]")
        st.markdown(html.plain_text(results.verdict.reason))


def _chart(svg: str, key: str) -> None:
    """Draw an SVG chart (abcore.dashboard.views.charts: escaped, one line) in a container with a stable key."""
    with st.container(key=key):  # the stable CSS class st-key-<key> that browser tests select on
        st.markdown(f"<div>{svg}</div>", unsafe_allow_html=True)  # an HTML block: its text is not Markdown


def _charts(experiment: Any, page: dict[str, Any], latest: int, window: tuple[Any, Any],
            palette: dict[str, str]) -> None:
    """Every chart after the tables: forest, cumulative value and lift, distribution, assignments, feedback."""
    results = page["results"]
    st.subheader("Charts")
    if page["forest"] is not None:
        _chart(page["forest"], "r_forest")
    else:
        st.caption("No lift to plot yet: every treatment needs users and data first.")
    metrics = [m for m in page["cumulative"] if m not in page["no_data"]]
    if metrics:
        metric = st.selectbox("Metric for the charts over time", metrics, key="r_chart_metric")
        pair = page["cumulative"][metric]
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
    continuous = sorted({r.metric for r in results.metrics if r.kind == "mean"} - page["no_data"])
    left, right = st.columns(2)
    with left:
        if continuous:
            chosen = st.selectbox("Distribution of", continuous, key="r_dist_metric")
            spec = _distribution_svg(url, experiment.id, latest, chosen, window, palette)
            if spec is not None:
                _chart(spec, "r_distribution")
        else:
            st.caption("No continuous metric to show a distribution for.")
    with right:
        spec = _assignments_svg(url, experiment.id, latest, palette)
        if spec is not None:
            _chart(spec, "r_assignments")
        else:
            st.caption("No assignments yet.")
    if page["feedback"] is not None:
        _chart(page["feedback"], "r_feedback")


def _controls(experiment: Any) -> tuple[tuple[Any, ...], tuple[Any, Any], Any]:
    """The analysis options; returns (options, date window, the slot next to the CUPED toggle).

    In a popover, not an expander: the browser mounts a closed popover's widgets only when it is
    opened, so their code (the date input's alone is ~180 kB) is not loaded before the tables.
    """
    with st.popover("Analysis options", icon=":material/tune:"):
        cols = st.columns([2, 2, 2])
        method = cols[0].radio("Method", list(METHODS), format_func=METHODS.get, key="r_method", horizontal=True)
        correction = cols[1].selectbox("Multiple-comparison correction", list(CORRECTIONS),
                                       format_func=CORRECTIONS.get, key="r_correction")
        cuped = cols[2].toggle("CUPED", key="r_cuped", help="Reduce variance with each user's pre-experiment value.")
        cuped_note = cols[2].empty()  # filled by _report with the analysis' CUPED warnings
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
    return (method, correction, bool(cuped), start, end, (segment or "").strip()), (start, end), cuped_note


def _figures(results: Any) -> None:
    """The top figures as one line of text (markdown is in Streamlit's first script bundle; st.metric
    would load another chunk in the browser and hold back the tables, measured)."""
    figures = {
        "Users": fmt.format_int(sum(v.users for v in results.variants)),
        "Assigned": fmt.format_int(sum(v.assigned for v in results.variants)),
        "Days running": forms.format_whole_days(results.days_run),
        "Confidence": fmt.format_pct(1 - results.alpha, 0),
    }
    with st.container(key="r_figures"):
        st.markdown(" &nbsp;·&nbsp; ".join(f"{label} **{value}**" for label, value in figures.items()))


def _metric_table(page: dict[str, Any], metric: str, role: str) -> None:
    """One metric: its heading and its table, or "no data yet" when no event of it was tracked."""
    st.markdown(f"#### {html.plain_text(metric)} · {role}")
    with st.container(key=f"r_table_{metric}"):
        if metric in page["no_data"]:
            st.caption(f"No data yet: no {html.plain_text(metric)} event has been tracked for this experiment.")
        else:
            better = next((r.direction for r in page["results"].metrics if r.metric == metric), None)  # its definition's
            if better:
                st.caption(f"Direction: {direction_label(better)}")
            # plain HTML in the page's text: drawn with the first paint, wrapped (never cut) at any width
            st.markdown(html.html_table(forms.metric_rows(page["results"], metric)), unsafe_allow_html=True)


def _report(experiment: Any, options: tuple[Any, ...], window: tuple[Any, Any], cuped_note: Any) -> None:
    """Health banner, verdict, top figures and the primary metric first; then the other metrics and the charts."""
    with ui.session() as s:
        latest = overview.latest_event_id(session=s, experiment_id=experiment.id)
        variants = ex.get_variants(session=s, experiment_id=experiment.id)
    palette = forms.variant_colors([v.name for v in sorted(variants, key=lambda v: not v.is_control)])
    version = f"{experiment.status}|{experiment.updated_at.isoformat()}"
    page = _page_data(database_url(), experiment.id, latest, version, options, palette)
    results = page["results"]

    cuped_warnings = [w for w in results.warnings if _is_cuped_warning(w)]
    if cuped_warnings:
        cuped_note.warning(html.plain_text(" ".join(cuped_warnings)), icon="⚠️")
    else:
        cuped_note.empty()
    _summary(page, forms.engine_caption(results.engine, page["seconds"], ui.engine().dialect.name))
    _over_time(results)
    if results.metrics or results.variants:
        _charts(experiment, page, latest, window, palette)


def _summary(page: dict[str, Any], caption: str) -> None:
    """The report's body, live or from a snapshot: health, verdict, top figures, ``caption``, one table per
    metric (primary first) and the segment breakdown."""
    results = page["results"]
    _health(results)
    _verdict(results)
    _figures(results)
    st.caption(caption)
    if not results.metrics:
        st.info("No metric data yet. Results appear as soon as users are assigned and events are tracked.", icon="⏳")
    for metric, role in forms.metrics_in_order(results):
        _metric_table(page, metric, role)
    if results.segments:
        with st.expander(f"By {html.plain_text(results.segment)}"):
            st.markdown(html.html_table([{
                results.segment: seg.value, "metric": seg.metric, "variant": seg.variant,
                "users": fmt.format_int(seg.users), "control users": fmt.format_int(seg.control_users),
                "lift": fmt.format_pct(seg.test.lift, 1, signed=True),
                "p-value": fmt.format_pvalue(seg.test.p_value),
            } for seg in results.segments], key_columns=3), unsafe_allow_html=True)


def _snapshot_report(snap: Any, history_svg: str | None) -> None:
    """A watcher snapshot as the same report as a live result (same tables, formatters and outcome words),
    its forest plot, and the primary metric's decision over the watcher's passes (SVG, as every chart here)."""
    names = [v["name"] for v in sorted(snap.results.get("variants") or [], key=lambda v: not v.get("is_control"))]
    palette = forms.variant_colors(names)
    page = _snapshot_page(database_url(), int(snap.id), snap.results, palette)
    _summary(page, f"Watcher snapshot: {METHODS.get(snap.method, snap.method)} method, analysed "
                   f"{overview.as_utc(snap.computed_at):%Y-%m-%d %H:%M} UTC.")
    st.subheader("Charts")
    if page["forest"] is not None:
        _chart(page["forest"], "r_forest")
    if history_svg is not None:
        _chart(history_svg, "r_snapshot_history")
    if page["feedback"] is not None:
        _chart(page["feedback"], "r_feedback")


def _over_time(results: Any) -> None:
    """The effect by days since first exposure (per metric) and the differential impact scan."""
    with_days = [m for m, _ in forms.metrics_in_order(results) if over_time.exposure_day_rows(results, m)]
    if with_days:
        with st.expander("Effect by days since first exposure"):
            for metric in with_days:
                st.markdown(f"**{html.plain_text(metric)}**")
                st.caption(html.plain_text(over_time.exposure_day_caption(results, metric)))
                st.markdown(html.html_table(over_time.exposure_day_rows(results, metric), key_columns=2),
                            unsafe_allow_html=True)
    if results.differential_impact is not None:
        with st.expander(f"Differential impact ({len(results.differential_impact.cells)} segment cells differ)"):
            st.caption(html.plain_text(over_time.differential_caption(results)))
            if results.differential_impact.cells:
                st.markdown(html.html_table(over_time.differential_rows(results), key_columns=4),
                            unsafe_allow_html=True)


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


def _layer_line(experiment: Any) -> str | None:
    """The experiment's layer, or what a holdout covers (:func:`abcore.dashboard.views.layer_view.experiment_line`)."""
    with ui.session() as s:
        layer, covered = layer_names(s, experiment)
        held = next((v.allocation_pct for v in ex.get_variants(session=s, experiment_id=experiment.id) if v.name == "holdout"), None)
    return layer_view.experiment_line(experiment.kind, layer, experiment.layer_share, covered, held)


def _interactions(experiment: Any) -> None:
    """The interaction tests with every overlapping running experiment (:mod:`abcore.analysis.interactions`)."""
    if experiment.status not in ("running", "paused") or experiment.kind == "holdout":
        return
    from abcore.analysis.interactions import interactions_for

    with ui.session() as s:
        found = interactions_for(session=s, experiment=experiment.name)
    if not found:
        return
    flagged = sum(f.flagged for f in found)
    title = f"Interactions with overlapping experiments: {flagged} flagged" if flagged else "Interactions: none flagged"
    with st.expander(title, expanded=bool(flagged), icon="⚠️" if flagged else None):
        st.markdown(layer_view.interaction_table(found))
        st.caption("Chi-square of the arms and a z-test of the lift across the other experiment's arms, "
                   "Benjamini-Hochberg over all pairs and metrics.")


def body() -> None:
    st.title("📊 Results")
    with ui.session() as s:
        everything = ex.list_experiments(session=s, include_archived=True)  # an archived one's link still works
    if not everything:
        st.info("No experiments yet. Create one on **Create experiment**, start it, and its results appear here.",
                icon="👋")
        return
    experiment = _pick_experiment(everything)
    if experiment is None:
        st.info("Pick an experiment to see its results.", icon="👆")
        return
    st.markdown(f"## {html.plain_text(experiment.name)} &nbsp; {forms.status_badge(experiment.status)}")
    if experiment.hypothesis:
        st.markdown(f"**Hypothesis:** {html.plain_text(experiment.hypothesis)}")
    started = experiment.started_at.strftime("%Y-%m-%d") if experiment.started_at else "not started"
    stopped = experiment.stopped_at.strftime("%Y-%m-%d") if experiment.stopped_at else "ongoing"
    st.caption(f"{started} → {stopped} · primary metric {html.plain_text(experiment.primary_metric)} · "
               f"{fmt.format_pct(experiment.traffic_allocation, 0)} of eligible traffic")
    layer_line = _layer_line(experiment)
    if layer_line:
        st.markdown(layer_line)
    _interactions(experiment)
    if experiment.status == "draft":
        st.info("This experiment is a draft: start it on the Experiments page to collect data.", icon="📝")
        return
    if experiment.kind == "interleaving":
        ui.guarded(lambda: interleaving_ui.section(experiment))
        return
    snapshot = watch_ui.snapshot_first(experiment)
    if snapshot is not None:
        _snapshot_report(*snapshot)
        return
    options, window, cuped_note = _controls(experiment)
    live = experiment.status == "running" and st.session_state.get("live_refresh", True)

    @st.fragment(run_every=REFRESH_SECONDS if live else None)
    def live_report() -> None:
        ui.guarded(lambda: _report(experiment, options, window, cuped_note))
        if live:
            st.caption(f"🔄 Refreshing every {REFRESH_SECONDS} s (turn off *Live refresh* in the sidebar).")

    report = st.container()
    # Sent before the report but drawn below it: the browser loads the download button's code
    # while the server analyses, so it never holds back the tables and charts (measured).
    _downloads(experiment, options)
    with report:
        live_report()


if ui.start_page():
    ui.guarded(body)
