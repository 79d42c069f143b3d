"""The router loads the analysis code on a background thread, once per server (ui.preload_analysis_code)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

from abcore.dashboard import APP_PATH, ui

ROOT = Path(__file__).resolve().parents[2]
APP = str(APP_PATH)


def test_the_first_page_view_starts_one_preload_thread(store: str) -> None:
    ui.preload_analysis_code.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    thread = ui.preload_analysis_code()
    assert thread is ui.preload_analysis_code() and thread.name == "abcore-preload"  # once per server
    thread.join(timeout=60)
    assert not thread.is_alive()


def test_the_preload_imports_the_analysis_stack_in_a_fresh_interpreter() -> None:
    # A fresh process: in this one the other tests have imported abcore.analysis.pipeline already.
    code = "\n".join([
        "import sys", "from abcore.dashboard import ui",
        *(f"assert {m!r} not in sys.modules" for m in ui.PRELOADED_MODULES),
        "ui.preload_analysis_code().join(60)",
        "missing = [m for m in ui.PRELOADED_MODULES if m not in sys.modules]",
        "assert not missing, missing",
    ])
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
