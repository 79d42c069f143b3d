"""abcore dashboard: the router and the shared sidebar (database in use, sign-in, live refresh). No logic here."""

from __future__ import annotations

import streamlit as st

from pages import _ui

st.set_page_config(page_title="abcore experiments", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/experiments.py", title="Experiments", icon="🧪", url_path="experiments", default=True),
    st.Page("pages/create.py", title="Create experiment", icon="➕", url_path="create"),
    st.Page("pages/results.py", title="Results", icon="📊", url_path="results"),
    st.Page("pages/sample_size.py", title="Sample size", icon="🧮", url_path="sample_size"),
    st.Page("pages/models.py", title="Models", icon="🤖", url_path="models"),
]

page = st.navigation(PAGES)

allowed = _ui.auth_gate()
with st.sidebar:
    st.toggle(
        "Live refresh",
        value=True,
        key="live_refresh",
        help="Results of running experiments refresh by themselves every few seconds.",
    )
    st.caption(f"Database: `{_ui.database_label()}`")

if allowed:
    _ui.show_flashes()
    page.run()
