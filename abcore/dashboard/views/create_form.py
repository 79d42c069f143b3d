"""The create form's logic (no streamlit here): variant rows and their allocation, targeting rules typed
into a table, the live name check, and the whole form turned into an
:class:`abcore.experiments.schemas.ExperimentCreate`. The create and edit pages lay out the widgets and
call these functions; tested in ``tests/dashboard/views/``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abcore.experiments.schemas import ALLOCATION_TOLERANCE
from abcore.experiments.validation import allocation_problems
from abcore.formatting import format_int, format_number
from abcore.metrics import DIRECTIONS

MIN_VARIANTS = 2
#: The allocation fields' display: every decimal the value has (JS shortest form: ``33.3334``, ``50``), so
#: fields never read alike while the exact 100 % rule tells them apart (``%.2f`` showed 33.33 for both).
ALLOCATION_FORMAT = "%g"
CONFIDENCE_LEVELS: tuple[float, ...] = (0.90, 0.95, 0.99)
#: The words the form shows for the operators of :data:`abcore.assign.targeting.TARGETING_OPS` (``user_ids``
#: has a field of its own).
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

    Checks: at least two rows, non-empty unique names, allocations in (0, 100] summing to exactly
    100 % (:func:`abcore.experiments.validation.allocation_problems`, the rule of every surface), every
    JSON config valid.
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
    # the one split rule (abcore.experiments.validation): every variant above 0 %, exactly 100 % in total
    problems.extend(allocation_problems([float(r.allocation_pct or 0.0) for r in rows]))
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
    kind: str = "ab"  # ab, or interleaving (the variants are rankers merged in one list per user)
    interleaving_method: str = "team_draft"
    layer: str = ""  # "" = no layer
    layer_share_pct: float = 100.0  # percent of the layer the experiment claims


def form_from_state(state: Mapping[str, Any], *, rows: list[VariantRow], targeting_rows: list[dict[str, Any]],
                    direction: str, created_by: str) -> CreateForm:
    """The :class:`CreateForm` of the create page's widget values (``state``: its session state, keys
    ``c_*``, ``crit_*``, ``targeting_user_ids``), with the page's defaults for widgets not drawn yet."""
    return CreateForm(
        name=state.get("c_name", ""),
        description=state.get("c_description", ""),
        hypothesis=state.get("c_hypothesis", ""),
        rows=rows,
        traffic_pct=float(state.get("c_traffic_pct", 100)),
        targeting_rows=targeting_rows,
        user_ids_text=state.get("targeting_user_ids", ""),
        primary_metric=state.get("c_primary_metric") or "",
        secondary_metrics=list(state.get("c_secondary", [])),
        guardrail_metrics=list(state.get("c_guardrails", [])),
        direction=direction,
        min_effect_pct=float(state.get("crit_min_effect", 2.0)),
        confidence=float(state.get("crit_confidence", 0.95)),
        min_duration_days=int(state.get("crit_min_days", 7)),
        min_samples_per_variant=int(state.get("crit_min_samples", 0)),
        layer=state.get("c_layer") or "",
        layer_share_pct=float(state.get("c_layer_share", 100.0)),
        created_by=created_by,
        kind=state.get("c_kind", "ab"),
        interleaving_method=state.get("c_interleaving_method", "team_draft"),
    )


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
    if form.layer and not 0 < form.layer_share_pct <= 100:
        problems.append("The layer share must be more than 0 % and at most 100 %.")
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
        kind=form.kind,
        interleaving_method=form.interleaving_method if form.kind == "interleaving" else None,
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
        layer=form.layer or None,
        layer_share=float(form.layer_share_pct) if form.layer else None,
    )


def duplicate_name_problems(name: str, existing: Iterable[str]) -> list[str]:
    """The create form's live name check, worded like :func:`abcore.experiments.validation.validate_experiment`.

    Names compare after stripping surrounding blanks, exactly as the store's unique name does.
    """
    wanted = (name or "").strip()
    if wanted and wanted in {e.strip() for e in existing}:
        return [f"An experiment named {wanted!r} already exists: choose another name."]
    return []
