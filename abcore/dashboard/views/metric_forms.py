"""Page logic of the Metrics page and the create form's metric pickers (no Streamlit here).

Turns metric definitions (:mod:`abcore.metrics`) into words — kind, "higher is better" /
"lower is better", window, capping — and the form's typed values into the mapping that
:func:`abcore.metrics.validate_metric` checks, so every problem is shown before submitting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from abcore.dashboard.views.html import plain_text
from abcore.metrics import CAPPABLE, KINDS, kind_label, validate_metric

#: Which way is better, in words.
DIRECTION_WORDS: dict[str, str] = {"increase": "higher is better", "decrease": "lower is better"}
#: The arrow shown with the words.
DIRECTION_ARROWS: dict[str, str] = {"increase": "↑", "decrease": "↓"}
#: The short name of each kind (the words before the colon of :data:`abcore.metrics.KINDS`).
KIND_NAMES: dict[str, str] = {kind: kind_label(kind) for kind in KINDS}
#: Capping choices of the form ("none" = no capping, stored as ``None``).
CAP_NAMES: dict[str, str] = {"none": "No capping", "absolute": "Absolute values", "percentile": "Percentiles"}


def direction_words(direction: str) -> str:
    """``"higher is better"`` for ``increase``, ``"lower is better"`` for ``decrease``; else the raw value."""
    return DIRECTION_WORDS.get(direction, str(direction))


def direction_label(direction: str) -> str:
    """The words with their arrow, e.g. ``"↓ lower is better"``."""
    arrow = DIRECTION_ARROWS.get(direction)
    return f"{arrow} {direction_words(direction)}" if arrow else direction_words(direction)


def _num(value: float) -> str:
    """A number without trailing zeros: 24.0 -> "24", 0.5 -> "0.5"."""
    return f"{float(value):g}"


def _ordinal(quantile: float) -> str:
    """0.99 -> "99th", 0.01 -> "1st", 0.995 -> "99.5th" (a quantile as a percentile rank)."""
    pct = round(float(quantile) * 100, 6)
    if pct != int(pct):
        return f"{_num(pct)}th"
    n = int(pct)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def kind_words(row: Any) -> str:
    """The kind of a definition in words: "Conversion", "Mean per user", "Mean per event", "Ratio: revenue /
    sessions", "Quantile: p95"."""
    kind = getattr(row, "kind", "")
    name = KIND_NAMES.get(kind, str(kind))
    if kind == "ratio":
        return f"{name}: {row.numerator} / {row.denominator}"
    if kind == "quantile" and row.quantile is not None:
        return f"{name}: p{_num(round(float(row.quantile) * 100, 6))}"
    return name


def window_words(window_hours: float | None, delay_hours: float | None) -> str:
    """Which events count, relative to the user's first exposure, in words."""
    delay = float(delay_hours or 0.0)
    if window_hours is None:
        return "whole experiment" if delay == 0 else f"from {_num(delay)} h after exposure to the end"
    if delay == 0:
        return f"first {_num(window_hours)} h after exposure"
    return f"{_num(window_hours)} h, starting {_num(delay)} h after exposure"


def cap_words(cap: str | None, upper: float | None, lower: float | None) -> str:
    """How per-user values are capped, in words ("none" without capping)."""
    if cap is None:
        return "none"
    if cap == "absolute":
        if lower is None:
            return f"per-user values at most {_num(upper)}" if upper is not None else "absolute"
        return f"per-user values clipped to [{_num(lower)}, {_num(upper)}]" if upper is not None else "absolute"
    if cap == "percentile" and upper is not None:
        if lower is None:
            return f"at the {_ordinal(upper)} percentile of all users"
        return f"between the {_ordinal(lower)} and {_ordinal(upper)} percentiles of all users"
    return str(cap)


def metric_table_rows(rows: Iterable[Any]) -> list[dict[str, str]]:
    """The Metrics page's list: one row per definition, every field in words."""
    return [
        {
            "Name": r.name,
            "Kind": kind_words(r),
            "Better when": direction_label(r.direction),
            "Window": window_words(r.window_hours, r.delay_hours),
            "Capping": cap_words(r.cap, r.cap_upper, r.cap_lower),
            "Min. effect": "–" if r.min_detectable_effect is None else f"{_num(r.min_detectable_effect * 100)} %",
            "Archived": "yes" if r.archived else "no",
            "Description": r.description or "",
        }
        for r in rows
    ]


def metric_values(
    *,
    name: str,
    kind: str,
    direction: str,
    description: str = "",
    numerator: str | None = None,
    denominator: str | None = None,
    quantile: float | None = None,
    window_hours: float | None = None,
    delay_hours: float | None = 0.0,
    cap: str | None = None,
    cap_upper: float | None = None,
    cap_lower: float | None = None,
    min_effect_pct: float | None = None,
) -> dict[str, Any]:
    """The definition the form describes, as :func:`abcore.metrics.validate_metric` takes it.

    Fields the chosen kind does not use are left out (the form hides them): numerator and
    denominator for anything but ``ratio``, ``quantile`` for anything but ``quantile``, the cap
    for kinds that cannot be capped and its bounds without a cap. ``min_effect_pct`` is in
    percent (2 -> 0.02). The name is passed as typed, so surrounding blanks are reported.
    """
    ratio = kind == "ratio"
    capped = kind in CAPPABLE and cap is not None
    return {
        "name": name,
        "description": (description or "").strip(),
        "kind": kind,
        "direction": direction,
        "numerator": (numerator or None) if ratio else None,
        "denominator": (denominator or None) if ratio else None,
        "quantile": quantile if kind == "quantile" else None,
        "window_hours": window_hours,
        "delay_hours": 0.0 if delay_hours is None else delay_hours,
        "cap": cap if capped else None,
        "cap_upper": cap_upper if capped else None,
        "cap_lower": cap_lower if capped else None,
        "min_detectable_effect": None if min_effect_pct is None else round(float(min_effect_pct) / 100.0, 9),
    }


def define_problems(values: Mapping[str, Any], existing: Iterable[str], *, editing: str | None = None) -> list[str]:
    """Every problem of the form: :func:`abcore.metrics.validate_metric`'s, plus a name already taken
    (worded like :func:`abcore.metrics.define_metric`; ``editing`` is the name being edited, which may stay)."""
    problems = validate_metric(values)
    name = values.get("name")
    if isinstance(name, str) and name and name != editing and name in set(existing):
        problems.append(f"a metric named {name!r} already exists (edit it below instead).")
    return problems


def option_label(name: str, directions: Mapping[str, str]) -> str:
    """A picker entry: ``"latency_ms — lower is better"``; a name not in ``directions`` stays as it is.

    Streamlit's pickers with ``accept_new_options`` send a typed value back through this function
    and keep the result as the value, so anything that is not an offered option must map to itself
    (:func:`undefined_warning` says which names have no definition).
    """
    direction = directions.get(name)
    return name if direction is None else f"{name} — {direction_words(direction)}"


def metric_options(defined: Sequence[str], default: str = "conversion") -> list[str]:
    """The picker's options: the defined (not archived) metrics by name, plus ``default`` when it is not defined
    (the create form's primary metric defaults to it, as it always did)."""
    names = sorted(dict.fromkeys(defined))
    return names if default in names else [*names, default]


def undefined_warning(chosen: Iterable[str], directions: Mapping[str, str]) -> str | None:
    """The create form's note for chosen names without a definition (``None`` when all are defined)."""
    missing = [n for n in dict.fromkeys(chosen) if n and n not in directions]
    if not missing:
        return None
    listed = ", ".join(plain_text(n) for n in missing)
    return (f"No metric definition for {listed}: analysed with defaults (kind inferred from the data; higher is "
            "better, guardrails lower is better). Define it on the Metrics page to say what it means.")
