"""What a user sees in Chromium: allocation fields and totals, the search's tab, the table view, the watcher's
status in red or green, and a watcher snapshot shown as the results report (no Plotly)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import pytest
from sqlmodel import Session

from abcore.store.db import init_db, make_engine
from abcore.watch.runner import run_pass
from abcore.watch.webhooks import WatchSettings
from tests.dashboard.e2e.actions import settle
from tests.dashboard.e2e.browser import launch
from tests.factories import make_experiment
from tests.watch.conftest import simulated_experiment

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, need_browser: Callable[[], None],
           dashboard_server: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[str, str, dict[str, int]]]:
    """A dashboard over a small store: a draft, a running experiment with data; no watcher has run yet."""
    need_browser()
    tmp = tmp_path_factory.mktemp("forms")
    url = f"sqlite:///{tmp / 'store.db'}"
    engine = init_db(make_engine(url))
    ids = {"draft": int(make_experiment(url, "needle draft", status="draft", actor="test").id)}  # type: ignore[arg-type]
    with Session(engine, expire_on_commit=False) as s:
        running, _ = simulated_experiment(s, "busy ranker", seed=5)
    ids["running"] = int(running.id)  # type: ignore[arg-type]
    engine.dispose()
    with dashboard_server(url, tmp) as base:
        yield base, url, ids


def _red(locator: object) -> bool:
    """Whether the element's text is drawn in a red colour (Streamlit's :red[...])."""
    color = locator.evaluate("e => getComputedStyle(e).color")  # type: ignore[attr-defined]
    r, g, b = (int(x) for x in re.findall(r"\d+", color)[:3])
    return r > 150 and g < 100 and b < 100


@pytest.fixture
def page(server: tuple[str, str, dict[str, int]]) -> Iterator[Any]:
    """A new Chromium tab, 1280 x 900 (the sidebar open)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def test_landing_page_status_search_and_table(server: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, _, ids = server
    # runs first in this module: no watcher pass has been made on the store yet
    # landing page: stopping rules are on by default, no watcher ran: said in red
    page.goto(base)
    status = page.locator(".st-key-watcher_status")
    status.get_by_text("No watcher has run", exact=False).wait_for()
    assert _red(status.locator("span", has_text="No watcher has run").first)
    # a search opens the tab with the match, not the (first) Running tab
    settle(page)
    page.locator(".st-key-x_search input").fill("needle")
    page.locator(".st-key-x_search input").press("Enter")
    settle(page)
    page.get_by_role("tab", name=re.compile(r"Running \(0\)")).wait_for()  # the search has run
    assert "Draft (1)" in page.get_by_role("tab", selected=True).inner_text()
    assert page.locator(f".st-key-exp_card_{ids['draft']}").is_visible()
    # the table view: no literal None, nothing cut off on the right
    page.locator(".st-key-x_search input").fill("")
    page.locator(".st-key-x_search input").press("Enter")
    settle(page)
    page.locator(".st-key-x_table label").click()
    settle(page)
    table = page.locator(".st-key-x_table_view table.abcore-table")
    table.wait_for()
    assert "None" not in table.inner_text()
    box = table.bounding_box()
    assert box is not None and box["x"] + box["width"] <= 1280, box


def test_allocation_fields_and_the_edit_total(server: tuple[str, str, dict[str, int]], page: Any) -> None:
    base, _, ids = server
    # create form: every decimal shown; a 0 % variant refused
    page.goto(f"{base}/create")
    field = page.locator(".st-key-v_alloc_0 input")
    field.wait_for()
    settle(page)
    field.fill("33.3334")
    field.press("Enter")
    settle(page)
    assert field.input_value() == "33.3334"  # was "33.33" with two decimals
    page.locator(".st-key-v_alloc_1 input").fill("0")
    page.locator(".st-key-v_alloc_1 input").press("Enter")
    settle(page)
    page.locator(".st-key-form_problems").get_by_text("more than 0 %", exact=False).wait_for()

    # edit page: the live total, and Save waits for exactly 100 %
    page.goto(f"{base}/edit?id={ids['draft']}")
    k = f"e{ids['draft']}_"
    alloc = page.locator(f".st-key-{k}alloc_0 input")
    alloc.wait_for()
    settle(page)
    alloc.fill("45")
    alloc.press("Enter")
    settle(page)
    page.locator(f".st-key-{k}allocation_total").get_by_text("95 %", exact=False).wait_for()
    # the button is redrawn in the same rerun as the total, possibly a moment later (the old one may still be
    # on the page meanwhile): wait up to 10 s until no enabled Save button is left
    enabled = page.locator(f".st-key-{k}save button:enabled")
    for _ in range(100):
        if enabled.count() == 0:
            break
        page.wait_for_timeout(100)
    assert enabled.count() == 0
    assert page.locator(f".st-key-{k}save").get_by_role("button", name="Save changes").first.is_disabled()


def test_after_watcher_passes_the_status_is_green_and_the_snapshot_a_report(server: tuple[str, str, dict[str, int]],
                                                                            page: Any) -> None:
    base, url, ids = server
    # two watcher passes: the status turns green, the results page shows the snapshot as a report
    engine = make_engine(url)
    for _ in range(2):
        run_pass(engine, settings=WatchSettings())
    engine.dispose()
    page.goto(base)
    page.locator(".st-key-watcher_status").get_by_text("Watcher: last pass", exact=False).wait_for()
    page.goto(f"{base}/results?experiment={ids['running']}")
    page.locator(".st-key-snapshot_box").wait_for()
    page.locator(".st-key-r_verdict").wait_for()
    page.locator("svg.abcore-chart").first.wait_for()
    settle(page)
    shown = page.locator("[data-testid=stMain]").inner_text()
    assert "Lift [CI]" in shown and "per watcher pass" in shown
    for raw in ("keep_running", "p_value_adjusted", "lift_ci_low"):
        assert raw not in shown, raw
    assert page.locator("[data-testid=stPlotlyChart]").count() == 0
    assert page.locator("[data-testid=stDataFrame]").count() == 0
