"""Fixtures for the dashboard's AppTest tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from abcore.dashboard import APP_PATH

APP = str(APP_PATH)


@pytest.fixture
def store(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The dashboard's database: a fresh SQLite file, open mode (no users), empty Streamlit caches."""
    monkeypatch.setenv("ABCORE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("ABCORE_USERS", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    yield sqlite_url
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def open_results(store: str) -> Callable[..., AppTest]:
    """``open_results(ref, **session_state)``: the results page of ``ref`` (id or name) through the router,
    live refresh off, the given widget state set; fails on an exception of the page."""

    def open_(ref: str, **state: Any) -> AppTest:
        at = AppTest.from_file(APP, default_timeout=60)
        at.run()
        at.switch_page("pages/results.py")
        at.session_state["live_refresh"] = False
        for key, value in state.items():
            at.session_state[key] = value
        at.query_params["experiment"] = ref
        at.run()
        assert not at.exception, (ref, at.exception)
        return at

    return open_
