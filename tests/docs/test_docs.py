"""The docs tell the truth about the code: every setting and command is documented, every example runs.

* every ``ABCORE_*`` name in ``abcore/`` is a setting of :data:`abcore.config.SETTINGS` (the configuration page
  is generated from that table) or is named on ``docs/reference/configuration.md``;
* every dotted ``abcore.x.y`` reference in ``README.md`` and ``docs/**/*.md`` resolves: an importable module
  or an attribute of one;
* every command and sub-command of the ``abcore`` parser is in the CLI reference (its overview, and the
  section the build generates);
* every fenced ````python`` block of ``README.md`` and ``docs/**/*.md`` runs, the blocks of one page in
  order in one namespace, against a fresh SQLite store holding the demo data; a block that cannot run
  (it needs a cluster, a file or a server) is fenced with a title (````python title="..."``) or preceded
  by ``<!-- norun -->``;
* no project-history words (issue numbers, seed numbers, ``#N``) in the README or the docs.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.rglob("*.md")])

FENCE = re.compile(r"^```python([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NORUN = "<!-- norun -->"
#: A dotted name ``abcore.x[.y...]`` in prose or code. Not one: a TOML table (``[abcore.users.alice]``), a path
#: (``data/abcore.db``) or a file name (``abcore.db.dead-letters.jsonl``, followed by ``-``).
DOTTED = re.compile(r"(?<![\w./\[-])abcore(?:\.[A-Za-z_]\w*)+(?![\w.-])")
HISTORY = re.compile(r"\b(?:issue|seed)[ -]?#?\d+\b|(?<![\w&/#])#\d+\b", re.IGNORECASE)


def _hooks():
    spec = importlib.util.spec_from_file_location("generated_reference", DOCS / "hooks" / "generated_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_setting_is_documented() -> None:
    from abcore.config import SETTINGS

    used = set()
    for path in (ROOT / "abcore").rglob("*.py"):
        used |= set(re.findall(r"\bABCORE_[A-Z0-9_]+\b", path.read_text(encoding="utf-8")))
    page = (DOCS / "reference" / "configuration.md").read_text(encoding="utf-8")
    documented = {spec.env for spec in SETTINGS.values()} | set(re.findall(r"`(ABCORE_[A-Z0-9_]+)`", page))
    missing = sorted(used - documented)
    assert used, "no ABCORE_* name found in abcore/: the scan is broken"
    assert not missing, f"neither in abcore.config.SETTINGS nor on docs/reference/configuration.md: {', '.join(missing)}"
    assert "<!-- generated: settings -->" in page, "the configuration page no longer renders abcore.config.settings_table()"


def test_settings_table_lists_every_setting() -> None:
    from abcore.config import SETTINGS

    generated = _hooks().render_settings()
    for spec in SETTINGS.values():
        assert f"`{spec.env}`" in generated


def _resolves(reference: str) -> bool:
    """True when ``reference`` is an importable module or an attribute (chain) of the longest importable prefix."""
    parts = reference.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            target = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            if not hasattr(target, name):
                return False
            target = getattr(target, name)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_dotted_references_resolve(page: Path) -> None:
    references = sorted(set(DOTTED.findall(page.read_text(encoding="utf-8"))))
    stale = [reference for reference in references if not _resolves(reference)]
    assert not stale, f"{page.relative_to(ROOT)} names what the code does not have: {', '.join(stale)}"


def test_every_cli_command_is_documented() -> None:
    hooks = _hooks()
    commands = [command for command, _, _ in hooks.cli_commands()]
    assert "settings require-approval" in commands and "api-key create" in commands  # the walk reaches sub-commands
    overview = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    generated = hooks.render_cli()
    not_in_overview = [c for c in commands if f"abcore {c}" not in overview and f"`{c}`" not in overview]
    not_generated = [c for c in commands if f"## `abcore {c}`" not in generated]
    assert not not_in_overview, f"commands missing from docs/reference/cli.md: {', '.join(not_in_overview)}"
    assert not not_generated, f"commands missing from the generated CLI reference: {', '.join(not_generated)}"


def test_http_reference_lists_every_route() -> None:
    hooks = _hooks()
    generated = hooks.render_http()
    for path, operations in hooks.openapi_schema()["paths"].items():
        for method in operations:
            assert f"`{method.upper()} {path}`" in generated


def test_tables_reference_lists_every_table() -> None:
    from sqlmodel import SQLModel

    import abcore.store.tables  # noqa: F401

    generated = _hooks().render_tables()
    prose = (DOCS / "reference" / "tables.md").read_text(encoding="utf-8")
    for table in SQLModel.metadata.tables:
        assert f"`{table}`" in generated
        assert f"`{table}`" in prose, f"table {table} has no description in docs/reference/tables.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_history_words(page: Path) -> None:
    found = [m.group(0) for m in HISTORY.finditer(page.read_text(encoding="utf-8"))]
    assert not found, f"{page.relative_to(ROOT)} says {found}: describe the change in words a user knows"


def runnable_blocks(page: Path) -> list[tuple[int, str]]:
    """The page's ```python blocks that are meant to run: (line number, code), in page order."""
    text = page.read_text(encoding="utf-8")
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        if match.group(1).strip() or before.endswith(NORUN):
            continue
        blocks.append((text.count("\n", 0, match.start()) + 2, match.group(2)))
    return blocks


RUNNER = """
import json, sys, traceback
page, blocks = json.load(sys.stdin)
namespace = {"__name__": "__docs__"}
for line, code in blocks:
    try:
        exec(compile(code, f"{page}:{line}", "exec"), namespace)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"the example at {page}:{line} failed")
"""


EXAMPLE_PAGES = [page for page in PAGES if runnable_blocks(page)]


@pytest.mark.parametrize("page", EXAMPLE_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run(page: Path, demo_store: Path, tmp_path: Path) -> None:
    store = tmp_path / "abcore.db"
    shutil.copy(demo_store, store)
    env = {**os.environ, "ABCORE_DATABASE_URL": f"sqlite:///{store}", "PYTHONPATH": str(ROOT)}
    payload = json.dumps([str(page.relative_to(ROOT)), runnable_blocks(page)])
    done = subprocess.run([sys.executable, "-c", RUNNER], input=payload, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
