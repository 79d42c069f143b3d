"""What a browser shows for the Markdown of a Streamlit element, close enough to test user text against.

Streamlit draws Markdown with CommonMark + GFM (tables, strikethrough, bare links) and its own
text rewrites: ``:small[...]`` and the colour directives are spans, bare ``http://``, ``www.`` and
``a@b.c`` become links, ``:name:`` short codes become emoji or icons, ``->`` becomes an arrow. Those
rewrites run on one run of text at a time (between two tags), as :func:`shown` models them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser

from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

# The bare-link patterns of GFM as Streamlit's bundle applies them to each run of text
BARE_LINKS = (re.compile(r"(https?://|www(?=\.))([-.\w]+)([^ \t\r\n]*)", re.IGNORECASE),
              re.compile(r"([-.\w+]+)@([-\w]+(?:\.[-\w]+)+)"))
SHORT_CODE = re.compile(r":[\w+-][\w+-]*:")
ARROWS = re.compile(r"(^|\s)(<->|->|<-|--|>=|<=|~=)(\s|$)")
_DIRECTIVE = re.compile(r":(?:small|red|orange|yellow|green|blue|violet|gray|grey|rainbow|primary)(?:-badge|-background)?\[")

_MD = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


@dataclass(frozen=True)
class Shown:
    """The tags drawn, the runs of text between tags and the whole visible text."""

    tags: tuple[str, ...]
    runs: tuple[str, ...]
    text: str

    def links(self) -> list[str]:
        """Links and images: drawn as tags, or bare links the browser would turn into links."""
        found = [f"<{t}>" for t in self.tags if t in ("a", "img")]
        return found + [f"bare link {m.group(0)!r}" for run in self.runs for p in BARE_LINKS for m in p.finditer(run)]

    def problems(self) -> list[str]:
        """Links, images, code, emphasis, HTML and text the browser would rewrite (short codes, arrows)."""
        found = self.links() + [f"<{t}>" for t in self.tags if t not in ("p", "br", "span")]
        for run in self.runs:
            found += [f"short code {m.group(0)!r}" for m in SHORT_CODE.finditer(run)]
            found += [f"arrow {m.group(2)!r}" for m in ARROWS.finditer(run)]
        return found


def _directives_as_spans(source: str) -> str:
    """``:small[x]`` and the colour directives as ``<span>x</span>`` (brackets balanced, escapes skipped)."""
    out, i = [], 0
    while (m := _DIRECTIVE.search(source, i)) is not None:
        if m.start() and source[m.start() - 1] == "\\":
            out.append(source[i:m.end()])
            i = m.end()
            continue
        out.append(source[i:m.start()] + "<span>")
        depth, j = 1, m.end()
        while j < len(source) and depth:
            if source[j] == "\\":
                out.append(source[j:j + 2])
                j += 2
                continue
            depth += {"[": 1, "]": -1}.get(source[j], 0)
            if depth:
                out.append(source[j])
            j += 1
        out.append("</span>")
        i = j
    return "".join(out) + source[i:]


class _Runs(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.runs: list[str] = [""]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.runs.append("")

    def handle_endtag(self, tag: str) -> None:
        self.runs.append("")

    def handle_data(self, data: str) -> None:
        self.runs[-1] += data


def shown(markdown: str) -> Shown:
    """What Streamlit draws for ``markdown`` (an element's body or label)."""
    parser = _Runs()
    parser.feed(_MD.render(_directives_as_spans(markdown)))
    runs = tuple(r for r in parser.runs if r)
    return Shown(tuple(parser.tags), runs, "".join(parser.runs).strip("\n"))


def markdown_of(at: AppTest) -> list[str]:
    """The Markdown of every element of a page that Streamlit draws as Markdown (bodies, titles, labels, toasts)."""
    bodies = [e.value for kind in ("markdown", "caption", "warning", "error", "info", "success", "title", "header",
                                   "subheader", "toast") for e in getattr(at, kind)]
    return [str(b) for b in bodies] + [str(e.label) for e in at.expander]


def text(markdown: str) -> str:
    """The visible text of ``markdown`` (what a user reads and copies)."""
    return shown(markdown).text
