"""The first paint of a fresh server never shows Streamlit's file-name navigation.

Until a session has run app.py, Streamlit only knows the files under ``pages/`` and draws its
own sidebar menu from their names (``app``, ``create``, ``sample size``, ...). The dashboard
turns that menu off (``client.showSidebarNavigation = false``) and draws the router's menu itself
(``ui.sidebar_menu``). A MutationObserver installed before any page script records every text the
sidebar menu ever shows, from the very first paint, in real Chromium.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from abcore.dashboard import APP_PATH
from abcore.store.db import init_db, make_engine
from tests.dashboard.e2e.browser import launch

pytestmark = pytest.mark.e2e

WAIT_MS = 90_000
# Streamlit's file-name menu: the stems of app.py and of the pages/ folder beside it, underscores shown as spaces
PAGES = sorted((APP_PATH.parent / "pages").glob("*.py"))
FILE_NAMES = {APP_PATH.stem, *(p.stem for p in PAGES), *(p.stem.replace("_", " ") for p in PAGES)}
ROUTER_TITLES = ["Experiments", "Create experiment", "Results", "Sample size", "Models", "Metrics"]

RECORDER = """
window.__navTexts = [];
const record = () => {
  document.querySelectorAll('[data-testid="stSidebarNav"] a, [data-testid="stSidebarNavLink"], '
      + '[data-testid="stSidebarNavItems"] a, [data-testid="stPageLink-NavLink"]')
    .forEach(a => { const t = (a.innerText || '').trim(); if (t) window.__navTexts.push(t); });
};
new MutationObserver(record).observe(document, {childList: true, subtree: true, characterData: true});
"""


def _nav_texts(page: object) -> set[str]:
    """Every label the sidebar menu showed, icons and line breaks dropped."""
    raw = page.evaluate("window.__navTexts")  # type: ignore[attr-defined]
    return {re.sub(r"^\W+", "", t.splitlines()[-1]).strip() for t in raw}


def test_fresh_server_never_shows_file_name_navigation(
    tmp_path: Path, need_browser: Callable[[], None], dashboard_server: Callable[..., AbstractContextManager[str]]
) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    url = f"sqlite:///{tmp_path / 'fp.db'}"
    init_db(make_engine(url)).dispose()
    with dashboard_server(url, tmp_path) as base, sync_playwright() as p:
        browser = launch(p)
        expect.set_options(timeout=WAIT_MS)
        # 1. the very first visit of the fresh server is a deep link (the detour through app.py)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.add_init_script(RECORDER)
        page.goto(f"{base}/create")
        expect(page.get_by_role("heading", name="Create experiment")).to_be_visible()
        sidebar = page.locator('[data-testid="stSidebar"]')
        for title in ROUTER_TITLES:
            expect(sidebar.get_by_role("link", name=title, exact=False).first).to_be_visible()
        page.wait_for_timeout(1500)  # a late re-render would still be recorded
        seen = _nav_texts(page)
        assert not (FILE_NAMES & seen), seen
        assert {"Experiments", "Models"} <= seen, seen
        # the menu works: the router's link opens the page
        sidebar.get_by_role("link", name="Models").click()
        expect(page.get_by_role("heading", name="Models")).to_be_visible()
        page.close()
        # 2. a second tab on the landing page
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        page.add_init_script(RECORDER)
        page.goto(base)
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
        page.wait_for_timeout(1000)
        seen = _nav_texts(page)
        assert not (FILE_NAMES & seen), seen
        browser.close()
