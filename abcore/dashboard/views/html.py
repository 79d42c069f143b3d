"""User text and tables made safe for ``st.markdown``: :func:`plain_text` shows text literally (no Markdown,
no links, no HTML), :func:`html_table` renders rows of formatted cells as an escaped HTML table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

_MARKDOWN_SPECIALS = "\\`*_{}[]()<>#+-!|~$&"

# GFM turns bare ``http://...``, ``www.x`` and ``a@b.c`` into links after parsing, even when escaped
# or written as character references; an invisible WORD JOINER (U+2060) after ``:`` and before ``.``
# and ``@`` breaks those patterns without changing what the reader sees.
_WJ = "\u2060"

_AUTOLINK_CHARS = {":": ":" + _WJ, ".": _WJ + ".", "@": _WJ + "@"}


def plain_text(text: str | None) -> str:
    """User text (names, descriptions, hypotheses) escaped for ``st.markdown``: shown literally.

    Every Markdown control character is backslash-escaped (and ``:``, ``.`` and ``@`` get an
    invisible word joiner that GFM's bare-link detection does not match across), so line starts cannot open a
    heading, list or quote and so ``[x](http://...)`` or ``![](http://tracker/img.png)`` typed into a
    description shows as those characters: no link, no remote image, no HTML.
    """
    if not text:
        return ""
    out = "".join(_AUTOLINK_CHARS.get(c) or ("\\" + c if c in _MARKDOWN_SPECIALS else c) for c in str(text))
    return out.replace("\n", "  \n")


def html_table(rows: Sequence[Mapping[str, Any]], *, key_columns: int = 1) -> str:
    """Rows of already formatted cells as one line of HTML table markup for ``st.markdown``.

    The columns are the first row's keys; every cell is escaped (names come from users); the first
    ``key_columns`` columns are left-aligned labels, the others right-aligned figures. One line, because
    Markdown ends an HTML block at a blank line. An empty ``rows`` gives an empty string. Plain HTML
    instead of ``st.table``: the browser draws it with the page's text, without loading a table chunk
    (measured, docs site: Performance, "Results page speed in the browser").
    """
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(tag: str, i: int, value: Any) -> str:
        align = "left" if i < key_columns else "right"  # an attribute, not a style: no CSS to parse per cell
        return f'<{tag} align="{align}">{escape("" if value is None else str(value))}</{tag}>'

    head = "".join(cell("th", i, c) for i, c in enumerate(columns))
    body = "".join("<tr>" + "".join(cell("td", i, row.get(c)) for i, c in enumerate(columns)) + "</tr>"
                   for row in rows)
    return f'<table class="abcore-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
