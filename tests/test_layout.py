"""The shape of the package stays readable: no module over 600 lines, no function over 80, no class over 400.

Counted with :mod:`ast` over ``abcore/`` (a function's lines run from its ``def`` to its last line, decorators
and docstring included); the migrations' generated upgrades count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "abcore"
MAX_MODULE_LINES, MAX_FUNCTION_LINES, MAX_CLASS_LINES = 600, 80, 400


def _too_long() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        where = path.relative_to(PACKAGE.parent)
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{where}: module of {lines} lines")
        for node in ast.walk(ast.parse(source)):
            limit = {ast.FunctionDef: MAX_FUNCTION_LINES, ast.AsyncFunctionDef: MAX_FUNCTION_LINES,
                     ast.ClassDef: MAX_CLASS_LINES}.get(type(node))
            if limit and (length := node.end_lineno - node.lineno + 1) > limit:  # type: ignore[attr-defined]
                found.append(f"{where}:{node.lineno}: {node.name} has {length} lines (at most {limit})")  # type: ignore[attr-defined]
    return found


def test_no_unit_is_too_long_to_read_at_once() -> None:
    assert not _too_long(), "split these:\n" + "\n".join(_too_long())
