"""The Layers page and the layer parts of the create, list and results pages, through AppTest."""

from __future__ import annotations

from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore import experiments as ex
from abcore.dashboard import APP_PATH
from abcore.store.db import make_engine
from tests.factories import make_experiment

APP = str(APP_PATH)


def _page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page(f"pages/{name}").run()
    assert not at.exception, at.exception
    return at


def test_layers_page_shows_ranges_creates_layers_and_lists_holdouts(store: str) -> None:
    engine = make_engine(store)
    with Session(engine) as session:
        ex.create_layer("home", session=session)
        make_experiment(session, "ranker", layer="home", layer_share=40.0)
        hold = ex.create_holdout("hold", 5, session=session, layers=["home"])
        ex.start_experiment(session=session, ref=hold.id)
    at = _page("layers.py")
    text = " ".join(m.value for m in at.markdown)
    assert "home" in text and "60 % free" in text
    assert any("ranker" in str(df.value) for df in at.dataframe)
    assert any("hold" in str(df.value) and "home" in str(df.value) for df in at.dataframe)
    at.text_input(key="l_new_name").input("search")
    submit = next(b for b in at.button if b.label == "Create layer")
    submit.click().run()
    assert not at.exception, at.exception
    with Session(engine) as session:
        assert [x.name for x in ex.list_layers(session=session)] == ["home", "search"]
    engine.dispose()


def test_create_page_offers_the_layer_and_plans_at_its_share(store: str) -> None:
    engine = make_engine(store)
    with Session(engine) as session:
        ex.create_layer("home", session=session)
        make_experiment(session, "ranker", layer="home", layer_share=70.0)
    at = _page("create.py")
    at.selectbox(key="c_layer").select("home").run()
    assert not at.exception, at.exception
    assert at.number_input(key="c_layer_share").value == 30.0  # the free share by default
    assert any("30 % of the layer is free" in c.value for c in at.caption)
    assert any("of layer home" in m.value and "at 30" in m.value for m in at.markdown)  # the plan runs at that share
    at.text_input(key="c_name").input("second")
    at.run()
    next(b for b in at.button if b.label == "Create experiment").click().run()
    assert not at.exception, at.exception
    with Session(engine) as session:
        created = ex.get_experiment(session=session, ref="second")
        assert created.layer_share == 30.0 and created.layer_id is not None
    engine.dispose()


def test_results_page_names_the_layer(store: str, open_results) -> None:  # noqa: ANN001
    engine = make_engine(store)
    with Session(engine) as session:
        ex.create_layer("home", session=session)
        make_experiment(session, "ranker", layer="home", layer_share=40.0)
    engine.dispose()
    at = open_results("ranker")
    assert any("Layer **home**: holds 40 %" in m.value for m in at.markdown)


def test_results_page_shows_flagged_interactions(store: str, open_results) -> None:  # noqa: ANN001
    from tests.analysis.test_interactions import _data

    engine = make_engine(store)
    with Session(engine, expire_on_commit=False) as session:
        _data(session, interaction=1.5)
    engine.dispose()
    at = open_results("a")
    assert any("1 flagged" in e.label for e in at.expander)
    assert any("effect on clicks" in m.value and "interaction" in m.value for m in at.markdown)
    assert not at.dataframe  # a Markdown table: the results page has no data grid
