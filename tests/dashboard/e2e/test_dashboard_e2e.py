"""End to end in a real browser: design an experiment in the form, run it, feed it users
through abcore.assign, read its results, pause and stop it, download its CSV.

Runs the dashboard against a temporary SQLite database and drives Debian's Chromium with
Playwright (never ``playwright install``). Screenshots of every page go to ``tests/artifacts/``
(git-ignored). The walk-through is a sequence of named steps, each taking the page (and what the
step before it produced) and returning what the next step needs.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from sqlmodel import Session

from abcore import assign as abassign
from abcore import experiments as ex
from abcore.experiments.ml_models import create_model
from abcore.store.db import init_db, make_engine
from tests.dashboard.e2e.actions import choose, settle, type_text
from tests.dashboard.e2e.browser import ARTIFACTS, launch

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.e2e

WAIT_MS = 60_000
NAME = "E2E ranking test"
USERS = 300


@pytest.fixture
def server(tmp_path: Path, need_browser: Callable[[], None],
           dashboard_server: Callable[..., AbstractContextManager[str]]) -> Iterator[tuple[str, str]]:
    """A dashboard on a free port over a fresh SQLite file: yields (base URL, database URL)."""
    need_browser()
    url = f"sqlite:///{tmp_path / 'e2e.db'}"
    engine = init_db(make_engine(url))
    with Session(engine) as s:
        create_model(session=s, name="two-tower", version="2")
    engine.dispose()
    with dashboard_server(url, tmp_path) as base:
        yield base, url


def _rgb(page: Page, selector: str) -> tuple[int, int, int]:
    color = page.locator(selector).last.evaluate("el => getComputedStyle(el).color")
    r, g, b = (int(float(x)) for x in color[color.index("(") + 1:color.index(")")].split(",")[:3])
    return r, g, b


def _confirm(page: Page, action: str, experiment_id: int) -> None:
    page.locator(f".st-key-act_{action}_{experiment_id} button").click()
    page.locator(f".st-key-confirm_{experiment_id} button").click(timeout=WAIT_MS)


def _open_the_landing_page(page: Page, base: str) -> None:
    """The landing page first: the router (st.navigation) takes over from there."""
    from playwright.sync_api import expect

    page.goto(base)
    expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "experiments_empty.png"), full_page=True)


def _design_three_variants(page: Page, base: str) -> None:
    """Fill the create form with three variants (the total is red at 90 % and green at 100 %) and submit it."""
    from playwright.sync_api import expect

    page.goto(f"{base}/create")
    type_text(page, "c_name", NAME)
    page.locator(".st-key-add_variant button").click()
    expect(page.locator(".st-key-v_alloc_2 input")).to_be_visible()
    type_text(page, "v_alloc_0", "30")
    type_text(page, "v_alloc_1", "30")
    type_text(page, "v_alloc_2", "30")
    total = page.locator(".st-key-allocation_total")
    expect(total).to_contain_text("90 %")
    r, g, _ = _rgb(page, ".st-key-allocation_total strong")
    assert r > g, f"total at 90 % should be red, got rgb({r}, {g})"
    expect(page.locator(".st-key-create_experiment button")).to_be_disabled()
    type_text(page, "v_alloc_2", "40")
    expect(total).to_contain_text("100 %")
    r, g, _ = _rgb(page, ".st-key-allocation_total strong")
    assert g > r, f"total at 100 % should be green, got rgb({r}, {g})"
    choose(page, "v_model_1", "two-tower (v2)")
    expect(page.locator(".st-key-create_experiment button")).to_be_enabled()
    page.screenshot(path=str(ARTIFACTS / "create.png"), full_page=True)
    settle(page)
    page.locator(".st-key-create_experiment button").click()


def _start_the_draft(page: Page, db_url: str) -> int:
    """The draft appears on the experiments page with its three allocations; start it. Returns its id."""
    from playwright.sync_api import expect

    expect(page.get_by_role("tab", name="Draft (1)")).to_be_visible()
    with Session(make_engine(db_url)) as s:
        experiment = ex.get_experiment(session=s, ref=NAME)
        variants = ex.get_variants(session=s, experiment_id=experiment.id)
    assert experiment.status == "draft"
    assert [v.allocation_pct for v in variants] == [30.0, 30.0, 40.0]
    exp_id = int(experiment.id)  # type: ignore[arg-type]
    page.get_by_role("tab", name="Draft (1)").click()
    _confirm(page, "start", exp_id)
    expect(page.get_by_role("tab", name="Running (1)")).to_be_visible()
    return exp_id


def _users_arrive(db_url: str) -> int:
    """``USERS`` users arrive through abcore.assign, some convert; returns how many were assigned (all)."""
    assigner = abassign.configure(db_url, timeout=10.0, cache_ttl=0.0)
    rng = random.Random(5)
    assigned = 0
    for i in range(USERS):
        user = f"e2e-user-{i}"
        a = assigner.assign(user, NAME, attributes={"country": rng.choice(["DE", "FR"])})
        if a is None:
            continue
        assigned += 1
        if rng.random() < (0.10 if a.is_control else 0.16):
            assigner.track(user, NAME, "conversion")
    abassign.flush()
    assert assigned == USERS
    return assigned


def _read_the_results(page: Page, base: str, exp_id: int) -> None:
    """The results page draws its verdict, health, charts and tables."""
    from playwright.sync_api import expect

    page.goto(f"{base}/results?experiment={exp_id}")
    expect(page.locator(".st-key-r_verdict")).to_be_visible()
    expect(page.locator(".st-key-r_health")).to_be_visible()
    expect(page.locator(".st-key-r_forest svg.abcore-chart")).to_be_visible()
    expect(page.locator(".st-key-r_assignments svg.abcore-chart")).to_be_visible()
    expect(page.get_by_text("conversion · primary")).to_be_visible()
    expect(page.locator("table.abcore-table").first).to_be_visible()
    # an SVG mark's <title> is its tooltip: the forest point of the treatment names it and its lift
    tip = page.locator(".st-key-r_forest circle title").first.text_content() or ""
    assert tip.startswith("conversion · treatment: "), tip
    page.screenshot(path=str(ARTIFACTS / "results.png"), full_page=True)


def _download_the_csvs(page: Page, assigned: int) -> None:
    """Download the assignments and the results CSV from the results page and read them back."""
    with page.expect_download() as download_info:
        page.locator(".st-key-r_download_assignments button").click()
    download = download_info.value
    frame = pd.read_csv(download.path())
    assert len(frame) == assigned
    assert set(frame["user_id"]) == {f"e2e-user-{i}" for i in range(USERS)}
    with page.expect_download() as download_info:
        page.locator(".st-key-r_download_results button").click()
    results = pd.read_csv(download_info.value.path())
    assert list(results["variant"]) == ["treatment", "treatment_2"]


def _pause_then_stop(page: Page, base: str, db_url: str, exp_id: int) -> None:
    """Pause, then stop the experiment on the experiments page; the store and its audit log agree."""
    from playwright.sync_api import expect

    page.goto(base)
    _confirm(page, "pause", exp_id)
    expect(page.get_by_role("tab", name="Paused (1)")).to_be_visible()
    page.get_by_role("tab", name="Paused (1)").click()
    _confirm(page, "stop", exp_id)
    expect(page.get_by_role("tab", name="Completed (1)")).to_be_visible()
    page.get_by_role("tab", name="Completed (1)").click()
    page.screenshot(path=str(ARTIFACTS / "experiments.png"), full_page=True)
    with Session(make_engine(db_url)) as s:
        assert ex.get_experiment(session=s, ref=exp_id).status == "completed"
        actions = [e.action for e in ex.audit_log(session=s, experiment_id=exp_id)]
    assert actions[:3] == ["stop", "pause", "start"]


def _screenshot_the_other_pages(page: Page, base: str) -> None:
    """The sample-size and models pages draw their title; a screenshot of each."""
    for name in ("sample_size", "models"):
        page.goto(f"{base}/{name}")
        page.locator("h1").first.wait_for()
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_design_run_watch_and_conclude_in_the_browser(server: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, db_url = server
    with sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        _open_the_landing_page(page, base)
        _design_three_variants(page, base)
        exp_id = _start_the_draft(page, db_url)
        assigned = _users_arrive(db_url)
        _read_the_results(page, base, exp_id)
        _download_the_csvs(page, assigned)
        _pause_then_stop(page, base, db_url, exp_id)
        _screenshot_the_other_pages(page, base)
        browser.close()


def test_a_shared_results_link_is_the_first_visit_of_a_fresh_server(server: tuple[str, str]) -> None:
    """Before any session has run app.py, Streamlit would serve /results from pages/ with its
    file-name navigation; the page detours through the router and lands on the same page and query."""
    from playwright.sync_api import expect, sync_playwright

    base, db_url = server
    with Session(make_engine(db_url)) as s:
        ex.create_experiment(
            session=s,
            data=ex.ExperimentCreate(
                name="Linked", variants=[ex.VariantCreate(name="a", allocation_pct=50), ex.VariantCreate(name="b", allocation_pct=50)]
            ),
        )
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"{base}/results?experiment=Linked")
        expect(page.get_by_role("heading", name="Linked")).to_be_visible(timeout=WAIT_MS)
        nav = page.locator(".st-key-abcore_menu")  # the router's menu (ui.sidebar_menu); Streamlit's own is off
        expect(nav).to_contain_text("Create experiment")  # the router's titles, not file names
        assert "app" not in [line.strip() for line in nav.inner_text().splitlines()]  # no pages/-folder entry
        assert "/results" in page.url and "experiment=" in page.url
        browser.close()
