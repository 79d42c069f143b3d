"""The first paint of a fresh server never shows Streamlit's file-name navigation (issue 15).

Until a session has run app.py, Streamlit only knows the files under ``pages/`` and draws its
own sidebar menu from their names (``app``, ``create``, ``sample size``, ...). The dashboard
turns that menu off (``client.showSidebarNavigation = false``) and draws the router's menu itself
(``ui.sidebar_menu``). A MutationObserver installed before any page script records every text the
sidebar menu ever shows, from the very first paint, in real Chromium.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from abcore.db import init_db, make_engine

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 90_000
# Streamlit's file-name menu: the stems of app.py and pages/*.py, underscores shown as spaces
FILE_NAMES = {"app", *(p.stem for p in (ROOT / "pages").glob("*.py")), *(p.stem.replace("_", " ") for p in (ROOT / "pages").glob("*.py"))}
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _nav_texts(page: object) -> set[str]:
    """Every label the sidebar menu showed, icons and line breaks dropped."""
    raw = page.evaluate("window.__navTexts")  # type: ignore[attr-defined]
    return {re.sub(r"^\W+", "", t.splitlines()[-1]).strip() for t in raw}


def test_fresh_server_never_shows_file_name_navigation(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"browser end-to-end test skipped: {CHROMIUM} is missing")
    from playwright.sync_api import expect, sync_playwright

    url = f"sqlite:///{tmp_path / 'fp.db'}"
    init_db(make_engine(url)).dispose()
    port = _free_port()
    env = dict(os.environ, ABCORE_DATABASE_URL=url)
    env.pop("ABCORE_USERS", None)
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((tmp_path / "streamlit.log").read_text()) from None
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox", "--disable-gpu"])
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
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
