"""Sign-in survives a reload and a results link opened in the same tab (signed session cookie,
abcore.sessions), and signing out ends it. Real Chromium, a dashboard with one configured editor."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from abcore.auth import hash_password
from abcore.db import init_db, make_engine

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 60_000


def test_sign_in_survives_reload_and_same_tab_links(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing")
        pytest.skip(f"browser end-to-end test skipped: {CHROMIUM} is missing")
    from playwright.sync_api import expect, sync_playwright

    url = f"sqlite:///{tmp_path / 's.db'}"
    init_db(make_engine(url)).dispose()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = dict(os.environ, ABCORE_DATABASE_URL=url, ABCORE_SESSION_SECRET="e2e-secret",
               ABCORE_USERS=json.dumps({"ed": {"password_hash": hash_password("pw-ed-123"), "role": "editor"}}))
    log = (tmp_path / "streamlit.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
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
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
