"""abcore.dashboard.views.charts (SVG charts of the results page) and html.html_table: scales, ticks, gaps, escaping.

Every expected coordinate is derived by hand from the layout constants (margins 64 / 16 / 56 and the
bottom margin of each chart kind) and the linear scale; every tick list from Heckbert's algorithm
worked through by hand in the comment next to it.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from abcore.dashboard.views import charts
from abcore.dashboard.views.html import html_table

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    assert "\n" not in svg  # one line: Markdown would end the HTML block at a blank line
    return ET.fromstring(svg)  # well-formed XML, or this raises


def _all(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(SVG + tag))


@pytest.mark.parametrize(("low", "high", "ticks"), [
    # range 97 -> nice 100; 100 / 4 = 25 -> rounded step 20; floor(0/20)=0, ceil(97/20)=5 -> 0..100
    (0, 97, [0, 20, 40, 60, 80, 100]),
    # range 0.579 -> nice 1; 1 / 4 = 0.25 -> rounded 0.2; floor(-0.123/0.2)=-1, ceil(0.456/0.2)=3
    (-0.123, 0.456, [-0.2, 0, 0.2, 0.4, 0.6]),
    # constant 5: widened by 10 % to [4.5, 5.5]; range 1 -> step 0.2; floor(22.5)=22, ceil(27.5)=28
    (5, 5, [4.4, 4.6, 4.8, 5.0, 5.2, 5.4, 5.6]),
    # zero-width at 0: widened by 1 to [-1, 1]; range 2 -> nice 2; 0.5 -> rounded 0.5
    (0, 0, [-1, -0.5, 0, 0.5, 1]),
    # bounds given in reverse order are swapped
    (10, 0, [0, 2, 4, 6, 8, 10]),
])
def test_nice_ticks_follow_heckbert(low: float, high: float, ticks: list[float]) -> None:
    assert charts.nice_ticks(low, high) == pytest.approx(ticks)


def test_nice_ticks_refuse_missing_bounds() -> None:
    with pytest.raises(ValueError, match="finite"):
        charts.nice_ticks(0, math.nan)


def test_line_chart_places_points_on_the_scale() -> None:
    svg = charts.line_chart(title="t", categories=["2026-01-01", "2026-01-02"], series={"a": [0.0, 10.0]},
                            colors={"a": "#0072B2"}, y_title="y")
    root = _parse(svg)
    # plot: x 64..484 (500 - 64 - 16 = 420 wide, two slots of 210: centres 169 and 379);
    # y 56..240 (340 - 56 - 100 = 184 high); ticks 0..10 by 2, so 0 -> 240 and 10 -> 56
    points = [(c.get("cx"), c.get("cy")) for c in _all(root, "circle")]
    assert points == [("169", "240"), ("379", "56")]
    assert [p.get("points") for p in _all(root, "polyline")] == ["169,240 379,56"]
    tips = [c.findtext(SVG + "title") for c in _all(root, "circle")]
    assert tips == ["2026-01-01 · a: 0.000", "2026-01-02 · a: 10.000"]
    assert root.get("aria-label") == "t" and root.findtext(SVG + "title") == "t"


def test_line_chart_leaves_gaps_for_missing_values() -> None:
    svg = charts.line_chart(title="t", categories=list("abcde"), series={"v": [1, 2, None, math.nan, 5]},
                            colors={"v": "#000"}, y_title="y")
    root = _parse(svg)
    assert len(_all(root, "circle")) == 3  # None and NaN are not drawn
    assert len(_all(root, "polyline")) == 1  # 1-2 joined; 5 stands alone (no line into the gap)


def test_line_chart_zero_line_keeps_zero_in_range() -> None:
    svg = charts.line_chart(title="lift", categories=["d"], series={"b": [5.0]}, colors={"b": "#E69F00"},
                            y_title="Lift (%)", zero_line=True)
    root = _parse(svg)
    dashed = [line for line in _all(root, "line") if line.get("stroke-dasharray")]
    assert len(dashed) == 1
    # ticks over [0, 5]: range 5 -> nice 5; 1.25 -> rounded 1: 0..5; 0 sits on the bottom edge y = 240
    assert dashed[0].get("y1") == "240"


def test_user_names_are_escaped_never_markup() -> None:
    hostile = '<script>alert("x")</script> & <b>'
    svg = charts.line_chart(title=f"Cumulative {hostile}", categories=["d1"], series={hostile: [1.0]},
                            colors={hostile: "#000"}, y_title=hostile)
    root = _parse(svg)
    assert not list(root.iter(SVG + "script")) and not list(root.iter(SVG + "b")) and "<script" not in svg
    assert any(t.text == hostile for t in _all(root, "text"))  # shown as the characters typed


def test_forest_chart_draws_interval_point_and_zero() -> None:
    rows = [charts.ForestRow("m · b", 10.0, 0.0, 20.0, "better"),
            charts.ForestRow("m · c", 5.0, math.nan, math.nan, "inconclusive")]
    svg = charts.forest_chart(title="Lift", rows=rows, colors={"better": "#16a34a", "worse": "#dc2626",
                                                               "inconclusive": "#6b7280"}, x_title="Lift (%)")
    root = _parse(svg)
    circles = _all(root, "circle")
    # ticks over [0, 20]: range 20 -> nice 20; 5 -> rounded 5; plot from the label column
    # 24 + 7 * 5 = 59 to 1000 - 16 - 8 = 976, so 10 sits at (59 + 976) / 2 = 517.5, 5 at 59 + 917 / 4 = 288.25
    assert [c.get("cx") for c in circles] == ["517.5", "288.2"]
    assert [c.get("fill") for c in circles] == ["#16a34a", "#6b7280"]
    intervals = [line for line in _all(root, "line") if line.find(SVG + "title") is not None]
    assert [(i.get("x1"), i.get("x2")) for i in intervals] == [("59", "976")]  # the NaN interval is not drawn
    assert intervals[0].findtext(SVG + "title") == "m · b: +10.00 [+0.00, +20.00] (better)"
    legend = [t.text for t in _all(root, "text")][1:3]
    assert legend == ["better", "inconclusive"]  # only outcomes present, in the colour mapping's order


def test_histogram_bars_are_not_stacked_and_skip_empty_bins() -> None:
    svg = charts.histogram(title="h", edges=[0.0, 1.0, 2.0], counts={"a": [1, 3], "b": [2, 0]},
                           colors={"a": "#1", "b": "#2"}, x_title="x")
    root = _parse(svg)
    rects = [r for r in _all(root, "rect") if r.find(SVG + "title") is not None]
    assert len(rects) == 3  # b's empty second bin draws nothing
    # y ticks over [0, 3]: range 3 -> nice 5; 1.25 -> rounded 1: 0..3; plot 56..284 (340 - 56 - 48 - 8 = 228 high)
    tallest = max(rects, key=lambda r: float(r.get("height")))
    assert (tallest.get("y"), tallest.get("height")) == ("56", "228")
    # x over [0, 2] on 64..484: the second bin starts at 274
    assert tallest.get("x") == "274"


def test_bar_chart_stacks_or_groups() -> None:
    values = {"pos": [3.0, 1.0], "neg": [1.0, 0.0]}
    stacked = _parse(charts.bar_chart(title="f", categories=["a", "b"], values=values,
                                      colors={"pos": "#1", "neg": "#2"}, y_title="n", stacked=True, days=False))
    bars = [r for r in _all(stacked, "rect") if r.find(SVG + "title") is not None]
    # totals 4 and 1: ticks 0..4 (range 4 -> nice 5; 1.25 -> 1); plot 56..284 (340 - 56 - 56 = 228 high), 57 px per unit
    assert [(b.get("y"), b.get("height")) for b in bars] == [("113", "171"), ("56", "57"), ("227", "57")]
    assert len({b.get("x") for b in bars[:2]}) == 1  # one column per category when stacked
    grouped = _parse(charts.bar_chart(title="g", categories=["a"], values={"x": [1.0], "y": [2.0]},
                                      colors={"x": "#1", "y": "#2"}, y_title="n"))
    xs = [float(r.get("x")) for r in _all(grouped, "rect") if r.find(SVG + "title") is not None]
    # one slot of 420 px, group 336 px wide centred at 274: bars at 106 and 106 + 168
    assert xs == [106.0, 274.0]


def test_empty_data_draws_axes_without_failing() -> None:
    _parse(charts.line_chart(title="t", categories=[], series={}, colors={}, y_title="y"))
    _parse(charts.histogram(title="h", edges=[], counts={}, colors={}, x_title="x"))
    _parse(charts.bar_chart(title="b", categories=[], values={}, colors={}, y_title="y"))
    _parse(charts.forest_chart(title="f", rows=[], colors={}, x_title="x"))


def test_html_table_escapes_and_aligns() -> None:
    html = html_table([{"Variant": "<b>x</b>", "Users": "1,200"}, {"Variant": "y & z", "Users": None}])
    assert "\n" not in html and "<b>" not in html
    root = ET.fromstring(html)
    assert [th.text for th in root.iter("th")] == ["Variant", "Users"]
    assert [td.text for td in root.iter("td")] == ["<b>x</b>", "1,200", "y & z", None]
    assert [td.get("align") for td in root.iter("td")][:2] == ["left", "right"]
    assert html_table([]) == ""
