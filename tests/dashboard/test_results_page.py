"""The results page through AppTest: linkable by query parameter, tables, charts, cache invalidation."""

from __future__ import annotations

import random
from collections.abc import Callable
from html.parser import HTMLParser

import pandas as pd
import pytest
from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.assign import Assigner
from abcore.store.db import make_engine
from tests.dashboard.markdown_view import text


class _TableCells(HTMLParser):
    """The cells of an HTML table (abcore.dashboard.views.html.html_table), row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def _tables(at: AppTest) -> list[pd.DataFrame]:
    """The page's result tables (HTML in st.markdown), as frames with the header row as columns."""
    frames = []
    for m in at.markdown:
        if m.value.startswith('<table class="abcore-table"'):
            parser = _TableCells()
            parser.feed(m.value)
            frames.append(pd.DataFrame(parser.rows[1:], columns=parser.rows[0]))
    return frames


def _charts(at: AppTest) -> list[str]:
    """The page's charts (SVG in st.markdown, abcore.dashboard.views.charts)."""
    return [m.value.removeprefix("<div>").removesuffix("</div>") for m in at.markdown
            if m.value.startswith('<div><svg class="abcore-chart"')]


def _running_experiment(url: str, users: int = 200) -> int:
    with Session(make_engine(url), expire_on_commit=False) as s:
        data = ex.ExperimentCreate(
            name="Checkout copy",
            hypothesis="Shorter copy converts better",
            variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="short", allocation_pct=50)],
            secondary_metrics=["revenue"],
        )
        exp = ex.create_experiment(session=s, data=data)
        ex.start_experiment(session=s, ref=exp.id)
    assigner = Assigner(url, timeout=10.0, cache_ttl=0.0)
    rng = random.Random(3)
    for i in range(users):
        a = assigner.assign(f"u{i}", "Checkout copy")
        assert a is not None
        if rng.random() < 0.2:
            assigner.track(f"u{i}", "Checkout copy", "conversion")
        assigner.track(f"u{i}", "Checkout copy", "revenue", rng.expovariate(0.1))
        assigner.track(f"u{i}", "Checkout copy", "feedback", 1.0, event_type="feedback",
                       properties={"sentiment": rng.choice(["positive", "neutral", "negative"])})
    assigner.close()
    return int(exp.id)  # type: ignore[arg-type]


def test_results_page_is_linkable_and_shows_tables_charts_and_downloads(store: str, open_results: Callable[..., AppTest]) -> None:
    exp_id = _running_experiment(store)
    at = open_results("Checkout copy")  # by name
    assert at.selectbox(key="r_experiment").value == exp_id
    assert any("Checkout copy" in m.value for m in at.markdown)
    headings = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert headings == ["#### conversion · primary", "#### revenue · secondary"]
    tables = _tables(at)
    conversion = tables[0]
    assert list(conversion["Variant"]) == ["control", "short"]
    assert sum(int(x.replace(",", "")) for x in conversion["Users"]) == 200
    assert any("fixed-horizon" in text(w.value) for w in at.warning)  # peeking warning while running
    charts = _charts(at)  # forest, cumulative value + lift, distribution, assignments, feedback
    assert [c.split('aria-label="', 1)[1].split('"', 1)[0] for c in charts] == [
        "Relative lift vs. control (with confidence intervals)", "Cumulative conversion per variant",
        "Cumulative lift of conversion vs. control (%)", "Distribution of revenue per variant", "Assignments per day",
        "User feedback"]
    assert {b.proto.label for b in at.get("download_button")} == {
        "Download CSV: Results table", "Download CSV: Assignments", "Download CSV: Events"}
    by_id = open_results(str(exp_id))
    assert by_id.selectbox(key="r_experiment").value == exp_id


def test_new_events_are_never_hidden_by_the_cache(store: str, open_results: Callable[..., AppTest]) -> None:
    _running_experiment(store, users=60)
    at = open_results("Checkout copy")
    users = _tables(at)[0]["Users"].tolist()
    assigner = Assigner(store, timeout=10.0, cache_ttl=0.0)
    for i in range(60, 100):
        assert assigner.assign(f"u{i}", "Checkout copy") is not None
    assigner.close()
    at.run()
    after = _tables(at)[0]["Users"].tolist()
    assert sum(map(int, after)) == 100 and after != users


def test_unknown_experiment_and_draft(store: str, open_results: Callable[..., AppTest]) -> None:
    at = open_results("nope")
    assert any("No experiments yet" in i.value for i in at.info)
    with Session(make_engine(store)) as s:
        ex.create_experiment(session=s, data=ex.ExperimentCreate(name="Just a draft", variants=[
            ex.VariantCreate(name="a", allocation_pct=50), ex.VariantCreate(name="b", allocation_pct=50)]))
    at = open_results("nope")
    assert any("No experiment 'nope'" in w.value for w in at.warning)
    at = open_results("Just a draft")
    assert any("is a draft" in i.value for i in at.info)


@pytest.mark.parametrize("method", ["frequentist", "sequential", "bayesian"])
def test_every_demo_experiment_renders_with_multi_day_charts(store: str, method: str,
                                                               open_results: Callable[..., AppTest]) -> None:
    """The demo data spans weeks (multi-point cumulative series, feedback, distributions): every
    experiment with data renders every method without an error message."""
    from abcore.demo import load_demo_data

    engine = make_engine(store)
    load_demo_data(engine, seed=7, scale=0.1)
    with Session(engine) as s:
        names = [e.name for e in ex.list_experiments(session=s) if e.status != "draft"]
    engine.dispose()
    for name in names:
        at = open_results(name, r_method=method)
        assert not at.error, (name, [e.value for e in at.error])
        assert len(_charts(at)) >= 4, name


def test_segment_breakdown_offers_the_assignment_attributes(store: str, open_results: Callable[..., AppTest]) -> None:
    from abcore.demo import load_demo_data

    engine = make_engine(store)
    load_demo_data(engine, seed=7, scale=0.1)
    with Session(engine) as s:
        experiment = ex.get_experiment(session=s, ref="ranker_two_tower_vs_als")
    engine.dispose()
    at = open_results("ranker_two_tower_vs_als")
    box = at.selectbox(key=f"r_segment_{experiment.id}")
    assert box.options == ["No breakdown", "country", "platform"]  # the demo's assignment attributes
    box.set_value("country").run()
    assert not at.exception and not at.error
    assert any(e.label == "By country" for e in at.expander)


def test_a_metric_without_any_event_says_no_data_yet(store: str, open_results: Callable[..., AppTest]) -> None:
    """A secondary metric nobody tracked yet: "no data yet" under its heading, never a table with "0.00 %"."""
    with Session(make_engine(store), expire_on_commit=False) as s:
        exp = ex.create_experiment(session=s, data=ex.ExperimentCreate(
            name="Silent metric",
            variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="b", allocation_pct=50)],
            secondary_metrics=["signup"],
        ))
        ex.start_experiment(session=s, ref=exp.id)
    assigner = Assigner(store, timeout=10.0, cache_ttl=0.0)
    for i in range(40):
        assert assigner.assign(f"u{i}", "Silent metric") is not None
        if i % 4 == 0:
            assigner.track(f"u{i}", "Silent metric", "conversion")
    assigner.close()
    at = open_results("Silent metric")
    headings = [m.value for m in at.markdown if m.value.startswith("#### ")]
    assert headings == ["#### conversion · primary", "#### signup · secondary"]
    assert len(_tables(at)) == 1  # conversion only: 10 of 40 users converted (i % 4 == 0), so it has data
    assert [text(c.value) for c in at.caption if c.value.startswith("No data yet")] == [
        "No data yet: no signup event has been tracked for this experiment."]
    shown = " ".join(str(t.to_dict()) for t in _tables(at))
    assert "signup" not in shown
    # the charts over time offer only metrics with data
    assert at.selectbox(key="r_chart_metric").options == ["conversion"]


def test_cuped_warnings_are_shown_next_to_the_cuped_option(store: str, open_results: Callable[..., AppTest]) -> None:
    """A CUPED warning of Results.warnings sits beside the CUPED toggle (once), not in the health banner."""
    _running_experiment(store, users=60)
    at = open_results("Checkout copy")
    assert not [w for w in at.warning if "CUPED" in w.value]
    at.session_state["r_method"] = "sequential"  # abcore.analysis.pipeline: CUPED is not combined with sequential testing
    at.toggle(key="r_cuped").set_value(True).run()
    assert not at.exception, at.exception
    cuped = [text(w.value) for w in at.warning if "CUPED" in w.value]
    assert cuped == ["CUPED is not combined with sequential testing; analysed without CUPED."]
    column = next(c for c in at.columns if [t.label for t in c.toggle] == ["CUPED"])  # the CUPED toggle's column
    assert [text(w.value) for w in column.warning] == cuped
    at.toggle(key="r_cuped").set_value(False).run()
    assert not [w for w in at.warning if "CUPED" in w.value]
