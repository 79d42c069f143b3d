"""Browser actions on a Streamlit page that wait for the script run they cause.

A click that lands while Streamlit re-runs the script for the previous input can be undone by that
run (an opened dropdown closes again before its options are drawn), so each action first waits until
no run is pending: the app root's ``data-test-script-state`` attribute (set by Streamlit's frontend,
and what Streamlit's own browser tests wait on) reads ``notRunning``.
"""

from __future__ import annotations

from typing import Any

SETTLED = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def settle(page: Any) -> None:
    """Wait until the script run of the last input (if any) has finished."""
    page.locator(SETTLED).wait_for(state="attached")


def type_text(page: Any, key: str, text: str) -> None:
    """Type ``text`` into the text input keyed ``key``, commit it with Enter and wait for its run."""
    settle(page)
    box = page.locator(f".st-key-{key} input")
    box.fill(text)
    box.press("Enter")
    settle(page)


def choose(page: Any, key: str, option: str, attempts: int = 6, attempt_ms: int = 10_000) -> None:
    """Open the select box keyed ``key``, click its option ``option`` and wait for the run it causes.

    When the dropdown still closes before ``option`` is drawn, it is opened again, up to ``attempts``
    times, each waiting ``attempt_ms`` for the option.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        settle(page)
        page.locator(f".st-key-{key}").click()
        try:
            page.get_by_role("option", name=option).click(timeout=attempt_ms)
            break
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise
            page.keyboard.press("Escape")
    settle(page)
