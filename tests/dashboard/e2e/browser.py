"""Where the browser tests find Chromium, how they start it, and where they leave screenshots.

Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright; ``playwright install`` is never
used. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
WAIT_S = 60.0
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch(p: Playwright) -> Browser:
    """Headless Debian Chromium with :data:`CHROMIUM_ARGS`; makes sure :data:`ARTIFACTS` exists."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


# What "drawn" means in the DOM: every Vega-Lite chart has its canvas (the sample-size page), every
# SVG chart (abcore.dashboard.views.charts, the results page) and HTML table (abcore.dashboard.views.html.html_table) is in the document,
# every st.table its <table>, and Streamlit shows no running-script indicator.
DRAWN_JS = """() => {
  const vega = [...document.querySelectorAll('[data-testid=stVegaLiteChart], [data-testid=stPlotlyChart]')];
  const svg = [...document.querySelectorAll('svg.abcore-chart')];
  const tables = [...document.querySelectorAll('[data-testid=stTable], [data-testid=stDataFrame]')];
  const html = [...document.querySelectorAll('table.abcore-table')];
  return {
    h1: !!document.querySelector('h1'),
    charts: vega.length + svg.length,
    chartsDrawn: vega.filter(c => c.querySelector('canvas, svg.marks, svg.main-svg')).length + svg.length,
    tables: tables.length + html.length,
    tablesDrawn: tables.filter(t => t.querySelector('table, canvas')).length + html.length,
    running: !!document.querySelector('[data-testid=stStatusWidget]'),
    verdict: !!document.querySelector('.st-key-r_verdict'),
  };
}"""


def open_timed(context: object, url: str, *, charts: int = 0, tables: int = 0) -> tuple[object, float, float, dict]:
    """Open ``url`` in a new tab; return (page, seconds to first content, seconds to fully drawn, DOM state).

    Fully drawn: the title is there, at least ``charts`` charts and ``tables`` tables exist and all of
    them are drawn, and the state held for 300 ms with no script running (so late elements count).
    """
    page = context.new_page()  # type: ignore[attr-defined]
    t0 = time.perf_counter()
    page.goto(url)
    first = drawn = None
    stable_since = None
    state: dict = {}
    while time.perf_counter() - t0 < WAIT_S:
        state = page.evaluate(DRAWN_JS)
        now = time.perf_counter() - t0
        if first is None and state["h1"]:
            first = now
        done = (state["h1"] and not state["running"] and state["charts"] >= charts and state["tables"] >= tables
                and state["chartsDrawn"] == state["charts"] and state["tablesDrawn"] == state["tables"])
        if done:
            if stable_since is None:
                stable_since, drawn = now, now
            elif now - stable_since >= 0.3:
                return page, first, drawn, state
        else:
            stable_since = drawn = None
        page.wait_for_timeout(20)
    raise AssertionError(f"{url} not drawn within {WAIT_S} s: {state}")
