"""abcore dashboard: the router. No logic here.

Each page starts with ``ui.start_page()`` (sign-in gate, shared sidebar), so the
gate holds however Streamlit reaches the page script.
"""

from __future__ import annotations

import streamlit as st

from abcore.dashboard import ui

st.set_page_config(page_title="abcore experiments", page_icon="🧪", layout="wide")

PAGES = {
    "experiments.py": st.Page("pages/experiments.py", title="Experiments", icon="🧪", url_path="experiments", default=True),
    "create.py": st.Page("pages/create.py", title="Create experiment", icon="➕", url_path="create"),
    "edit.py": st.Page("pages/edit.py", title="Edit experiment", icon="✏️", url_path="edit"),
    "results.py": st.Page("pages/results.py", title="Results", icon="📊", url_path="results"),
    "layers.py": st.Page("pages/layers.py", title="Layers", icon="🧱", url_path="layers"),
    "metrics.py": st.Page("pages/metrics.py", title="Metrics", icon="📏", url_path="metrics"),
    "sample_size.py": st.Page("pages/sample_size.py", title="Sample size", icon="🧮", url_path="sample_size"),
    "models.py": st.Page("pages/models.py", title="Models", icon="🤖", url_path="models"),
}

# position="hidden" + showSidebarNavigation=false (abcore dashboard's options): the sidebar menu is drawn by
# ui.sidebar_menu (on every page), so a fresh server never shows Streamlit's file-name menu first.
page = st.navigation(list(PAGES.values()), position="hidden")
ui.set_menu(PAGES)
ui.preload_analysis_code()
ui.route_pending_page(PAGES)

page.run()
