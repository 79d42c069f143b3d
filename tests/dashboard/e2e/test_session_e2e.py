"""Sign-in survives a reload and a results link opened in the same tab (signed session cookie,
abcore.access.sessions), and signing out ends it. Real Chromium, a dashboard with one configured editor."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from abcore.access.users import hash_password
from abcore.store.db import init_db, make_engine
from tests.dashboard.e2e.browser import launch

pytestmark = pytest.mark.e2e

WAIT_MS = 60_000


def test_sign_in_survives_reload_and_same_tab_links(
    tmp_path: Path, need_browser: Callable[[], None], dashboard_server: Callable[..., AbstractContextManager[str]]
) -> None:
    need_browser()
    from playwright.sync_api import expect, sync_playwright

    url = f"sqlite:///{tmp_path / 's.db'}"
    init_db(make_engine(url)).dispose()
    env = {"ABCORE_SESSION_SECRET": "e2e-secret",
           "ABCORE_USERS": json.dumps({"ed": {"password_hash": hash_password("pw-ed-123"), "role": "editor"}})}
    with dashboard_server(url, tmp_path, env=env) as base, sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page()
        page.set_default_timeout(WAIT_MS)
        expect.set_options(timeout=WAIT_MS)
        page.goto(base)
        page.locator(".st-key-login_username input").fill("ed")
        page.locator(".st-key-login_password input").fill("pw-ed-123")
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
        page.wait_for_function("document.cookie.includes('abcore_session=')")
        page.reload()
        expect(page.get_by_role("heading", name="Experiments")).to_be_visible()
        expect(page.get_by_text("ed · editor")).to_be_visible()
        page.goto(f"{base}/results?experiment=nothing")  # a link opened in the same tab
        expect(page.get_by_role("heading", name="Results")).to_be_visible()
        page.locator(".st-key-sign_out button").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        page.wait_for_function("!document.cookie.includes('abcore_session=')")
        page.reload()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        browser.close()
