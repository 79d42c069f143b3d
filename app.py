"""abcore dashboard: the router. No logic here.

Each page starts with ``ui.start_page()`` (sign-in gate, shared sidebar), so the
gate holds however Streamlit reaches the page script.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="abcore experiments", page_icon="🧪", layout="wide")

PAGES = [
    st.Page("pages/experiments.py", title="Experiments", icon="🧪", url_path="experiments", default=True),
    st.Page("pages/create.py", title="Create experiment", icon="➕", url_path="create"),
    st.Page("pages/results.py", title="Results", icon="📊", url_path="results"),
    st.Page("pages/sample_size.py", title="Sample size", icon="🧮", url_path="sample_size"),
    st.Page("pages/models.py", title="Models", icon="🤖", url_path="models"),
]

page = st.navigation(PAGES)

page.run()
