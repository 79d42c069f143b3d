"""The shell examples of the README and the docs run as written from a fresh checkout after ``make run``.

* every fenced ````bash`` block of ``README.md`` and ``docs/**/*.md`` either runs here or says why it cannot:
  a title (````bash title="..."``) or ``<!-- norun -->`` before it (it serves forever, needs ``make``, a
  cluster, PostgreSQL, a password, ...), the rule of the Python examples (``tests/docs/test_docs.py``);
* the blocks of one page run in order in one ``bash -euo pipefail``, in a temporary folder laid out as a
  checkout after ``make run``: ``.venv/bin/`` holds ``abcore``, ``python`` and ``jupyter`` (thin wrappers of
  this test's virtualenv, importing this tree's abcore), ``examples/`` is a copy, and ``$ABCORE_DATABASE_URL``
  points at a copy of the demo store — what ``make run`` leaves behind;
* ``curl`` fails on an HTTP error status (``--fail-with-body``), so a step the API refuses fails the test;
* a page that talks to ``http://127.0.0.1:8000`` (where ``make api`` serves) gets a live ``abcore api`` on
  the same store, its address put in place of that one — the only change made to the text.

After the run the test checks what the page promised (the quick start's experiment shipped, the demo's still
running; the notebook saved and its CSV files written).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api.conftest import start_server

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```bash([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NORUN = "<!-- norun -->"
MAKE_API_URL = "http://127.0.0.1:8000"
PREAMBLE = """set -euo pipefail
curl() { command curl --silent --show-error --fail-with-body "$@"; echo; }
"""
#: What a checkout has in .venv/bin after `make run` that the examples call.
VENV_COMMANDS = ("abcore", "python", "jupyter")


def shell_blocks(page: Path) -> list[tuple[int, str, bool]]:
    """The page's ```bash blocks: (line number, code, runs here), in page order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        runs = not match.group(1).strip() and not before.endswith(NORUN)
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(2), runs))
    return blocks


RUNNABLE = [page for page in PAGES if any(runs for _, _, runs in shell_blocks(page))]
SERVES_FOREVER = re.compile(r"^\s*(make (run|test|api|watch)|\S*mkdocs serve|.*--every \d+)", re.MULTILINE)
USES_ABCORE = re.compile(r"(?<![\w/.-])abcore (?!-)[a-z]")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_blocks_that_cannot_run_are_marked_and_commands_are_callable(page: Path) -> None:
    """A block that would serve forever must be marked; every command of a block calls ``.venv/bin/abcore``
    (``make run`` puts ``abcore`` there, not on PATH)."""
    for line, code, runs in shell_blocks(page):
        if runs:
            assert not SERVES_FOREVER.search(code), f"{page.relative_to(ROOT)}:{line} serves forever: mark it {NORUN}"
        bare = [raw for raw in code.splitlines() if USES_ABCORE.search(raw.split("#")[0])]
        assert not bare, f"{page.relative_to(ROOT)}:{line} calls abcore bare (not on PATH after make run): {bare}"


def _checkout(tmp_path: Path) -> Path:
    """A folder laid out like a checkout after ``make run``: .venv/bin wrappers and a copy of examples/."""
    clone = tmp_path / "checkout"
    bin_dir = clone / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    real = Path(sys.executable).parent
    for name in VENV_COMMANDS:
        target = sys.executable if name == "python" else real / name
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec "{target}" "$@"\n')
        wrapper.chmod(0o755)
    shutil.copytree(ROOT / "examples", clone / "examples", ignore=shutil.ignore_patterns("output", "*.out.ipynb"))
    return clone


def _status(store: Path, name: str) -> tuple[str, int | None]:
    with sqlite3.connect(store) as db:
        return db.execute("SELECT status, winner_variant_id FROM ab_experiments WHERE name = ?", (name,)).fetchone()


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_run_as_written(page: Path, demo_store: Path, tmp_path: Path) -> None:
    clone = _checkout(tmp_path)
    store = tmp_path / "abcore.db"
    shutil.copy(demo_store, store)
    url = f"sqlite:///{store}"
    env = {**os.environ, "ABCORE_DATABASE_URL": url, "PYTHONPATH": str(ROOT), "ABCORE_NOTEBOOK_DEMO_SCALE": "0.3"}
    env.pop("ABCORE_NOTEBOOK_DIR", None)
    env.pop("ABCORE_NOTEBOOK_STORE_URL", None)
    script = PREAMBLE + "\n".join(f"# {page.name}:{line}\n{code}" for line, code, runs in shell_blocks(page) if runs)
    server = start_server(url, tmp_path / "api.log") if MAKE_API_URL in script else None
    try:
        if server is not None:
            script = script.replace(MAKE_API_URL, server.url)
        done = subprocess.run(["bash", "-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=900)
    finally:
        if server is not None:
            server.stop()
    assert done.returncode == 0, f"{page.relative_to(ROOT)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    if page.name == "http.md":  # the quick start works on its own experiment, by name, and leaves the demo's alone
        assert _status(store, "lora_boost_test")[0] == "completed" and _status(store, "lora_boost_test")[1] is not None
        assert _status(store, "ranker_two_tower_vs_als") == ("running", None)
        assert (clone / "events.csv").read_text().count("\n") > 1
    if page.name == "analysis.md":  # the notebook command saves the executed notebook and the notebook's files
        saved = clone / "examples" / "analysis" / "ab_testing_analysis.out.ipynb"
        last = [c for c in json.loads(saved.read_text())["cells"] if c["cell_type"] == "code"][-1]
        assert any({"application/vnd.vegalite.v5+json", "text/html"} & set(o.get("data", {})) for o in last["outputs"])
        assert "ab_testing_analysis.out.ipynb" in done.stderr  # jupyter execute says where it saved it
        output = clone / "examples" / "analysis" / "output"
        for what in ("results", "assignments", "events"):
            assert (output / f"ranker_two_tower_vs_als_{what}.csv").stat().st_size > 0
