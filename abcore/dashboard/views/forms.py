"""Pure helpers behind the dashboard pages (no streamlit here).

A page lays out widgets and calls these functions; everything that decides
something -- parsing the create form into an :class:`abcore.experiments.schemas.ExperimentCreate`,
validating a variant's JSON config, the live allocation total and its colour,
targeting rules typed into a table, the sample-size plan shown next to the
success criteria, and the formatting of numbers, percentages and statuses --
lives here and is tested in ``tests/dashboard/views/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from typing import Any

from abcore.store.tables import ExperimentStatus, utcnow

ALLOCATION_TOLERANCE = 1e-6
MIN_VARIANTS = 2
CONFIDENCE_LEVELS: tuple[float, ...] = (0.90, 0.95, 0.99)
DIRECTIONS: tuple[str, ...] = ("increase", "decrease")
TARGETING_OPS: dict[str, str] = {
    "eq": "equals",
    "neq": "does not equal",
    "in": "is one of",
    "not_in": "is not one of",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
}
NUMERIC_OPS = frozenset({"gt", "gte", "lt", "lte"})
LIST_OPS = frozenset({"in", "not_in"})

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


# --------------------------------------------------------------------------- variant rows


@dataclass
class VariantRow:
    """One row of the create form's variant table; ``id`` is stable so widget keys survive removals."""

    id: int
    name: str = ""
    model_id: int | None = None
    allocation_pct: float = 0.0
    config_text: str = ""


def even_split(n: int) -> list[float]:
    """``n`` allocations in percent with two decimals that sum to exactly 100 (the first rows take the rest).

    >>> even_split(3)
    [33.34, 33.33, 33.33]
    """
    if n <= 0:
        return []
    base = math.floor(10000 / n) / 100
    rest = round(100 - base * n, 2)
    out = [base] * n
    cents = round(rest * 100)
    for i in range(cents):
        out[i % n] = round(out[i % n] + 0.01, 2)
    return out


def initial_rows(n: int = MIN_VARIANTS) -> list[VariantRow]:
    """The rows a fresh create form starts with: ``control``, ``treatment`` (``treatment_2``...) split evenly."""
    names = ["control", "treatment"] + [f"treatment_{i}" for i in range(2, n)]
    return [VariantRow(id=i, name=names[i], allocation_pct=pct) for i, pct in enumerate(even_split(n))]


def add_row(rows: Sequence[VariantRow]) -> list[VariantRow]:
    """A new list with one more row (fresh id, suggested name, 0 %): the user decides the split."""
    next_id = max((r.id for r in rows), default=-1) + 1
    taken = {r.name for r in rows}
    k = len(rows)
    name = f"treatment_{k}" if k > 1 else "treatment"
    while name in taken:
        k += 1
        name = f"treatment_{k}"
    return [*rows, VariantRow(id=next_id, name=name, allocation_pct=0.0)]


def remove_row(rows: Sequence[VariantRow], row_id: int) -> list[VariantRow]:
    """A new list without the row ``row_id``; never goes below two rows (then the list is returned as is)."""
    if len(rows) <= MIN_VARIANTS:
        return list(rows)
    return [r for r in rows if r.id != row_id]


def allocation_total(values: Iterable[float | None]) -> float:
    """Sum of the allocation percents (``None`` counts as 0), rounded to 6 decimals against float noise."""
    return round(sum(float(v or 0.0) for v in values), 6)


def allocation_ok(total: float) -> bool:
    """True exactly when ``total`` is 100 % (within 1e-6)."""
    return abs(total - 100.0) <= ALLOCATION_TOLERANCE


def allocation_color(total: float) -> str:
    """``"green"`` when the total is exactly 100 %, ``"red"`` otherwise (the Total allocation line's colour)."""
    return "green" if allocation_ok(total) else "red"


def format_allocation(value: float) -> str:
    """An allocation total or gap with as many decimals (2 to 6) as it takes not to round to a neighbour.

    The rule is "exactly 100 % within 1e-6 percentage points" (:data:`ALLOCATION_TOLERANCE`, the same
    as :mod:`abcore.experiments.lifecycle`), so the display never rounds a refused total to "100 %":
    ``99.999 -> '99.999'``, gap ``0.001 -> '0.001'``, ``100 -> '100'``.
    """
    for digits in range(2, 7):
        text = format_number(value, digits)
        if allocation_ok(value) or (text != "100" and text != "0"):
            return text
    return format_number(value, 6)


def allocation_message(total: float) -> str:
    """The Total allocation line as markdown, coloured by :func:`allocation_color`."""
    color = allocation_color(total)
    if allocation_ok(total):
        hint = "ready"
    elif total < 100:
        hint = f"add {format_allocation(100 - total)} %"
    else:
        hint = f"remove {format_allocation(total - 100)} %"
    return f"**Total allocation:** :{color}[**{format_allocation(total)} %** ({hint})]"


def parse_config(text: str | None) -> tuple[dict[str, Any], str | None]:
    """Parse a variant's JSON config. Empty text is ``{}``.

    Returns ``(config, None)`` on success and ``({}, message)`` otherwise; the message
    names the line and column of a syntax error, or says the JSON must be an object.
    """
    if text is None or not text.strip():
        return {}, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
    if not isinstance(value, dict):
        return {}, f"the config must be a JSON object like {{\"key\": \"value\"}}, not a {type(value).__name__}"
    return value, None


def validate_rows(rows: Sequence[VariantRow]) -> list[str]:
    """Readable problems with the variant rows; ``[]`` when they can be saved.

    Checks: at least two rows, non-empty unique names, allocations in [0, 100] summing to
    100 %, every JSON config valid.
    """
    problems: list[str] = []
    if len(rows) < MIN_VARIANTS:
        problems.append(f"An experiment needs at least {MIN_VARIANTS} variants.")
    seen: set[str] = set()
    for index, row in enumerate(rows, start=1):
        name = (row.name or "").strip()
        if not name:
            problems.append(f"Variant {index} needs a name.")
        elif name.lower() in seen:
            problems.append(f"Variant name '{name}' is used twice; names must be unique.")
        seen.add(name.lower())
        pct = float(row.allocation_pct or 0.0)
        if not 0 <= pct <= 100:
            problems.append(f"Variant '{name or index}': allocation must be between 0 and 100 %.")
        _, error = parse_config(row.config_text)
        if error:
            problems.append(f"Variant '{name or index}': {error}.")
    total = allocation_total(r.allocation_pct for r in rows)
    if not allocation_ok(total):
        problems.append(f"Allocations add up to {format_allocation(total)} %; they must total exactly 100 % "
                        "(within 0.000001 percentage points; e.g. 33.333334, 33.333333, 33.333333 for three).")
    return problems


# --------------------------------------------------------------------------- targeting


def _number(text: str) -> float | int | None:
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value


def parse_targeting_rule(attribute: str | None, op: str | None, value: Any) -> tuple[dict[str, Any] | None, str | None]:
    """One targeting rule from a table row, as stored on the experiment.

    * ``eq``/``neq``: the value as text; ``in``/``not_in``: a comma-separated list of texts;
      ``gt``/``gte``/``lt``/``lte``: a number. Returns ``(rule, None)`` or ``(None, message)``.
    * An entirely empty row returns ``(None, None)`` (ignored).
    """
    attribute = (attribute or "").strip()
    op = (op or "").strip()
    text = "" if value is None else str(value).strip()
    if not attribute and not op and not text:
        return None, None
    if not attribute:
        return None, "a targeting rule needs an attribute name (e.g. country)."
    if op not in TARGETING_OPS:
        return None, f"targeting rule on '{attribute}': choose an operator ({', '.join(TARGETING_OPS)})."
    if not text:
        return None, f"targeting rule on '{attribute}': enter a value."
    if op in NUMERIC_OPS:
        number = _number(text)
        if number is None:
            return None, f"targeting rule on '{attribute}': '{text}' is not a number."
        return {"attribute": attribute, "op": op, "value": number}, None
    if op in LIST_OPS:
        items = [item.strip() for item in text.split(",") if item.strip()]
        if not items:
            return None, f"targeting rule on '{attribute}': list at least one value, separated by commas."
        return {"attribute": attribute, "op": op, "value": items}, None
    return {"attribute": attribute, "op": op, "value": text}, None


def parse_user_ids(text: str | None) -> list[str]:
    """User ids typed one per line or separated by commas; blanks dropped, order kept, duplicates removed."""
    if not text:
        return []
    out: list[str] = []
    seen: set[str] = set()
    for chunk in text.replace(",", "\n").splitlines():
        user_id = chunk.strip()
        if user_id and user_id not in seen:
            seen.add(user_id)
            out.append(user_id)
    return out


def parse_targeting(rows: Iterable[Mapping[str, Any]], user_ids_text: str | None = "") -> tuple[list[dict[str, Any]], list[str]]:
    """All targeting rules of the form: table rows (``attribute``/``op``/``value``) plus an optional user-id list.

    Returns ``(rules, problems)``; the rules combine with AND.
    """
    rules: list[dict[str, Any]] = []
    problems: list[str] = []
    for row in rows:
        rule, error = parse_targeting_rule(row.get("attribute"), row.get("op"), row.get("value"))
        if error:
            problems.append(error[0].upper() + error[1:])
        elif rule is not None:
            rules.append(rule)
    user_ids = parse_user_ids(user_ids_text)
    if user_ids:
        rules.append({"op": "user_ids", "value": user_ids})
    return rules, problems


def describe_rule(rule: Mapping[str, Any]) -> str:
    """A rule as a short sentence, e.g. ``country is one of DE, FR``."""
    op = rule.get("op", "")
    value = rule.get("value")
    if op == "user_ids":
        ids = list(value or [])
        return f"user id in a list of {format_int(len(ids))}"
    shown = ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    return f"{rule.get('attribute', '?')} {TARGETING_OPS.get(op, op)} {shown}"


# --------------------------------------------------------------------------- the whole form


@dataclass
class CreateForm:
    """Everything the create page collects, as plain values."""

    name: str = ""
    description: str = ""
    hypothesis: str = ""
    rows: list[VariantRow] = field(default_factory=initial_rows)
    traffic_pct: float = 100.0
    targeting_rows: list[dict[str, Any]] = field(default_factory=list)
    user_ids_text: str = ""
    primary_metric: str = "conversion"
    secondary_metrics: list[str] = field(default_factory=list)
    guardrail_metrics: list[str] = field(default_factory=list)
    direction: str = "increase"
    min_effect_pct: float = 2.0
    confidence: float = 0.95
    min_duration_days: int = 7
    min_samples_per_variant: int = 0
    created_by: str = ""


def form_problems(form: CreateForm) -> list[str]:
    """Every readable problem in the form (the create button stays disabled while any remain)."""
    problems: list[str] = []
    if not form.name.strip():
        problems.append("Give the experiment a name.")
    problems.extend(validate_rows(form.rows))
    if not 1 <= float(form.traffic_pct) <= 100:
        problems.append("Traffic share must be between 1 and 100 %.")
    _, targeting_problems = parse_targeting(form.targeting_rows, form.user_ids_text)
    problems.extend(targeting_problems)
    if not form.primary_metric.strip():
        problems.append("Choose a primary metric.")
    if form.direction not in DIRECTIONS:
        problems.append("Direction must be increase or decrease.")
    if form.min_effect_pct < 0:
        problems.append("The minimum effect cannot be negative.")
    if form.confidence not in CONFIDENCE_LEVELS:
        problems.append("Confidence must be 90, 95 or 99 %.")
    if form.min_duration_days < 0 or form.min_samples_per_variant < 0:
        problems.append("Minimum duration and minimum samples cannot be negative.")
    return problems


def build_experiment_create(form: CreateForm) -> Any:
    """The :class:`abcore.experiments.schemas.ExperimentCreate` the form describes (call when :func:`form_problems` is empty).

    The first row is the control; traffic percent becomes a (0, 1] share; the success
    criteria carry the primary metric, direction, minimum relative effect and confidence.
    Raises ``ValueError`` listing the problems when the form is not valid.
    """
    from abcore.experiments.schemas import ExperimentCreate, VariantCreate

    problems = form_problems(form)
    if problems:
        raise ValueError(" ".join(problems))
    rules, _ = parse_targeting(form.targeting_rows, form.user_ids_text)
    variants = [
        VariantCreate(
            name=row.name.strip(),
            allocation_pct=float(row.allocation_pct),
            model_id=row.model_id,
            config=parse_config(row.config_text)[0],
            is_control=index == 0,
        )
        for index, row in enumerate(form.rows)
    ]
    primary = form.primary_metric.strip()
    return ExperimentCreate(
        name=form.name.strip(),
        description=form.description.strip(),
        hypothesis=form.hypothesis.strip(),
        variants=variants,
        traffic_allocation=round(float(form.traffic_pct) / 100.0, 6),
        targeting=rules,
        primary_metric=primary,
        secondary_metrics=[m for m in dict.fromkeys(form.secondary_metrics) if m and m != primary],
        guardrail_metrics=[m for m in dict.fromkeys(form.guardrail_metrics) if m],
        success_criteria={
            "metric": primary,
            "direction": form.direction,
            "threshold": round(float(form.min_effect_pct) / 100.0, 6),
            "confidence": float(form.confidence),
        },
        min_duration_days=int(form.min_duration_days),
        min_samples_per_variant=int(form.min_samples_per_variant),
        created_by=form.created_by,
    )


# --------------------------------------------------------------------------- sample-size plan


@dataclass(frozen=True)
class SamplePlan:
    """Users needed per variant and the days it takes at the given traffic (``None``: cannot be computed)."""

    per_variant: int | None
    total: int | None
    days: int | None
    error: str | None = None


def sample_plan(
    *,
    baseline: float,
    mde: float,
    relative: bool = True,
    metric_kind: str = "proportion",
    std: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    n_variants: int = 2,
    daily_traffic: float = 0.0,
    traffic_share: float = 1.0,
    smallest_allocation: float | None = None,
    alternative: str = "two-sided",
) -> SamplePlan:
    """Sample size per variant (abcore.stats) and the run time in days.

    ``metric_kind="proportion"`` uses :func:`abcore.stats.power.sample_size_proportion`
    with ``baseline`` the conversion rate; ``"mean"`` uses :func:`sample_size_mean` with
    ``std`` and ``mde`` (relative to ``baseline`` when ``relative``). Days are the time for
    the smallest arm (``smallest_allocation``, default an even split) to reach its size
    at ``daily_traffic * traffic_share`` users a day entering the experiment. Invalid
    inputs give a plan with ``error`` set rather than raising.
    """
    from abcore.stats.power import sample_size_mean, sample_size_proportion

    try:
        if n_variants < 2:
            raise ValueError("an experiment needs at least two variants")
        if metric_kind == "mean":
            if std is None:
                raise ValueError("enter the standard deviation of the metric")
            delta = mde * baseline if relative else mde
            if relative and baseline == 0:
                raise ValueError("a relative effect needs a non-zero baseline mean")
            n = sample_size_mean(std, delta, alpha=alpha, power=power, alternative=alternative)
        else:
            n = sample_size_proportion(baseline, mde, relative=relative, alpha=alpha, power=power, alternative=alternative)
    except (ValueError, ZeroDivisionError) as exc:
        return SamplePlan(None, None, None, str(exc))
    total = n * n_variants
    days: int | None = None
    share = smallest_allocation if smallest_allocation is not None else 1.0 / n_variants
    per_day = float(daily_traffic) * float(traffic_share) * float(share)
    if per_day > 0:
        days = max(1, math.ceil(n / per_day))
    return SamplePlan(n, total, days)


@dataclass(frozen=True)
class PowerCurve:
    """Power (0-1) of the test at each number of users per variant."""

    n: tuple[int, ...]
    power: tuple[float, ...]


def power_curve(
    *,
    baseline: float,
    mde: float,
    relative: bool = True,
    metric_kind: str = "proportion",
    std: float | None = None,
    alpha: float = 0.05,
    n_max: int = 10_000,
    points: int = 60,
) -> PowerCurve:
    """Power from ``n_max / points`` up to ``n_max`` users per variant (abcore.stats.power).

    Raises ``ValueError`` for inputs :func:`sample_plan` would also refuse.
    """
    from abcore.stats.power import power_mean, power_proportion

    n_max = max(2, int(n_max))
    points = max(2, min(points, n_max))
    ns = sorted({max(2, round(n_max * (i + 1) / points)) for i in range(points)})
    if metric_kind == "mean":
        if std is None:
            raise ValueError("enter the standard deviation of the metric")
        delta = mde * baseline if relative else mde
        values = [power_mean(std, delta, n, alpha=alpha) for n in ns]
    else:
        values = [power_proportion(baseline, mde, n, relative=relative, alpha=alpha) for n in ns]
    return PowerCurve(tuple(ns), tuple(values))


# --------------------------------------------------------------------------- formatting


def format_int(value: float | int | None) -> str:
    """``1234567 -> '1,234,567'``; ``None`` or NaN -> ``'–'``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{round(value):,}"


def format_number(value: float | None, digits: int = 2) -> str:
    """A number with thousands separators and at most ``digits`` decimals, trailing zeros dropped."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    text = f"{float(value):,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def format_pct(value: float | None, digits: int = 1, *, signed: bool = False) -> str:
    """A share as percent: ``0.1234 -> '12.3%'``; ``signed=True`` adds ``+`` to positive values."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    sign = "+" if signed and value > 0 else ""
    return f"{sign}{value * 100:,.{digits}f}%"


def format_pvalue(p: float | None) -> str:
    """A p-value: ``< 0.001`` below a thousandth, else three decimals."""
    if p is None or not math.isfinite(float(p)):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def format_interval(low: float | None, high: float | None, *, percent: bool = True, digits: int = 1) -> str:
    """A confidence interval, e.g. ``[-1.2%, +3.4%]``."""
    if low is None or high is None:
        return "–"
    if percent:
        return f"[{format_pct(low, digits, signed=True)}, {format_pct(high, digits, signed=True)}]"
    return f"[{format_number(low, 4)}, {format_number(high, 4)}]"


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
    "shipped": ("Shipped", "green"),
    "cancelled": ("Cancelled", "gray"),
}


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

    Columns: Variant, Users, Conversions (binary metrics), Rate / Mean, Difference [CI],
    Lift [CI], p-value (adjusted for multiple comparisons), Significant; plus Chance to beat
    control and Expected loss for the Bayesian method. Every number is formatted.
    """
    rows_for = [r for r in results.metrics if r.metric == metric]
    if not rows_for:
        return []
    first = rows_for[0]
    binary = first.kind == "binary"

    def value(v: float) -> str:
        return format_pct(v, RATE_DIGITS) if binary else format_fixed(v, MEAN_DIGITS)

    control: dict[str, str] = {"Variant": variant_label(first.control_variant, True), "Users": format_int(first.control_users)}
    if binary:
        control["Conversions"] = format_int(first.control_conversions)
    control["Rate" if binary else "Mean"] = value(first.control_value)
    control.update({"Difference [CI]": "–", "Lift [CI]": "–", "p-value (adj.)": "–", "Significant": ""})
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
        row["Rate" if binary else "Mean"] = value(r.value)
        row.update({
            "Difference [CI]": diff,
            "Lift [CI]": lift,
            "p-value (adj.)": format_pvalue(r.p_value_adjusted),
            "Significant": "✅ yes" if r.significant else "no",
        })
        if bayes:
            row["Chance to beat control"] = format_pct(r.bayes.chance_to_beat_control, 1) if r.bayes else "–"
            row["Expected loss"] = format_expected_loss(r.bayes.expected_loss, binary=binary) if r.bayes else "–"
        if t.error:
            row["Significant"] = f"⚠️ {t.error}"
        out.append(row)
    return out


def metrics_in_order(results: Any) -> list[tuple[str, str]]:
    """``(metric, role)`` pairs in the order analysed (primary first), without repeats."""
    seen: dict[str, str] = {}
    for r in results.metrics:
        seen.setdefault(r.metric, r.role)
    return list(seen.items())


# --------------------------------------------------------------------------- page-wide display rules (issue 15)

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
# Decimals used for every rate (percent) and every mean on the results page, tables and charts alike.
RATE_DIGITS = 2
MEAN_DIGITS = 3


OPEN_TAB_KEY = "_abcore_open_tab"  # session-state key: the status tab the experiments page opens once


def duplicate_name_problems(name: str, existing: Iterable[str]) -> list[str]:
    """The create form's live name check, worded like :func:`abcore.experiments.validation.validate_experiment`.

    Names compare after stripping surrounding blanks, exactly as the store's unique name does.
    """
    wanted = (name or "").strip()
    if wanted and wanted in {e.strip() for e in existing}:
        return [f"An experiment named {wanted!r} already exists: choose another name."]
    return []


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


def format_pp(diff: float | None, digits: int = RATE_DIGITS, *, signed: bool = True) -> str:
    """A difference of two rates in percentage points: ``0.0123 -> '+1.23 pp'``."""
    if diff is None or not math.isfinite(float(diff)):
        return "–"
    sign = "+" if signed and diff > 0 else ""
    return f"{sign}{diff * 100:,.{digits}f} pp"


def format_fixed(value: float | None, digits: int = MEAN_DIGITS, *, signed: bool = False) -> str:
    """A number with exactly ``digits`` decimals (so a column lines up): ``8.7 -> '8.700'``."""
    if value is None or not math.isfinite(float(value)):
        return "–"
    sign = "+" if signed and value > 0 else ""
    text = f"{sign}{float(value):,.{digits}f}"
    return text.replace("-0." + "0" * digits, "0." + "0" * digits) if digits else text


def format_expected_loss(loss: float | None, *, binary: bool) -> str:
    """Expected loss of choosing a variant: percentage points for rates, the metric's unit for means.

    Tiny losses read ``< 0.01 pp`` (resp. ``< 0.001``) rather than a string of zeros.
    """
    if loss is None or not math.isfinite(float(loss)):
        return "–"
    if binary:
        return "< 0.01 pp" if 0 < loss * 100 < 0.005 else format_pp(loss, signed=False)
    return f"< {10 ** -MEAN_DIGITS:.{MEAN_DIGITS}f}" if 0 < loss < 0.5 * 10 ** -MEAN_DIGITS else format_fixed(loss)


def format_whole_days(days: float | None) -> str:
    """Whole days for sentences like 'ran 6 of the minimum 14 days': ``6.0 -> '6'``, ``0.4 -> '0'``."""
    if days is None or not math.isfinite(float(days)):
        return "–"
    return f"{int(days):,}"


def day_labels(days: Iterable[Any]) -> list[str]:
    """Calendar days as ``YYYY-MM-DD`` category labels for a chart's x axis.

    A day axis is categorical, one tick per day: single-day data draws one labelled tick instead
    of a time axis zoomed into fractions of a second.
    """
    return [d.isoformat()[:10] if hasattr(d, "isoformat") else str(d)[:10] for d in days]


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


def html_table(rows: Sequence[Mapping[str, Any]], *, key_columns: int = 1) -> str:
    """Rows of already formatted cells as one line of HTML table markup for ``st.markdown``.

    The columns are the first row's keys; every cell is escaped (names come from users); the first
    ``key_columns`` columns are left-aligned labels, the others right-aligned figures. One line, because
    Markdown ends an HTML block at a blank line. An empty ``rows`` gives an empty string. Plain HTML
    instead of ``st.table``: the browser draws it with the page's text, without loading a table chunk
    (measured, README "Dashboard speed in the browser").
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
