"""Where the browser tests find Chromium, how they start it, and where they leave screenshots.

Debian's Chromium (``/usr/bin/chromium``) is driven by Playwright; ``playwright install`` is never
used. Screenshots go to ``tests/artifacts/`` (git-ignored).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def launch(p: Playwright) -> Browser:
    """Headless Debian Chromium with :data:`CHROMIUM_ARGS`; makes sure :data:`ARTIFACTS` exists."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
