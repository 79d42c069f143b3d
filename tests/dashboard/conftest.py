"""Fixtures for the dashboard's AppTest tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import streamlit as st


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
