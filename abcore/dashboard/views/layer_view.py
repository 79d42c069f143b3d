"""Layers in the dashboard, pure: the bar of a layer's ranges, its text, and the layer/holdout line of an experiment.

The bar is HTML (the pages render it with ``st.html``): one segment per range held by a running or paused
experiment, the share the create form is about to claim (hatched), and the free share, in the layer's
hash order (units of 1/:data:`~abcore.assign.layers.LAYER_UNITS`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from abcore import formatting as fmt
from abcore.assign.layers import LAYER_UNITS, free_ranges, reserve, share_units
from abcore.dashboard.views.html import plain_text

#: Colours of the segments: held ranges cycle through these; the claim and the free space have their own.
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#eeca3b", "#9d755d")
CLAIM_COLOUR = "#1f77b4"
FREE_COLOUR = "#e8e8e8"


@dataclass(frozen=True)
class Segment:
    """One piece of the bar: ``[start, end)`` units, its label and its kind (held | claim | free)."""

    start: int
    end: int
    label: str
    kind: str


def segments(holders: Sequence[Any], claim_pct: float = 0.0) -> list[Segment]:
    """The bar's segments: every range of every holder (``LayerHolder``), then the ranges a claim of
    ``claim_pct`` percent would reserve (the lowest free ones, as the start does), then what stays free."""
    held = [Segment(s, e, h.name, "held") for h in holders for s, e in h.ranges]
    taken = [(s.start, s.end) for s in held]
    claim = reserve(taken, share_units(claim_pct)) if claim_pct > 0 else []
    claimed = [Segment(s, e, "this experiment", "claim") for s, e in (claim or [])]
    free = [Segment(s, e, "free", "free") for s, e in free_ranges(taken + [(c.start, c.end) for c in claimed])]
    return sorted(held + claimed + free, key=lambda seg: seg.start)


def bar_html(parts: Sequence[Segment], colours: Mapping[str, str] | None = None, height: int = 22) -> str:
    """The bar as one ``div`` of proportional segments; names are escaped, each segment has a tooltip."""
    colours = dict(colours or {})
    names = list(dict.fromkeys(p.label for p in parts if p.kind == "held"))
    for i, name in enumerate(names):
        colours.setdefault(name, PALETTE[i % len(PALETTE)])
    cells = []
    for p in parts:
        width = 100.0 * (p.end - p.start) / LAYER_UNITS
        if p.kind == "claim":
            style = f"background:repeating-linear-gradient(45deg,{CLAIM_COLOUR},{CLAIM_COLOUR} 4px,#fff 4px,#fff 8px)"
        else:
            style = f"background:{FREE_COLOUR if p.kind == 'free' else colours[p.label]}"
        tip = escape(f"{p.label}: {width:.2f} % (units {p.start}-{p.end})", quote=True)
        cells.append(f'<div title="{tip}" style="width:{width:.4f}%;{style};height:{height}px"></div>')
    return f'<div style="display:flex;width:100%;border:1px solid #ccc;border-radius:4px;overflow:hidden">{"".join(cells)}</div>'


def claim_problem(free_pct: float, claim_pct: float) -> str | None:
    """Why a claim of ``claim_pct`` percent cannot start in a layer with ``free_pct`` free (None when it can)."""
    if claim_pct <= 0 or claim_pct > 100:
        return "The layer share must be more than 0 % and at most 100 %."
    if share_units(claim_pct) > round(free_pct * LAYER_UNITS / 100):
        return f"The layer has {free_pct:g} % free: the experiment could not start while the others run (it can be created)."
    return None


def experiment_line(kind: str, layer: str | None, layer_share: float | None, covered: Sequence[str] | None,
                    holdout_pct: float | None = None) -> str | None:
    """The results page's Markdown line about an experiment's layer or holdout (None for an experiment in no layer);
    names are escaped (:func:`~abcore.dashboard.views.html.plain_text`)."""
    if kind == "holdout":
        scope = ", ".join(plain_text(c) for c in covered) if covered else "every experiment"
        share = f"{holdout_pct:g} % of users" if holdout_pct is not None else "its users"
        return f"Holdout: keeps {share} out of {scope} while it runs; compare `holdout` with `exposed`."
    if layer:
        return f"Layer **{plain_text(layer)}**: holds {layer_share or 0:g} % of the layer, exclusive with its other experiments."
    return None


def interaction_rows(findings: Sequence[Any]) -> list[dict[str, str]]:
    """Table rows of :class:`~abcore.analysis.interactions.InteractionFinding` for the results page, flagged first."""
    rows = []
    for f in sorted(findings, key=lambda f: (not f.flagged, f.adjusted_p if f.adjusted_p == f.adjusted_p else 2.0)):
        what = "assignment dependence" if f.test == "assignment" else f"effect on {f.metric} ({' x '.join(f.treatments or ())})"
        rows.append({
            "With": f.other,
            "Test": what,
            "Estimate": fmt.format_number(f.estimate, 3),
            "p": fmt.format_pvalue(f.p_value),
            "BH-adjusted p": fmt.format_pvalue(f.adjusted_p),
            "Users in both": fmt.format_int(f.users_in_both),
            "Flag": "interaction" if f.flagged else "",
        })
    return rows


def interaction_table(findings: Sequence[Any]) -> str:
    """:func:`interaction_rows` as a Markdown table (every cell escaped: no data grid on the results page)."""
    rows = interaction_rows(findings)
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(plain_text(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)
