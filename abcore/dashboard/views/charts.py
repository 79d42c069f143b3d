"""Charts as self-contained SVG strings, drawn by the browser together with the text around them.

The results page draws its charts from these instead of a chart library: the browser has nothing to
load or compile before it can show them (Vega's 775 kB chunk and its compile step were the largest
part of the results page's time to fully drawn, measured, docs site: Performance, "Results page speed in the browser").

Pure functions over plain numbers and names, no Streamlit. Every promise:

* the SVG is one line of well-formed XML (``st.markdown`` ends an HTML block at a blank line);
* every name from the user is escaped (no markup, no script from a variant or metric name); drawn inside
  an HTML block (``<div>...</div>`` in ``st.markdown``) no text of it is read as Markdown either;
* every mark carries a ``<title>`` (the browser's tooltip, and what a screen reader reads), the chart
  its title as ``aria-label``;
* missing values (None, NaN, infinities) are not drawn, and nothing divides by zero on empty or
  constant data;
* text uses ``currentColor``, so the charts follow the light and the dark theme;
* every mark that fills sets its own colour (the root's ``fill`` is the text colour).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from abcore.dashboard.views.html import html_text

FONT = "font-family:'Source Sans Pro','Source Sans',sans-serif"
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 56, 48
CATEGORY_LABEL_PX = 16  # the room one rotated day label needs along the x axis


@dataclass(frozen=True)
class ForestRow:
    """One row of a forest plot: a label, the estimate and its interval (same unit), and its outcome."""

    label: str
    estimate: float
    low: float
    high: float
    outcome: str


def finite(value: float | None) -> float | None:
    """``value`` as a float, or None when it is missing, NaN or infinite."""
    return float(value) if value is not None and math.isfinite(float(value)) else None


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [low, high] (loose labelling).

    Heckbert, "Nice numbers for graph labels", Graphics Gems (1990): the range and then the step are
    rounded to 1, 2, 5 or 10 times a power of ten; the first tick is at or below ``low``, the last at or
    above ``high``. A zero-width range is widened by one unit (or 10 % of its value) on each side.
    """
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"ticks need finite bounds, got {low}, {high}")
    if low > high:
        low, high = high, low
    if low == high:
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    step = _nice(_nice(high - low, rounded=False) / max(count - 1, 1), rounded=True)
    first, last = math.floor(low / step) * step, math.ceil(high / step) * step
    n = round((last - first) / step)
    return [_clean(first + i * step) for i in range(n + 1)]


def _nice(x: float, *, rounded: bool) -> float:
    exponent = math.floor(math.log10(x))
    fraction = x / 10**exponent
    if rounded:
        nice = 1 if fraction < 1.5 else 2 if fraction < 3 else 5 if fraction < 7 else 10
    else:
        nice = 1 if fraction <= 1 else 2 if fraction <= 2 else 5 if fraction <= 5 else 10
    return nice * 10**exponent


def _clean(x: float) -> float:
    """Float noise off a tick (0.30000000000000004 -> 0.3)."""
    return float(f"{x:.12g}")


def _tick_format(ticks: Sequence[float]) -> str:
    """Enough decimals to tell neighbouring ticks apart, never more."""
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else 1.0
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 0
    return f",.{decimals}f"


def _linear(domain: tuple[float, float], pixels: tuple[float, float]) -> _Scale:
    return _Scale(domain[0], domain[1], pixels[0], pixels[1])


@dataclass(frozen=True)
class _Scale:
    d0: float
    d1: float
    p0: float
    p1: float

    def __call__(self, value: float) -> float:
        span = self.d1 - self.d0
        return self.p0 + (value - self.d0) / span * (self.p1 - self.p0) if span else (self.p0 + self.p1) / 2


def _n(x: float) -> str:
    """A coordinate with one decimal (what a screen shows), without trailing zeros."""
    return f"{x:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, content: str, *, anchor: str = "middle", size: int = 12, weight: str = "normal",
          rotate: float | None = None) -> str:
    """A label; only what differs from the chart's defaults (12 px, centred, currentColor) is written."""
    extra = "" if anchor == "middle" else f' text-anchor="{anchor}"'
    extra += "" if size == 12 else f' font-size="{size}"'
    extra += "" if weight == "normal" else f' font-weight="{weight}"'
    extra += f' transform="rotate({rotate:g} {_n(x)} {_n(y)})"' if rotate is not None else ""
    return f'<text x="{_n(x)}" y="{_n(y)}"{extra}>{html_text(content)}</text>'


def _svg(title: str, width: int, height: int, body: list[str]) -> str:
    """The chart: scales to its column, never wider than ``width`` pixels (text stays at 12 px).

    Text defaults (centred, 12 px, ``currentColor``) sit on the root element, so a label writes only its
    position: the browser's Markdown renderer handles each attribute, and fewer make the page draw sooner.
    """
    label = html_text(title)
    return (f'<svg class="abcore-chart" xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{label}"'
            f' viewBox="0 0 {width} {height}" width="100%" text-anchor="middle" font-size="12" fill="currentColor"'
            f' style="max-width:{width}px;height:auto;{FONT}">'
            f"<title>{label}</title>{_text(width / 2, 20, title, size=15, weight='600')}"
            + "".join(body) + "</svg>")


def _legend(colors: Mapping[str, str], width: int, y: float = 40) -> list[str]:
    """Swatches centred under the title, one per name, in the mapping's order."""
    items = [(str(name), color, 26 + 7 * len(str(name))) for name, color in colors.items()]
    x = (width - sum(w for *_, w in items)) / 2
    out = []
    for name, color, w in items:
        out.append(f'<rect x="{_n(x)}" y="{_n(y - 9)}" width="12" height="12" rx="2" fill="{escape(color)}"/>')
        out.append(_text(x + 17, y + 1, name, anchor="start"))
        x += w
    return out


def _y_axis(ticks: Sequence[float], scale: _Scale, left: float, right: float, title: str, top: float,
            bottom: float) -> list[str]:
    """Grid lines and labels at ``ticks``, the axis title rotated along the left edge."""
    fmt = _tick_format(ticks)
    out = []
    for t in ticks:
        y = scale(t)
        out.append(f'<line x1="{_n(left)}" x2="{_n(right)}" y1="{_n(y)}" y2="{_n(y)}" stroke="currentColor"'
                   ' stroke-opacity="0.15"/>')
        out.append(_text(left - 6, y + 4, format(t, fmt), anchor="end", size=11))
    out.append(_text(16, (top + bottom) / 2, title, rotate=-90))
    return out


def _x_numeric_axis(ticks: Sequence[float], scale: _Scale, y: float, title: str, width: int) -> list[str]:
    fmt = _tick_format(ticks)
    out = [f'<line x1="{_n(scale.p0)}" x2="{_n(scale.p1)}" y1="{_n(y)}" y2="{_n(y)}"'
           ' stroke="currentColor" stroke-opacity="0.4"/>']
    for t in ticks:
        x = scale(t)
        out.append(f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(y)}" y2="{_n(y + 4)}" stroke="currentColor"'
                   ' stroke-opacity="0.4"/>')
        out.append(_text(x, y + 16, format(t, fmt), size=11))
    out.append(_text((MARGIN_LEFT + width - MARGIN_RIGHT) / 2, y + 36, title))
    return out


def _x_category_axis(labels: Sequence[str], centres: Sequence[float], y: float, title: str,
                     plot_width: float, *, rotate: bool = True) -> list[str]:
    """Category labels under the plot: days rotated, every k-th one when they would overlap; names level."""
    every = max(1, math.ceil(len(labels) * CATEGORY_LABEL_PX / max(plot_width, 1))) if rotate else 1
    out = [f'<line x1="{_n(MARGIN_LEFT)}" x2="{_n(MARGIN_LEFT + plot_width)}" y1="{_n(y)}" y2="{_n(y)}"'
           ' stroke="currentColor" stroke-opacity="0.4"/>']
    for i, (label, x) in enumerate(zip(labels, centres, strict=True)):
        if not rotate:
            out.append(_text(x, y + 18, label))
        elif i % every == 0:
            out.append(_text(x + 4, y + 14, label, anchor="end", size=11, rotate=-45))
    if title:
        out.append(_text(MARGIN_LEFT + plot_width / 2, y + 82, title))
    return out


def _value_range(values: Sequence[float], *, include_zero: bool) -> tuple[float, float]:
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    return low, high


def line_chart(*, title: str, categories: Sequence[str], series: Mapping[str, Sequence[float | None]],
               colors: Mapping[str, str], y_title: str, value_format: str = ",.3f", zero_line: bool = False,
               x_title: str = "Day (UTC)", width: int = 500, height: int = 340) -> str:
    """One line with points per series over ordered categories (days); gaps where a value is missing.

    ``series[name][i]`` is the value at ``categories[i]``; ``zero_line`` adds the dashed no-difference
    line at 0 (and keeps 0 in the y range).
    """
    bottom_margin = 100 if x_title else 84
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - bottom_margin
    values = [v for vals in series.values() for x in vals if (v := finite(x)) is not None]
    ticks = nice_ticks(*_value_range(values, include_zero=zero_line))
    y = _linear((ticks[0], ticks[-1]), (MARGIN_TOP + plot_h, MARGIN_TOP))
    step = plot_w / max(len(categories), 1)
    centres = [MARGIN_LEFT + step * (i + 0.5) for i in range(len(categories))]
    body = _legend({name: colors.get(name, "#888") for name in series}, width)
    body += _y_axis(ticks, y, MARGIN_LEFT, MARGIN_LEFT + plot_w, y_title, MARGIN_TOP, MARGIN_TOP + plot_h)
    body += _x_category_axis(categories, centres, MARGIN_TOP + plot_h, x_title, plot_w)
    if zero_line:
        body.append(_dashed_rule(MARGIN_LEFT, MARGIN_LEFT + plot_w, y(0), y(0)))
    for name, vals in series.items():
        color = escape(colors.get(name, "#888"))
        segment: list[str] = []
        segments: list[list[str]] = []
        marks = []
        for i, raw in enumerate(vals[: len(categories)]):
            v = finite(raw)
            if v is None:
                segments.append(segment)
                segment = []
                continue
            px, py = _n(centres[i]), _n(y(v))
            segment.append(f"{px},{py}")
            tip = f"{categories[i]} · {name}: {format(v, value_format)}"
            marks.append(f'<circle cx="{px}" cy="{py}" r="3.5" fill="{color}"><title>{html_text(tip)}</title></circle>')
        segments.append(segment)
        body += [f'<polyline points="{" ".join(s)}" fill="none" stroke="{color}" stroke-width="2"/>'
                 for s in segments if len(s) > 1]
        body += marks
    return _svg(title, width, height, body)


def _dashed_rule(x1: float, x2: float, y1: float, y2: float) -> str:
    return (f'<line x1="{_n(x1)}" x2="{_n(x2)}" y1="{_n(y1)}" y2="{_n(y2)}" stroke="#9ca3af" stroke-width="1.5"'
            ' stroke-dasharray="4 4"/>')


def forest_chart(*, title: str, rows: Sequence[ForestRow], colors: Mapping[str, str], x_title: str,
                 value_format: str = "+.2f", width: int = 1000) -> str:
    """Estimates with their intervals, one row each, and the dashed line at 0 (no difference).

    A row whose interval is missing (None / NaN) is drawn as its point only; the colour is the
    row's outcome (``colors[outcome]``), as judged by the caller from the metric's definition.
    """
    label_w = min(320, 24 + 7 * max((len(r.label) for r in rows), default=10))
    row_h, top = 40, MARGIN_TOP
    height = top + row_h * max(len(rows), 1) + 48
    plot_l, plot_r = label_w, width - MARGIN_RIGHT - 8
    values = [v for r in rows for x in (r.estimate, r.low, r.high) if (v := finite(x)) is not None]
    ticks = nice_ticks(*_value_range(values, include_zero=True))
    x = _linear((ticks[0], ticks[-1]), (plot_l, plot_r))
    body = _legend({o: c for o, c in colors.items() if any(r.outcome == o for r in rows)}, width)
    bottom = top + row_h * max(len(rows), 1)
    for t in ticks:
        body.append(f'<line x1="{_n(x(t))}" x2="{_n(x(t))}" y1="{top}" y2="{bottom}" stroke="currentColor"'
                    ' stroke-opacity="0.12"/>')
    body.append(_dashed_rule(x(0), x(0), top, bottom))
    for i, r in enumerate(rows):
        cy = top + row_h * (i + 0.5)
        color = escape(colors.get(r.outcome, "#888"))
        body.append(_text(plot_l - 10, cy + 4, r.label, anchor="end"))
        est, low, high = finite(r.estimate), finite(r.low), finite(r.high)
        if est is None:
            continue
        interval = (f" [{format(low, value_format)}, {format(high, value_format)}]"
                    if low is not None and high is not None else "")
        tip = html_text(f"{r.label}: {format(est, value_format)}{interval} ({r.outcome})")
        if low is not None and high is not None:
            body.append(f'<line x1="{_n(x(low))}" x2="{_n(x(high))}" y1="{_n(cy)}" y2="{_n(cy)}" stroke="{color}"'
                        f' stroke-width="2.5"><title>{tip}</title></line>')
        body.append(f'<circle cx="{_n(x(est))}" cy="{_n(cy)}" r="6" fill="{color}"><title>{tip}</title></circle>')
    fmt = _tick_format(ticks)
    body.append(f'<line x1="{_n(plot_l)}" x2="{_n(plot_r)}" y1="{bottom}" y2="{bottom}" stroke="currentColor"'
                ' stroke-opacity="0.4"/>')
    body += [_text(x(t), bottom + 16, format(t, fmt), size=11) for t in ticks]
    body.append(_text((plot_l + plot_r) / 2, bottom + 38, x_title))
    return _svg(title, width, height, body)


def histogram(*, title: str, edges: Sequence[float], counts: Mapping[str, Sequence[int]], colors: Mapping[str, str],
              x_title: str, y_title: str = "Events", width: int = 500, height: int = 340) -> str:
    """Counts per bin ``[edges[i], edges[i+1])`` per series, overlaid with transparency (not stacked)."""
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - MARGIN_BOTTOM - 8
    top_count = max((n for c in counts.values() for n in c), default=0)
    ticks_y = nice_ticks(0, max(top_count, 1))
    y = _linear((ticks_y[0], ticks_y[-1]), (MARGIN_TOP + plot_h, MARGIN_TOP))
    x = _linear((edges[0], edges[-1]), (MARGIN_LEFT, MARGIN_LEFT + plot_w)) if edges else None
    body = _legend({name: colors.get(name, "#888") for name in counts}, width)
    body += _y_axis(ticks_y, y, MARGIN_LEFT, MARGIN_LEFT + plot_w, y_title, MARGIN_TOP, MARGIN_TOP + plot_h)
    if x is None or len(edges) < 2:
        return _svg(title, width, height, body)
    for name, series in counts.items():
        color = escape(colors.get(name, "#888"))
        for a, b, n in zip(edges, edges[1:], series, strict=False):
            if n <= 0:
                continue
            tip = html_text(f"{name}: {n:,} events in [{a:,.3f}, {b:,.3f})")
            body.append(f'<rect x="{_n(x(a))}" y="{_n(y(n))}" width="{_n(max(x(b) - x(a), 0.5))}"'
                        f' height="{_n(y(0) - y(n))}" fill="{color}" fill-opacity="0.55"><title>{tip}</title></rect>')
    ticks_x = [t for t in nice_ticks(edges[0], edges[-1], 6) if edges[0] <= t <= edges[-1]] or [edges[0], edges[-1]]
    body += _x_numeric_axis(ticks_x, x, MARGIN_TOP + plot_h, x_title, width)
    return _svg(title, width, height, body)


def bar_chart(*, title: str, categories: Sequence[str], values: Mapping[str, Sequence[float]],
              colors: Mapping[str, str], y_title: str, stacked: bool = False, x_title: str = "",
              days: bool = True, width: int = 500, height: int = 340) -> str:
    """Bars per category, one per series side by side (``stacked``: on top of each other, in order).

    ``values[series][i]`` belongs to ``categories[i]``; ``days``: the labels are rotated and thinned
    like a day axis, otherwise (names) level and all shown.
    """
    bottom_margin = (100 if x_title else 84) if days else 56
    plot_w, plot_h = width - MARGIN_LEFT - MARGIN_RIGHT, height - MARGIN_TOP - bottom_margin
    names = list(values)
    totals = [sum(max(values[s][i], 0) for s in names) if stacked else max((values[s][i] for s in names), default=0)
              for i in range(len(categories))]
    ticks = nice_ticks(0, max(max(totals, default=0), 1))
    y = _linear((ticks[0], ticks[-1]), (MARGIN_TOP + plot_h, MARGIN_TOP))
    step = plot_w / max(len(categories), 1)
    centres = [MARGIN_LEFT + step * (i + 0.5) for i in range(len(categories))]
    group_w = step * 0.8
    bar_w = group_w if stacked else group_w / max(len(names), 1)
    body = _legend({name: colors.get(name, "#888") for name in names}, width)
    body += _y_axis(ticks, y, MARGIN_LEFT, MARGIN_LEFT + plot_w, y_title, MARGIN_TOP, MARGIN_TOP + plot_h)
    for i, category in enumerate(categories):
        base = 0.0
        for j, name in enumerate(names):
            n = values[name][i]
            if n <= 0:
                continue
            left = centres[i] - group_w / 2 + (0 if stacked else j * bar_w)
            low, high = (base, base + n) if stacked else (0.0, n)
            base = high if stacked else base
            tip = html_text(f"{category} · {name}: {n:,g}")
            body.append(f'<rect x="{_n(left)}" y="{_n(y(high))}" width="{_n(max(bar_w - 1, 0.5))}"'
                        f' height="{_n(y(low) - y(high))}" fill="{escape(colors.get(name, "#888"))}">'
                        f"<title>{tip}</title></rect>")
    body += _x_category_axis(categories, centres, MARGIN_TOP + plot_h, x_title, plot_w, rotate=days)
    return _svg(title, width, height, body)
