"""The results page of an interleaving experiment (AppTest): the pair table and the verdict from
analyze_interleaving; the sample-size page shows the interleaving users beside the A/B test's."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import Session
from streamlit.testing.v1 import AppTest

from abcore.analysis.interleaving import analyze_interleaving
from abcore.assign import Assigner
from abcore.assign.interleave import interleave
from abcore.experiments.schemas import VariantCreate
from abcore.stats.interleaving import interleaving_sample_size
from abcore.store.db import make_engine
from tests.dashboard.conftest import APP
from tests.factories import make_experiment

A = [f"i{k}" for k in range(10)]
B = [f"i{k}" for k in range(5, 15)]


def test_results_page_shows_the_preference(store: str, open_results: Callable[..., AppTest]) -> None:
    make_experiment(store, "rank", [VariantCreate(name="base", allocation_pct=50), VariantCreate(name="new", allocation_pct=50)],
                    kind="interleaving", primary_metric="click")
    client = Assigner(store)
    for u in range(30):
        shown = interleave(client, f"u{u}", "rank", {"base": A, "new": B}, request_id="r")
        assert shown is not None
        client.track(f"u{u}", "rank", "click", properties={"item": shown.items[0], "impression": shown.impression_id})
    client.close()
    engine = make_engine(store)
    with Session(engine) as s:
        res = analyze_interleaving("rank", session=s)
    engine.dispose()
    at = open_results("rank")
    page = " ".join(m.value for m in at.markdown)
    assert "base" in page and "new" in page and f">{res.pairs[0].counts.wins}<" in page
    verdicts = [*at.success, *at.info]
    assert any(res.verdict.decision in v.value for v in verdicts)


def test_sample_size_page_shows_interleaving(store: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/sample_size.py")
    at.run()
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown)
    from abcore import formatting as fmt

    assert f"Interleaving: users in total **{fmt.format_int(interleaving_sample_size(0.55, decisive_share=0.6))}**" in shown
    assert not at.metric  # plain text like the A/B figures: no metric chunk for the browser to load
