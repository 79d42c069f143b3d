"""Names with a remote image, bare links and code marks are drawn as text in real Chromium: no <a> or <img>
to the attacker's host, no request to it, and no invisible character in the text a user copies."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from tests.dashboard.e2e.browser import launch
from tests.dashboard.test_user_text import EXPERIMENT, METRIC, _hostile_experiment

pytestmark = pytest.mark.e2e

WAIT_MS = 60_000


def test_results_and_experiments_pages_show_hostile_names_as_text(
    sqlite_url: str, tmp_path: Path, need_browser: Callable[[], None],
    dashboard_server: Callable[..., AbstractContextManager[str]],
) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    exp_id = _hostile_experiment(sqlite_url)
    requested: list[str] = []
    with dashboard_server(sqlite_url, tmp_path) as base, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        page.on("request", lambda request: requested.append(request.url))
        for url, ready in ((f"{base}/results?experiment={exp_id}", ".st-key-r_forest svg"),
                           (base, f".st-key-exp_card_{exp_id}")):
            page.goto(url)
            page.locator(ready).first.wait_for()
            page.wait_for_timeout(1500)  # the rest of the page settles
            assert page.locator("a[href*='attacker.invalid']").count() == 0, url
            assert page.locator("img[src*='attacker.invalid'], image[href*='attacker.invalid']").count() == 0, url
            text = page.locator("[data-testid=stMain]").inner_text()
            assert "\u2060" not in text, url  # copied text equals the name
            assert EXPERIMENT in text, url
            if "results" in url:
                assert METRIC in text
        browser.close()
    assert not [u for u in requested if "attacker.invalid" in u]
