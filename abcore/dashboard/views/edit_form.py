"""Pure helpers behind the edit page (``pages/edit.py``; no streamlit here).

The page is prefilled from a stored experiment (:func:`prefill`), collects the same inputs as the
create form (variant rows, targeting table, metrics, success criteria) and turns them into an
:class:`abcore.experiments.schemas.ExperimentUpdate` with :func:`draft_update` (every field of a draft) or
:func:`running_update` (the safe fields of a running or paused one). Parsing and checks reuse
:mod:`abcore.dashboard.views.forms`; the rules of what may change live in :func:`abcore.experiments.editing.update_experiment`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from abcore import formatting as fmt
from abcore.dashboard.views import create_form, forms
from abcore.experiments.schemas import ExperimentUpdate


@dataclass
class EditForm:
    """The values of the edit form, as plain data (variant names are fixed; rows are in variant order)."""

    description: str = ""
    hypothesis: str = ""
    rows: list[create_form.VariantRow] = field(default_factory=list)
    traffic_pct: float = 100.0
    targeting_rows: list[dict[str, Any]] = field(default_factory=list)
    user_ids_text: str = ""
    primary_metric: str = "conversion"
    secondary_metrics: list[str] = field(default_factory=list)
    guardrail_metrics: list[str] = field(default_factory=list)
    direction: str = "increase"
    min_effect_pct: float = 0.0
    confidence: float = 0.95
    min_duration_days: int = 0
    min_samples_per_variant: int = 0


def targeting_rows(rules: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], str]:
    """The inverse of :func:`abcore.dashboard.views.create_form.parse_targeting`: table rows (attribute / op / value text)
    and the user-id list as text (one id per line)."""
    rows: list[dict[str, Any]] = []
    user_ids: list[str] = []
    for rule in rules:
        value = rule.get("value")
        if rule.get("op") == "user_ids":
            user_ids.extend(str(v) for v in value or [])
            continue
        shown = ", ".join(str(v) for v in value) if isinstance(value, list) else ("" if value is None else str(value))
        rows.append({"attribute": rule.get("attribute") or "", "op": rule.get("op") or "", "value": shown})
    return rows, "\n".join(user_ids)


def prefill(experiment: Any, variants: Sequence[Any]) -> EditForm:
    """The form as the stored experiment fills it (what the page shows before any change)."""
    criteria = dict(experiment.success_criteria or {})
    rows, user_ids = targeting_rows(experiment.targeting or [])
    confidence = float(criteria.get("confidence", 0.95))
    return EditForm(
        description=experiment.description or "",
        hypothesis=experiment.hypothesis or "",
        rows=[
            create_form.VariantRow(
                id=index, name=v.name, model_id=v.model_id, allocation_pct=float(v.allocation_pct),
                config_text=json.dumps(v.config, ensure_ascii=False) if v.config else "",
            )
            for index, v in enumerate(variants)
        ],
        traffic_pct=round(float(experiment.traffic_allocation) * 100.0, 6),
        targeting_rows=rows,
        user_ids_text=user_ids,
        primary_metric=experiment.primary_metric,
        secondary_metrics=list(experiment.secondary_metrics or []),
        guardrail_metrics=list(experiment.guardrail_metrics or []),
        direction=str(criteria.get("direction", "increase")),
        min_effect_pct=round(float(criteria.get("threshold", 0.0)) * 100.0, 6),
        confidence=confidence if confidence in create_form.CONFIDENCE_LEVELS else 0.95,
        min_duration_days=int(experiment.min_duration_days),
        min_samples_per_variant=int(experiment.min_samples_per_variant),
    )


def draft_update(form: EditForm, auto_stop: Mapping[str, Any] | None = None) -> tuple[ExperimentUpdate | None, list[str]]:
    """``(update, [])`` for a draft's form, or ``(None, problems)`` listing every problem.

    Checks with :func:`abcore.dashboard.views.create_form.validate_rows` and :func:`abcore.dashboard.views.create_form.parse_targeting` (the create
    form's rules); the success criteria are rebuilt as the create form builds them.
    """
    problems = create_form.validate_rows(form.rows)
    rules, targeting_problems = create_form.parse_targeting(form.targeting_rows, form.user_ids_text)
    problems += targeting_problems
    if not 1 <= float(form.traffic_pct) <= 100:
        problems.append("Traffic share must be between 1 and 100 %.")
    primary = (form.primary_metric or "").strip()
    if not primary:
        problems.append("Choose a primary metric.")
    if form.direction not in create_form.DIRECTIONS:
        problems.append("Direction must be increase or decrease.")
    if form.min_effect_pct < 0:
        problems.append("The minimum effect cannot be negative.")
    if form.min_duration_days < 0 or form.min_samples_per_variant < 0:
        problems.append("Minimum duration and minimum samples cannot be negative.")
    if problems:
        return None, problems
    update = ExperimentUpdate(
        description=form.description.strip(),
        hypothesis=form.hypothesis.strip(),
        primary_metric=primary,
        secondary_metrics=[m for m in dict.fromkeys(form.secondary_metrics) if m and m != primary],
        guardrail_metrics=[m for m in dict.fromkeys(form.guardrail_metrics) if m],
        targeting=rules,
        traffic_allocation=round(float(form.traffic_pct) / 100.0, 6),
        allocations={r.name: float(r.allocation_pct) for r in form.rows},
        variant_models={r.name: r.model_id for r in form.rows},
        variant_configs={r.name: create_form.parse_config(r.config_text)[0] for r in form.rows},
        success_criteria={
            "metric": primary,
            "direction": form.direction,
            "threshold": round(float(form.min_effect_pct) / 100.0, 6),
            "confidence": float(form.confidence),
        },
        min_duration_days=int(form.min_duration_days),
        min_samples_per_variant=int(form.min_samples_per_variant),
        auto_stop=dict(auto_stop) if auto_stop is not None else None,
    )
    return update, []


def running_update(description: str, hypothesis: str, secondary_metrics: Sequence[str], traffic_pct: float) -> ExperimentUpdate:
    """The safe fields of a running or paused experiment (abcore refuses a lower traffic share, saying why)."""
    return ExperimentUpdate(
        description=description.strip(),
        hypothesis=hypothesis.strip(),
        secondary_metrics=[m for m in dict.fromkeys(secondary_metrics) if m],
        traffic_allocation=round(float(traffic_pct) / 100.0, 6),
    )


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def describe_changes(diff: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """One line per changed field: ``field: before -> after`` (values as compact JSON, long ones cut)."""
    return [f"{name}: {_short(change.get('before'))} -> {_short(change.get('after'))}" for name, change in diff.items()]


def describe_configuration(configuration: Mapping[str, Any], model_names: Mapping[int, str] | None = None) -> list[str]:
    """What will run (:func:`abcore.experiments.approvals.run_configuration`) as short lines for the approval panel."""
    names = model_names or {}
    variants = configuration.get("variants", [])
    def variant(v: Mapping[str, Any]) -> str:
        text = f"{forms.variant_label(v['name'], v['is_control'])} {fmt.format_number(v['allocation_pct'], 2)} %"
        if v.get("model_id") is not None:
            text += f" ({names.get(v['model_id'], 'model ' + str(v['model_id']))})"
        if v.get("config"):
            text += f" config {_short(v['config'])}"
        return text

    split = " · ".join(variant(v) for v in variants)
    targeting = [create_form.describe_rule(r) for r in configuration.get("targeting", [])]
    criteria = configuration.get("success_criteria") or {}
    lines = [
        f"Variants and split: {split}",
        f"Traffic: {fmt.format_number(float(configuration.get('traffic_allocation', 1.0)) * 100, 1)} % of eligible users",
        "Targeting: " + (" AND ".join(targeting) if targeting else "everyone"),
        f"Primary metric: {configuration.get('primary_metric', '')}",
        "Secondary metrics: " + (", ".join(configuration.get("secondary_metrics", [])) or "none"),
        "Guardrails: " + (", ".join(configuration.get("guardrail_metrics", [])) or "none"),
    ]
    if criteria:
        lines.append(
            f"Success: {criteria.get('direction', 'increase')} by at least "
            f"{fmt.format_pct(float(criteria.get('threshold', 0.0)))} at {fmt.format_pct(float(criteria.get('confidence', 0.95)), 0)} confidence"
        )
    lines.append(f"Minimums: {configuration.get('min_duration_days', 0)} days, "
                 f"{fmt.format_int(configuration.get('min_samples_per_variant', 0))} users per variant")
    from abcore.watch.rules import describe_rules

    lines.append("Stopping rules: " + describe_rules(configuration.get("auto_stop")))
    return lines
