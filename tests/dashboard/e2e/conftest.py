"""Shared set-up of the browser tests: is Chromium there, and a dashboard server on a free port.

``need_browser`` skips a test without Debian's Chromium or the playwright package (and fails it
when ``CI`` is set); ``dashboard_server(db_url, workdir)`` is a context manager that runs
the command of ``abcore dashboard`` over ``db_url`` on a free port, waits for its health check and yields
the base URL, stopping the server afterwards (its log is ``workdir/streamlit.log``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import pytest

from abcore.cli.servers import streamlit_command
from tests.dashboard.e2e.browser import CHROMIUM, ROOT

START_TIMEOUT_S = 60.0


def _missing_browser() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium package)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright Python package is not installed"
    return None


@pytest.fixture(scope="session")
def need_browser() -> Callable[[], None]:
    """Call it first in a browser fixture: skips without Chromium / playwright, fails instead in CI."""

    def check() -> None:
        missing = _missing_browser()
        if missing:
            if os.environ.get("CI"):
                pytest.fail(f"browser end-to-end test cannot run in CI: {missing}")
            pytest.skip(f"browser end-to-end test skipped: {missing}")

    return check


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def dashboard_process(db_url: str, workdir: Path, env: Mapping[str, str] | None = None, *,
                      script: Path | None = None, cwd: Path | None = None) -> Iterator[str]:
    """Serve the dashboard (``script``: another checkout's main script, for before/after benchmarks) over
    ``db_url`` on a free port until the block ends; yields its base URL once the health check answers."""
    port = _free_port()
    environment = {k: v for k, v in os.environ.items() if k != "ABCORE_USERS"}  # open mode unless env says
    environment["ABCORE_DATABASE_URL"] = db_url
    environment.update(env or {})
    log_path = workdir / "streamlit.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        _with_script(streamlit_command("127.0.0.1", port, extra=["--server.fileWatcherType", "none"]), script),
        cwd=cwd or ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start:\n" + log_path.read_text())
            time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _with_script(command: list[str], script: Path | None) -> list[str]:
    """``command`` (``python -m streamlit run <APP_PATH> ...``) running ``script`` instead, when given."""
    return command if script is None else [*command[:4], str(script), *command[5:]]


@pytest.fixture(scope="session")
def dashboard_server() -> Callable[..., AbstractContextManager[str]]:
    """``with dashboard_server(db_url, workdir, env=None) as base_url: ...`` (see the module docstring)."""
    return dashboard_process
