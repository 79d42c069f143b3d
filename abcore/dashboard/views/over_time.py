"""Pure page logic of the results page's "Effect by days since first exposure" and "Differential impact"
sections: table rows and captions from :class:`abcore.analysis.results.Results` (no streamlit)."""

from __future__ import annotations

from typing import Any

from abcore import formatting as fmt

__all__ = ["differential_caption", "differential_rows", "exposure_day_caption", "exposure_day_rows"]


def exposure_day_rows(results: Any, metric: str) -> list[dict[str, str]]:
    """One row per treatment and exposure day of ``metric``: users, both arms' values, lift and its CI."""
    rows = []
    for r in results.metrics:
        if r.metric != metric:
            continue
        for p in r.by_exposure_day:
            rows.append({
                "day": str(p.day), "variant": r.variant, "users": fmt.format_int(p.users),
                "control users": fmt.format_int(p.control_users), "control": fmt.format_number(p.control_value, 4),
                "value": fmt.format_number(p.value, 4), "lift": fmt.format_pct(p.test.lift, 1, signed=True),
                "95 % CI" if results.alpha == 0.05 else "CI": fmt.format_interval(p.test.lift_ci_low, p.test.lift_ci_high),
            })
    return rows


def exposure_day_caption(results: Any, metric: str) -> str:
    """The novelty test's sentence for ``metric`` (every treatment), or why there is none yet."""
    parts = []
    for r in results.metrics:
        n = r.novelty
        if r.metric != metric or n is None:
            continue
        lr = n.long_run
        verdict = {"novelty": "decaying", "primacy": "growing"}.get(n.pattern, "stable")
        parts.append(f"{r.variant}: lift {verdict} ({fmt.format_pct(n.early.lift, signed=True)} on day 0, "
                     f"{fmt.format_pct(lr.lift, signed=True)} {fmt.format_interval(lr.lift_ci_low, lr.lift_ci_high)}"
                     f" from day 7 on; change {fmt.format_p_clause(n.change.p_value)})")
    if not parts:
        return "Day d: each user's d-th 24 hours since first exposure, users observed for the whole day."
    return "Day d: each user's d-th 24 hours since first exposure. " + "; ".join(parts) + "."


def differential_rows(results: Any) -> list[dict[str, str]]:
    """The surviving cells: attribute, value, metric, variant, users, lift and CI there, adjusted p."""
    di = results.differential_impact
    if di is None:
        return []
    return [{
        "attribute": c.attribute, "value": c.value, "metric": c.metric, "variant": c.variant,
        "users": fmt.format_int(c.users), "control users": fmt.format_int(c.control_users),
        "lift": fmt.format_pct(c.test.lift, 1, signed=True),
        "CI": fmt.format_interval(c.test.lift_ci_low, c.test.lift_ci_high),
        "vs rest (diff)": fmt.format_number(c.versus.delta, 4),
        "adjusted p": fmt.format_pvalue(c.p_value_adjusted),
    } for c in di.cells]


def differential_caption(results: Any) -> str:
    """How many cells were tested over which attributes, and how many survive Benjamini-Hochberg."""
    di = results.differential_impact
    if di is None:
        return ""
    if not di.attributes:
        return "No segment attributes stored with the assignments: nothing to scan."
    survived = len(di.cells)
    return (f"{di.tested:,} cells tested (every value of {', '.join(di.attributes)} × metric × treatment, each "
            f"against the other users); {survived:,} differ at a false-discovery rate of "
            f"{fmt.format_pct(di.fdr, 0)} (Benjamini-Hochberg).")
