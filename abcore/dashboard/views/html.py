"""User text and tables made safe for Streamlit's Markdown: :func:`plain_text` shows text literally (no Markdown,
no links, no HTML) wherever Markdown is drawn, :func:`html_text` escapes text inside HTML, :func:`html_table`
renders rows of formatted cells as an escaped HTML table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any


@dataclass(frozen=True)
class Link:
    """A table cell that links to a page of the dashboard: ``text`` shown, ``href`` a relative URL
    (``results?experiment=3``), both escaped by :func:`html_table`."""

    text: str
    href: str

# Streamlit's Markdown turns some plain text into something else after it has parsed (and unescaped) it:
# GFM's bare links (``http://x``, ``www.x``, ``a@b.c``), emoji and icon short codes (``:smile:``,
# ``:material/home:``, ``:streamlit:``) and arrows (``->`` shown as ``→``). Each pattern needs its characters
# in one run of text, so an empty ``:small[]`` (an empty <span>: no character, nothing to copy) before every
# character that could continue such a pattern splits the run without changing the text.
_SPLIT = ":small[]"
_SPLIT_BEFORE = frozenset(".@:-<>=")


def _inert(c: str) -> str:
    if c.isascii() and not c.isalnum() and c.isprintable() and c != " ":  # ASCII punctuation: escaped
        return (_SPLIT if c in _SPLIT_BEFORE else "") + "\\" + c
    return c


def plain_text(text: object) -> str:
    """Markdown that shows ``text`` (a name, description, message) as the characters typed, in any of
    Streamlit's Markdown places: ``st.markdown``, ``st.caption``, alerts, toasts, titles and widget labels.

    Every ASCII punctuation character is backslash-escaped, so nothing becomes a link, image, emphasis,
    code, HTML, heading, list, quote, table, math or colour; bare links, short codes and arrows are split by
    an empty ``:small[]`` span (see ``_SPLIT``). No character is added: text copied from the page equals
    ``text``. Line breaks are kept; leading spaces are not read as a code block. ``None`` gives ``""``.
    """
    if text is None or text == "":
        return ""
    lines = str(text).replace("\r\n", "\n").split("\n")
    out = []
    for line in lines:
        body = line.lstrip(" ")
        out.append("&#32;" * (len(line) - len(body)) + "".join(_inert(c) for c in body))
    return "  \n".join(out)


def html_text(text: object) -> str:
    """``text`` for the inside of an HTML block or attribute (tables, charts): HTML-escaped, and ``:`` as
    ``&#58;`` (Streamlit rewrites ``:material/`` in the page source, even inside HTML)."""
    return escape("" if text is None else str(text)).replace(":", "&#58;")


#: :func:`html_table` with ``fit=True``: as wide as its column, never wider (a long word breaks if it must),
#: with narrower cell padding than Streamlit's tables.
FIT_CSS = ("<style>table.abcore-fit{width:100%;font-size:0.875rem;overflow-wrap:break-word}"
           "table.abcore-fit th,table.abcore-fit td{padding:4px 6px}</style>")


def html_table(rows: Sequence[Mapping[str, Any]], *, key_columns: int = 1, fit: bool = False) -> str:
    """Rows of already formatted cells as one line of HTML table markup for ``st.markdown``.

    The columns are the first row's keys; every cell is escaped (names come from users); the first
    ``key_columns`` columns are left-aligned labels, the others right-aligned figures; a :class:`Link` cell is a
    link. ``fit``: the table takes its column's width and wraps its cells to stay within it (many columns). One line, because
    Markdown ends an HTML block at a blank line. An empty ``rows`` gives an empty string. Plain HTML
    instead of ``st.table``: the browser draws it with the page's text, without loading a table chunk
    (measured, docs site: Performance, "Results page speed in the browser").
    """
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(tag: str, i: int, value: Any) -> str:
        align = "left" if i < key_columns else "right"  # an attribute, not a style: no CSS to parse per cell
        if isinstance(value, Link):  # same tab, like Streamlit's page links
            shown = f'<a href="{html_text(value.href)}" target="_self">{html_text(value.text)}</a>'
        else:
            shown = html_text(value)
        return f'<{tag} align="{align}">{shown}</{tag}>'

    head = "".join(cell("th", i, c) for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(cell("td", i, row.get(c)) for i, c in enumerate(columns)) + "</tr>"
                   for row in rows)
    table = '<table class="abcore-table abcore-fit">' if fit else '<table class="abcore-table">'
    return f'{FIT_CSS if fit else ""}{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
