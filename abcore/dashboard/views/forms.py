"""Pure display helpers shared by the dashboard pages (no streamlit here).

Statuses (colours, icons, order), lifecycle action labels, the formatting of numbers, percentages,
p-values and days, the results page's verdict label and metric table rows, variant colours and
labels, and the engine caption -- tested in ``tests/dashboard/views/``. The create form's logic is in
:mod:`abcore.dashboard.views.create_form`, the sample-size plan in
:mod:`abcore.dashboard.views.sample_size`, and text and tables made safe for Markdown in
:mod:`abcore.dashboard.views.html`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from abcore.analysis.verdict import metric_outcome
from abcore.formatting import (
    MEAN_DIGITS,
    MISSING,
    RATE_DIGITS,
    format_expected_loss,
    format_fixed,
    format_int,
    format_interval,
    format_pct,
    format_pp,
    format_pvalue,
)
from abcore.metrics import kind_label
from abcore.store.tables import ExperimentStatus, utcnow

# One colour per status, used by every page (Streamlit badge colour names).
STATUS_COLORS: dict[str, str] = {
    ExperimentStatus.RUNNING.value: "green",
    ExperimentStatus.PAUSED.value: "orange",
    ExperimentStatus.DRAFT.value: "gray",
    ExperimentStatus.COMPLETED.value: "blue",
    ExperimentStatus.CANCELLED.value: "red",
}
STATUS_ICONS: dict[str, str] = {
    ExperimentStatus.RUNNING.value: "▶️",
    ExperimentStatus.PAUSED.value: "⏸️",
    ExperimentStatus.DRAFT.value: "📝",
    ExperimentStatus.COMPLETED.value: "🏁",
    ExperimentStatus.CANCELLED.value: "🚫",
}
STATUS_ORDER: tuple[str, ...] = ("running", "paused", "draft", "completed", "cancelled")

# Lifecycle actions as the experiments page shows them: label, icon, confirmation question.
ACTION_LABELS: dict[str, tuple[str, str, str]] = {
    "start": ("Start", ":material/play_arrow:", "Start this experiment? New users will be assigned from now on."),
    "pause": ("Pause", ":material/pause:", "Pause this experiment? Assigned users keep their variant; no new users enter."),
    "resume": ("Resume", ":material/play_arrow:", "Resume this experiment? New users will be assigned again."),
    "stop": ("Stop", ":material/stop:", "Stop this experiment? It becomes completed and assignments freeze."),
    "cancel": ("Cancel", ":material/block:", "Cancel this experiment? This is final: it can never run again."),
    "delete": ("Delete", ":material/delete:", "Delete this draft? This cannot be undone."),
    "ship": ("Ship winner", ":material/rocket_launch:", "Ship the chosen variant to the chosen share of users?"),
}




def status_color(status: str) -> str:
    """The colour of a status everywhere in the dashboard (unknown statuses are gray)."""
    return STATUS_COLORS.get(status, "gray")


def status_badge(status: str) -> str:
    """Markdown for a coloured status badge, e.g. ``:green-badge[▶️ Running]``."""
    icon = STATUS_ICONS.get(status, "")
    return f":{status_color(status)}-badge[{icon} {status.capitalize()}]".replace("[ ", "[")


def days_running(started_at: datetime | None, stopped_at: datetime | None = None, *, now: datetime | None = None) -> float | None:
    """Days between start and stop (or ``now``); ``None`` when never started."""
    if started_at is None:
        return None
    end = stopped_at or now or utcnow()
    return max(0.0, (end - started_at).total_seconds() / 86400.0)


def format_days(days: float | None) -> str:
    """``None -> 'not started'``, ``0.4 -> '< 1 day'``, ``1 -> '1 day'``, ``3.6 -> '3 days'``."""
    if days is None:
        return "not started"
    if days < 1:
        return "< 1 day"
    whole = int(days)
    return f"{whole} day" if whole == 1 else f"{whole:,} days"


# --------------------------------------------------------------------------- results page

VERDICT_LABELS: dict[str, tuple[str, str]] = {
    "ship": ("Ship treatment", "green"),
    "keep_control": ("Keep control", "orange"),
    "keep_running": ("Keep running", "blue"),
    "no_winner": ("No winner: do not ship", "gray"),
    "shipped": ("Shipped", "green"),
    "cancelled": ("Cancelled", "gray"),
}


#: The results table's words for each outcome of :mod:`abcore.analysis.verdict` (colours as the forest plot).
OUTCOME_LABELS: dict[str, str] = {"better": "✅ better", "worse": "🔻 worse", "inconclusive": "inconclusive"}


def verdict_label(decision: str, variant: str | None = None) -> tuple[str, str]:
    """Headline and colour of a recommendation, e.g. ``("Ship treatment: boost", "green")``."""
    label, color = VERDICT_LABELS.get(decision, (decision.replace("_", " ").capitalize(), "gray"))
    if decision == "ship" and variant:
        label = f"Ship treatment: {variant}"
    elif decision == "shipped" and variant:
        label = f"Shipped: {variant}"
    return label, color


def health_level(checks: Iterable[Any]) -> str:
    """``"error"`` if any check is an error, else ``"warning"`` if any warns, else ``"ok"``."""
    severities = {getattr(c, "severity", "ok") for c in checks if not getattr(c, "ok", True)}
    if "error" in severities:
        return "error"
    return "warning" if severities else "ok"


def _finite(x: float | None) -> bool:
    return x is not None and math.isfinite(float(x))


def metric_rows(results: Any, metric: str) -> list[dict[str, str]]:
    """The results table of one metric: the control row, then one row per treatment.

    Columns: Variant, Users, Conversions (binary metrics), Rate / the kind's value (:func:`abcore.metrics.kind_label`:
    Mean per user, Mean per event, ...), Difference [CI],
    Lift [CI], p-value (adjusted for multiple comparisons), Outcome (the judge's better / worse /
    inconclusive in the metric's direction, :mod:`abcore.analysis.verdict`: the forest plot's colour);
    plus Chance to beat control and Expected loss for the Bayesian method. Every number is formatted
    by :mod:`abcore.formatting`.
    """
    rows_for = [r for r in results.metrics if r.metric == metric]
    if not rows_for:
        return []
    first = rows_for[0]
    binary = first.kind == "binary"
    # the value column says what the kind computes: "Rate", "Mean per user", "Mean per event", "Ratio", ...
    value_column = "Rate" if binary else kind_label(getattr(first, "metric_kind", "mean"))

    def value(v: float) -> str:
        return format_pct(v, RATE_DIGITS) if binary else format_fixed(v, MEAN_DIGITS)

    control: dict[str, str] = {"Variant": variant_label(first.control_variant, True), "Users": format_int(first.control_users)}
    if binary:
        control["Conversions"] = format_int(first.control_conversions)
    control[value_column] = value(first.control_value)
    control.update({"Difference [CI]": "–", "Lift [CI]": "–", "p-value (adj.)": "–", "Outcome": ""})
    bayes = any(r.bayes is not None for r in rows_for)
    if bayes:
        control.update({"Chance to beat control": "–", "Expected loss": "–"})
    out = [control]
    for r in rows_for:
        t = r.test
        diff = "–"
        if _finite(t.diff):
            # Rates differ by percentage points (pp); the lift column holds the relative change in %.
            shown = format_pp(t.diff) if binary else format_fixed(t.diff, MEAN_DIGITS, signed=True)
            ci = (f"[{format_pp(t.ci_low)}, {format_pp(t.ci_high)}]" if binary
                  else f"[{format_fixed(t.ci_low, MEAN_DIGITS, signed=True)}, {format_fixed(t.ci_high, MEAN_DIGITS, signed=True)}]")
            diff = f"{shown} {ci}" if _finite(t.ci_low) else shown
        lift = "–"
        if _finite(t.lift):
            lift = format_pct(t.lift, 1, signed=True)
            if _finite(t.lift_ci_low) and _finite(t.lift_ci_high):
                lift += f" {format_interval(t.lift_ci_low, t.lift_ci_high)}"
        row: dict[str, str] = {"Variant": r.variant, "Users": format_int(r.users)}
        if binary:
            row["Conversions"] = format_int(r.conversions)
        row[value_column] = value(r.value)
        row.update({
            "Difference [CI]": diff,
            "Lift [CI]": lift,
            "p-value (adj.)": format_pvalue(r.p_value_adjusted),
            "Outcome": OUTCOME_LABELS[metric_outcome(r)],
        })
        if bayes:
            row["Chance to beat control"] = format_pct(r.bayes.chance_to_beat_control, 1) if r.bayes else "–"
            row["Expected loss"] = format_expected_loss(r.bayes.expected_loss, binary=binary) if r.bayes else "–"
        if t.error:
            row["Outcome"] = f"⚠️ {t.error}"
        out.append(row)
    return out


def metrics_in_order(results: Any) -> list[tuple[str, str]]:
    """``(metric, role)`` pairs in the order analysed (primary first), without repeats."""
    seen: dict[str, str] = {}
    for r in results.metrics:
        seen.setdefault(r.metric, r.role)
    return list(seen.items())


# --------------------------------------------------------------------------- page-wide display rules

# Okabe & Ito (2008), "Color Universal Design": distinguishable under the common colour-vision
# deficiencies. Blue for the control, orange for the first treatment: never two blues side by side.
OKABE_ITO: tuple[str, ...] = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#D55E00",  # vermillion
    "#56B4E9",  # sky blue
    "#F0E442",  # yellow
    "#000000",  # black
)


OPEN_TAB_KEY = "_abcore_open_tab"  # session-state key: the status tab the experiments page opens once


def variant_colors(names: Sequence[str]) -> dict[str, str]:
    """One colour per variant name, in the experiment's variant order (control first).

    The same mapping is passed to every chart of a page, so a variant keeps its colour across
    charts; past eight variants the palette repeats.
    """
    return {name: OKABE_ITO[i % len(OKABE_ITO)] for i, name in enumerate(names)}


def variant_label(name: str, is_control: bool) -> str:
    """``'control'`` stays ``'control'``; another control variant reads ``'baseline (control)'``."""
    if not is_control or "control" in name.lower():
        return name
    return f"{name} (control)"


def format_whole_days(days: float | None) -> str:
    """Whole days for sentences like 'ran 6 of the minimum 14 days': ``6.0 -> '6'``, ``0.4 -> '0'``."""
    if days is None or not math.isfinite(float(days)):
        return MISSING
    return f"{int(days):,}"


def day_labels(days: Iterable[Any]) -> list[str]:
    """Calendar days as ``YYYY-MM-DD`` category labels for a chart's x axis.

    A day axis is categorical, one tick per day: single-day data draws one labelled tick instead
    of a time axis zoomed into fractions of a second.
    """
    return [d.isoformat()[:10] if hasattr(d, "isoformat") else str(d)[:10] for d in days]


ENGINE_LABELS: dict[str, str] = {"duckdb": "DuckDB", "spark": "Spark"}
STORE_LABELS: dict[str, str] = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


def engine_caption(engine: str, seconds: float, store_dialect: str = "sqlite") -> str:
    """The results page's line on who computed the analysis: ``"Computed by DuckDB in 0.4 s"``.

    ``engine`` is ``Results.engine`` (``store`` is named by the store's SQLAlchemy dialect);
    ``seconds`` the wall time of ``analyze`` (one decimal below 10 s, whole seconds above).
    """
    label = STORE_LABELS.get(store_dialect, store_dialect) if engine == "store" else ENGINE_LABELS.get(engine, engine)
    took = f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"Computed by {label} in {took}"


