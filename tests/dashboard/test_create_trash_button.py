"""The create form's trash buttons are named "Remove variant N" for screen readers.

An icon-only Streamlit button is announced by its hidden fallback text "delete icon"; the label is
now the name (visually hidden by ``pages/create.py``'s TRASH_CSS; checked in Chromium by hand:
``get_by_role("button", name="Remove variant 1")`` finds one button, ``name="delete icon"`` none).
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from abcore.dashboard import APP_PATH

APP = str(APP_PATH)


def test_trash_buttons_are_named_per_variant(store: str) -> None:
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("pages/create.py").run()
    assert not at.exception, at.exception
    labels = [b.label for b in at.button if b.key and b.key.startswith("v_remove_")]
    assert labels == ["Remove variant 1", "Remove variant 2"]
    at.button(key="add_variant").click().run()
    labels = [b.label for b in at.button if b.key and b.key.startswith("v_remove_")]
    assert labels == ["Remove variant 1", "Remove variant 2", "Remove variant 3"]
