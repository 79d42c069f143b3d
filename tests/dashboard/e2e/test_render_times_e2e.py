"""Render times of every page in real Chromium on the demo data, plus a screenshot of each page.

Prints, per page, the seconds from ``page.goto`` until the page is fully drawn (its title, every
table, every chart's canvas, no script run in progress). The results link is opened ``OPENS``
times: the first open after the server start is the *cold* figure (nothing cached: the analysis
and the chart queries run), the median of the other opens the *warm* one (same data, so the
cached analysis is reused); also printed is the ratio to the time until the results page's
first content (the anchor, measured in the same run). The target is the results page
fully drawn within 2.0 s; it is reported, not asserted (only a 60 s hang guard), because the
figure depends on the machine's load (see README, "Dashboard speed in the browser").
Screenshots go to ``tests/artifacts/``.
"""

from __future__ import annotations

import os
import re
import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import pytest
from sqlmodel import Session

from abcore import experiments as ex
from abcore.demo import load_demo_data
from abcore.store.db import init_db, make_engine
from tests.dashboard.e2e.browser import ARTIFACTS, launch, open_timed

pytestmark = pytest.mark.e2e

WAIT_S = 60.0
OPENS = 6  # the first is cold, the others warm
HOSTILE = "[click me](http://evil.example/) ![pixel](http://tracker.example/p.png) **loud**"

@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory, need_browser: Callable[[], None],
                dashboard_server: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[str, str]]:
    """A dashboard on a free port over the full demo data set (the data the target is stated for)."""
    need_browser()
    tmp = tmp_path_factory.mktemp("render")
    url = f"sqlite:///{tmp / 'demo.db'}"
    engine = init_db(make_engine(url))
    load_demo_data(engine)
    with Session(engine) as s:  # user text that must stay text on the cards
        ex.create_experiment(session=s, data=ex.ExperimentCreate(
            name="hostile_text", description=HOSTILE,
            variants=[ex.VariantCreate(name="a", allocation_pct=50), ex.VariantCreate(name="b", allocation_pct=50)]))
    engine.dispose()
    with dashboard_server(url, tmp) as base:
        yield base, url


def test_every_page_renders_and_the_results_link_is_timed(demo_server: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    base, db_url = demo_server
    with Session(make_engine(db_url)) as s:
        ranker = ex.get_experiment(session=s, ref="ranker_two_tower_vs_als")
        hostile = ex.get_experiment(session=s, ref="hostile_text")
    figures: dict[str, float] = {}
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1440, "height": 1000})
        context.set_default_timeout(WAIT_S * 1000)
        # warm-up: the router's first run and the browser's cache of Streamlit's static files
        page, *_ = open_timed(context, base)
        page.close()  # type: ignore[attr-defined]

        results_url = f"{base}/results?experiment={ranker.id}"
        firsts, fulls = [], []
        for i in range(OPENS):
            # forest, cumulative value + lift, distribution, assignments, feedback; one table per metric
            page, first, full, state = open_timed(context, results_url, charts=6, tables=3)
            assert state["verdict"], state
            firsts.append(first)
            fulls.append(full)
            if i == OPENS - 1:
                # the hostile description of another card is not a link: checked on the landing page below
                page.screenshot(path=str(ARTIFACTS / "results_demo.png"), full_page=True)  # type: ignore[attr-defined]
            page.close()  # type: ignore[attr-defined]
        figures["results, cold"] = fulls[0]
        figures["results, warm (median)"] = statistics.median(fulls[1:])

        for name, path, charts in (("experiments", "", 0), ("create", "create", 0),
                                   ("sample_size", "sample_size", 1), ("models", "models", 0)):
            page, _, full, _ = open_timed(context, f"{base}/{path}", charts=charts)
            figures[name] = full
            page.screenshot(path=str(ARTIFACTS / f"page_{name}.png"), full_page=True)  # type: ignore[attr-defined]
            if name == "experiments":
                page.get_by_role("tab", name=re.compile(r"Draft \(\d+\)")).click()  # type: ignore[attr-defined]
                card = page.locator(f".st-key-exp_card_{hostile.id}")  # type: ignore[attr-defined]
                card.wait_for()
                shown = card.inner_text()
                assert "\u2060" not in shown  # nothing invisible added: copied text equals the text typed
                assert "[click me](http://evil.example/) ![pixel](http://tracker.example/p.png) **loud**" in shown
                assert card.locator("a[href*='evil.example']").count() == 0
                assert card.locator("img[src*='tracker.example']").count() == 0
            page.close()  # type: ignore[attr-defined]
        browser.close()

    anchor = statistics.median(firsts[1:])
    warm = statistics.median(fulls[1:])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nBrowser render times on the demo data (seconds from opening the link to fully drawn; load average {load}):")
    print(f"  results link, {OPENS} opens: " + ", ".join(f"{t:.2f}" for t in fulls)
          + f"  (cold {fulls[0]:.2f}, warm median {warm:.2f}; target 2.0)")
    print(f"  results first content (anchor), warm median {anchor:.2f}; fully drawn / first content = "
          f"{warm / anchor:.2f}")
    for name, seconds in figures.items():
        print(f"  {name:<18} {seconds:.2f} s")
    assert all(t < WAIT_S for t in fulls)
