"""mkdocs hook: reference sections generated from the code at build time, so they cannot drift from it.

A page asks for a section with a marker line; the hook replaces the marker with Markdown:

* ``<!-- generated: cli -->``: every command and sub-command of :func:`abcore.cli.main.build_parser`,
  with its usage line and each option's help and default;
* ``<!-- generated: http -->``: every route of the HTTP API's OpenAPI schema (method, path, summary,
  parameters, request body, answers);
* ``<!-- generated: tables -->``: every table of the store (``abcore/store/tables.py``) with its columns;
* ``<!-- generated: settings -->``: every ``ABCORE_*`` setting, :func:`abcore.config.settings_table` (variable,
  type, default, meaning), so the page and :data:`abcore.config.SETTINGS` are one definition.

The render functions are plain functions of nothing, so ``tests/docs`` checks them without mkdocs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the checkout's abcore, also when mkdocs runs outside the venv's editable install
    sys.path.insert(0, str(ROOT))


def _cell(text: object) -> str:
    """Text safe inside a Markdown table cell (one line, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|")


# --------------------------------------------------------------------------- CLI


def cli_commands(parser: argparse.ArgumentParser | None = None) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    """Every command path of the ``abcore`` parser, depth first: ``("settings require-approval", parser, help)``."""
    from abcore.cli.main import build_parser

    yield from _walk(parser or build_parser(), "")


def _walk(parser: argparse.ArgumentParser, path: str) -> Iterator[tuple[str, argparse.ArgumentParser, str]]:
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
        for name, sub in action.choices.items():
            command = f"{path} {name}".strip()
            yield command, sub, helps.get(name, "")
            yield from _walk(sub, command)


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(f"`{option}`" for option in action.option_strings)
            if action.nargs != 0:
                name += f" `{action.metavar or action.dest.upper()}`"
        else:
            name = f"`{action.metavar or action.dest.upper()}`"
        help_text = formatter._expand_help(action) if action.help else ""
        if action.choices and not isinstance(action.choices, dict):
            help_text += " (one of: " + ", ".join(f"`{choice}`" for choice in action.choices) + ")"
        default = action.default
        unset = default in (None, False, argparse.SUPPRESS) or action.nargs == 0 or "default" in help_text
        shown = "" if unset else f"`{default}`"  # a default the help names is often the environment's (e.g. $USER)
        rows.append(f"| {name} | {_cell(help_text)} | {shown} |")
    if not rows:
        return []
    return ["| argument or option | meaning | default |", "| --- | --- | --- |", *rows, ""]


def render_cli() -> str:
    """The CLI reference: the global options, then one section per command path with usage and options."""
    from abcore.cli.main import build_parser

    root = build_parser()
    lines = ["### Global options", "", "```text", root.format_usage().strip(), "```", "", *_options_table(root)]
    for command, parser, help_text in cli_commands(root):
        lines += [f"### `abcore {command}`", "", _cell(help_text or parser.description or ""), ""]
        lines += ["```text", parser.format_usage().strip(), "```", ""]
        lines += _options_table(parser)
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTTP


def openapi_schema() -> dict[str, Any]:
    """The HTTP API's OpenAPI schema, from an app over an in-memory store (nothing is served or written)."""
    from abcore.api.app import create_app

    return create_app("sqlite://").openapi()


def _schema_name(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref") or schema.get("items", {}).get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref else schema.get("type", "")


def render_http() -> str:
    """The HTTP reference: one section per route and method, with its parameters, body and answers."""
    lines: list[str] = []
    for path, operations in openapi_schema()["paths"].items():
        for method, op in operations.items():
            lines += [f"## `{method.upper()} {path}`", "", _cell(op.get("summary", "")), ""]
            if op.get("description"):
                lines += [op["description"].strip(), ""]
            params = op.get("parameters", [])
            if params:
                lines += ["| parameter | in | required | type | meaning |", "| --- | --- | --- | --- | --- |"]
                for p in params:
                    schema = p.get("schema", {})
                    kind = _schema_name(schema) or " or ".join(_schema_name(s) for s in schema.get("anyOf", []))
                    lines.append(f"| `{p['name']}` | {p['in']} | {'yes' if p.get('required') else 'no'} | "
                                 f"{_cell(kind)} | {_cell(p.get('description', schema.get('description', '')))} |")
                lines.append("")
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                lines += [f"Request body: `{_schema_name(body)}` (JSON).", ""]
            answers = ", ".join(f"`{code}` {_cell(r.get('description', ''))}" for code, r in op.get("responses", {}).items())
            lines += [f"Answers: {answers}.", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- store tables


def render_tables() -> str:
    """The store's tables, as SQLModel declares them: columns with type, nullability, keys and indexes."""
    from sqlmodel import SQLModel

    import abcore.store.tables  # noqa: F401 - registers every table on SQLModel.metadata

    lines: list[str] = []
    for table in sorted(SQLModel.metadata.sorted_tables, key=lambda t: t.name):
        lines += [f"### `{table.name}`", "", "| column | type | null | key |", "| --- | --- | --- | --- |"]
        for column in table.columns:
            keys = []
            if column.primary_key:
                keys.append("primary key")
            keys += [f"→ `{fk.target_fullname}`" for fk in column.foreign_keys]
            if column.unique:
                keys.append("unique")
            null = "yes" if column.nullable else "no"
            lines.append(f"| `{column.name}` | {_cell(column.type)} | {null} | {', '.join(keys)} |")
        extras = [f"unique ({', '.join(c.name for c in con.columns)})" for con in table.constraints
                  if con.__class__.__name__ == "UniqueConstraint"]
        extras += [f"index `{ix.name}` ({', '.join(c.name for c in ix.columns)})" for ix in
                   sorted(table.indexes, key=lambda ix: ix.name or "")]
        lines += ["", *(f"* {item}" for item in extras), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- settings


def render_settings() -> str:
    """The settings table of :mod:`abcore.config` (every ``ABCORE_*`` variable abcore reads)."""
    from abcore.config import settings_table

    return settings_table()


# --------------------------------------------------------------------------- mkdocs entry point

SECTIONS: dict[str, Callable[[], str]] = {"cli": render_cli, "http": render_http, "tables": render_tables,
                                          "settings": render_settings}


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace every ``<!-- generated: NAME -->`` marker of a page with its generated section."""
    for name, render in SECTIONS.items():
        marker = f"<!-- generated: {name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, render())
    return markdown
