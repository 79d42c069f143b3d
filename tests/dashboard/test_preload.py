"""The router loads the analysis code on a background thread, once per server (ui.preload_analysis_code)."""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.testing.v1 import AppTest

import ui

APP = str(Path(__file__).resolve().parents[2] / "app.py")


def test_the_first_page_view_starts_the_preload_once(store: str) -> None:
    ui.preload_analysis_code.clear()
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    assert not at.exception
    thread = ui.preload_analysis_code()  # cached: every call returns the one thread of this server
    assert thread is ui.preload_analysis_code() and thread.name == "abcore-preload"
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert all(name in sys.modules for name in ui.PRELOADED_MODULES)
