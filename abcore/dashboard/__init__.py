"""The researchers' dashboard (Streamlit): the only package of abcore that imports streamlit.

``abcore dashboard`` serves it; :data:`APP_PATH` is the script Streamlit runs. Pages under ``pages/`` are
thin: their logic lives in :mod:`abcore.dashboard.views` (pure functions, no Streamlit).
"""

from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"
"""The dashboard's main script (the router), as ``streamlit run`` takes it."""
