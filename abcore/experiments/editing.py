"""Changing an experiment after it was created: :func:`update_experiment` (what may change in which status,
previewed by :func:`planned_changes`), :func:`clone_experiment` and :func:`archive_experiment`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update as update_statement
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col

from abcore.experiments.approvals import APPROVED, NO_APPROVAL
from abcore.experiments.errors import ExperimentError, InvalidTransition
from abcore.experiments.layers import layer_names
from abcore.experiments.lifecycle import create_draft
from abcore.experiments.records import get_experiment, get_variants, record_audit
from abcore.experiments.schemas import UPDATE_FIELDS, ExperimentCreate, ExperimentUpdate, VariantCreate
from abcore.experiments.validation import (
    check_actor,
    normalize_auto_stop,
    validate_auto_stop,
    validate_experiment,
)
from abcore.store.tables import Experiment, ExperimentStatus, Variant, utcnow
from abcore.store.values import is_number

#: What may change while an experiment runs or is paused (the traffic share only upwards).
SAFE_WHILE_RUNNING: tuple[str, ...] = ("description", "hypothesis", "secondary_metrics", "traffic_allocation")
# Why each other field is frozen once the experiment has started.
_FROZEN_REASONS: dict[str, str] = {
    "primary_metric": "the primary metric is the decision the experiment was started for; changing it after "
    "seeing data invalidates the test (clone the experiment to test another metric)",
    "guardrail_metrics": "guardrails are part of the plan the experiment was started with and the stopping rules "
    "act on them",
    "targeting": "changing who enters mixes two populations in one result",
    "allocations": "changing the split mid-experiment biases the comparison (early and late users are split "
    "differently); clone the experiment instead",
    "variant_models": "users already assigned would be served something else than what they were assigned to",
    "variant_configs": "users already assigned would be served something else than what they were assigned to",
    "success_criteria": "the success criteria were fixed before the data came in",
    "min_duration_days": "the minimum duration was fixed before the data came in",
    "min_samples_per_variant": "the minimum sample size was fixed before the data came in",
    "auto_stop": "change the stopping rules with the stopping-rules box (set_auto_stop), which audits them apart",
}


def _as_update(changes: ExperimentUpdate | Mapping[str, Any]) -> ExperimentUpdate:
    if isinstance(changes, ExperimentUpdate):
        return changes
    if not isinstance(changes, Mapping):
        raise ExperimentError("The changes must be an ExperimentUpdate or a mapping of field -> new value.")
    unknown = sorted(str(k) for k in changes if k not in UPDATE_FIELDS)
    problems = [f"Unknown field {k!r} (editable: {', '.join(UPDATE_FIELDS)})." for k in unknown]
    try:
        update = ExperimentUpdate.model_validate({k: v for k, v in changes.items() if k in UPDATE_FIELDS})
    except ValidationError as error:
        problems += [f"{'.'.join(map(str, e['loc']))}: {e['msg']}." for e in error.errors()]
        update = ExperimentUpdate()
    if problems:
        raise ExperimentError("The changes cannot be applied: " + " ".join(problems), problems)
    return update


def _clean_metrics(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(m.strip() for m in names if isinstance(m, str) and m.strip()))


def _current_values(experiment: Experiment, variants: Sequence[Variant]) -> dict[str, Any]:
    return {
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "primary_metric": experiment.primary_metric,
        "secondary_metrics": list(experiment.secondary_metrics or []),
        "guardrail_metrics": list(experiment.guardrail_metrics or []),
        "targeting": list(experiment.targeting or []),
        "traffic_allocation": experiment.traffic_allocation,
        "allocations": {v.name: v.allocation_pct for v in variants},
        "variant_models": {v.name: v.model_id for v in variants},
        "variant_configs": {v.name: dict(v.config or {}) for v in variants},
        "success_criteria": dict(experiment.success_criteria or {}),
        "min_duration_days": experiment.min_duration_days,
        "min_samples_per_variant": experiment.min_samples_per_variant,
        "auto_stop": dict(experiment.auto_stop or {}),
    }


def _as_create(experiment: Experiment, values: Mapping[str, Any], variants: Sequence[Variant]) -> ExperimentCreate:
    return ExperimentCreate(
        name=experiment.name,
        kind=experiment.kind,
        interleaving_method=experiment.interleaving_method,
        description=values["description"],
        hypothesis=values["hypothesis"],
        variants=[
            VariantCreate(
                name=v.name,
                allocation_pct=values["allocations"][v.name],
                model_id=values["variant_models"][v.name],
                config=values["variant_configs"][v.name],
                is_control=v.is_control,
            )
            for v in variants
        ],
        traffic_allocation=values["traffic_allocation"],
        targeting=values["targeting"],
        primary_metric=values["primary_metric"],
        secondary_metrics=values["secondary_metrics"],
        guardrail_metrics=values["guardrail_metrics"],
        success_criteria=values["success_criteria"],
        min_duration_days=values["min_duration_days"],
        min_samples_per_variant=values["min_samples_per_variant"],
        salt=experiment.salt,
        created_by=experiment.created_by,
        auto_stop=values["auto_stop"],
    )


def planned_changes(
    *, session: Session, ref: int | str | Experiment, changes: ExperimentUpdate | Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """What :func:`update_experiment` would change: field -> {"before", "after"} (only real changes).

    A field given with its current value is not a change. Metric names are stripped and deduplicated;
    when a draft's primary metric changes and the success criteria named the old one, they follow it.
    Raises exactly what :func:`update_experiment` would raise (refused changes, invalid values); saves nothing.
    """
    return _prepare_update(session, ref, changes)[2]


def _prepare_update(
    session: Session, ref: int | str | Experiment, changes: ExperimentUpdate | Mapping[str, Any]
) -> tuple[Experiment, list[Variant], dict[str, dict[str, Any]], dict[str, Any]]:
    """(experiment, variants, diff, merged values) after every check of :func:`update_experiment`."""
    update = _as_update(changes)
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    diff = _diff(experiment, variants, update)
    refused = _refusals(experiment, diff)
    if refused:
        raise InvalidTransition(f"Cannot edit {experiment.name!r}: " + " ".join(refused), refused)
    current = _current_values(experiment, variants)
    merged = {**current, **{f: c["after"] for f, c in diff.items()}}
    if diff:
        before_problems = set(validate_experiment(_as_create(experiment, current, variants), session=session,
                                                  existing_id=experiment.id))
        problems = [
            p
            for p in validate_experiment(_as_create(experiment, merged, variants), session=session,
                                         existing_id=experiment.id)
            if p not in before_problems
        ]
        if problems:
            raise ExperimentError(f"Cannot edit {experiment.name!r}: " + " ".join(problems), problems)
    return experiment, variants, diff, merged


def _diff(experiment: Experiment, variants: Sequence[Variant], update: ExperimentUpdate) -> dict[str, dict[str, Any]]:
    current = _current_values(experiment, variants)
    problems: list[str] = []
    requested: dict[str, Any] = {}
    for field in UPDATE_FIELDS:
        value = getattr(update, field)
        if value is None:
            continue
        if field in ("allocations", "variant_models", "variant_configs"):
            unknown = sorted(set(value) - set(current[field]))
            if unknown:
                names = ", ".join(current[field])
                problems.append(f"{experiment.name!r} has no variant(s) {', '.join(unknown)} (its variants: {names}).")
                continue
            value = {**current[field], **value}
        elif field in ("secondary_metrics", "guardrail_metrics"):
            value = _clean_metrics(value)
        elif field == "primary_metric":
            value = value.strip()
        elif field == "auto_stop" and not validate_auto_stop(value):
            value = normalize_auto_stop(value)
        requested[field] = value
    if problems:
        raise ExperimentError("The changes cannot be applied: " + " ".join(problems), problems)
    old_primary = current["primary_metric"]
    new_primary = requested.get("primary_metric", old_primary)
    criteria = dict(requested.get("success_criteria", current["success_criteria"]))
    following = experiment.status == ExperimentStatus.DRAFT  # elsewhere the primary change itself is refused
    if following and new_primary != old_primary and criteria.get("metric") == old_primary:
        criteria["metric"] = new_primary
        requested["success_criteria"] = criteria
    return {f: {"before": current[f], "after": v} for f, v in requested.items() if v != current[f]}


def _refusals(experiment: Experiment, diff: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every change refused in the experiment's status, each with its reason."""
    status = experiment.status
    if status == ExperimentStatus.DRAFT:
        return []
    if status not in (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        return [
            f"{field}: {experiment.name!r} is {status}; a finished experiment is not edited (clone it to run a "
            "changed version)."
            for field in diff
        ]
    refused = []
    for field, change in diff.items():
        if field == "traffic_allocation":
            if is_number(change["after"]) and change["after"] < change["before"]:
                refused.append(
                    f"traffic_allocation: the share can only go up while the experiment is {status} "
                    f"({change['before']:g} -> {change['after']:g}); lowering it would make the users who "
                    "entered and those who stay out differ over time (pause or stop it instead)."
                )
        elif field not in SAFE_WHILE_RUNNING:
            refused.append(f"{field}: cannot change while the experiment is {status}: {_FROZEN_REASONS[field]}.")
    return refused


def update_experiment(
    *,
    session: Session,
    ref: int | str | Experiment,
    changes: ExperimentUpdate | Mapping[str, Any],
    actor: str = "",
) -> Experiment:
    """Apply ``changes`` and return the experiment; one ``update`` audit entry holds every field's before/after.

    * draft: description, hypothesis, primary / secondary / guardrail metrics, targeting, traffic share,
      allocations, each variant's model and config, success criteria, minimums, stopping rules;
    * running or paused: only :data:`SAFE_WHILE_RUNNING` (description, hypothesis, secondary metrics,
      the traffic share upwards: raising it only adds users, see abcore.assign);
    * completed or cancelled: nothing (clone it instead).

    Raises :class:`InvalidTransition` listing every refused change with its reason, and
    :class:`ExperimentError` listing the problems :func:`validate_experiment` finds in the edited
    configuration (problems the experiment already had before the edit are not blamed on it).
    Nothing changes when anything is refused. Editing an approved draft withdraws its approval.
    """
    check_actor(actor)
    experiment, variants, diff, merged = _prepare_update(session, ref, changes)
    if not diff:
        return experiment
    status = experiment.status
    values: dict[str, Any] = {"updated_at": utcnow()}
    for field in ("description", "hypothesis", "primary_metric", "secondary_metrics", "guardrail_metrics", "targeting",
                  "success_criteria", "min_duration_days", "min_samples_per_variant", "auto_stop"):
        if field in diff:
            values[field] = merged[field]
    if "traffic_allocation" in diff:
        values["traffic_allocation"] = float(merged["traffic_allocation"])
    withdrawn = status == ExperimentStatus.DRAFT and experiment.approval_status == APPROVED
    approved_by = experiment.approved_by  # the update below refreshes the loaded object
    if withdrawn:
        values.update(NO_APPROVAL)
    try:
        result = session.execute(
            update_statement(Experiment)
            .where(col(Experiment.id) == experiment.id, col(Experiment.status) == status)
            .values(**values)
        )
        if result.rowcount != 1:
            session.rollback()
            fresh = get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
            raise InvalidTransition(f"Cannot edit {experiment.name!r}: it was just changed to {fresh.status} by someone else.")
        for variant in variants:
            new = (merged["allocations"][variant.name], merged["variant_models"][variant.name],
                   merged["variant_configs"][variant.name])
            if new != (variant.allocation_pct, variant.model_id, dict(variant.config or {})):
                variant.allocation_pct = float(new[0])
                variant.model_id = new[1]
                variant.config = dict(new[2])
                session.add(variant)
        record_audit(session, experiment.id, "update", actor, status, status, changes=diff)
        if withdrawn:
            record_audit(session, experiment.id, "approval_withdrawn", actor, status, status,
                   reason="edited after approval", approved_by=approved_by)
        session.commit()
    except (SQLAlchemyError, OverflowError) as error:
        session.rollback()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise ExperimentError(f"Cannot edit {experiment.name!r}: the database refused it ({reason}).") from error
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cloning and archiving


def clone_experiment(
    *, session: Session, ref: int | str | Experiment, name: str, keep_salt: bool = False, actor: str = ""
) -> Experiment:
    """A new **draft** named ``name`` with the configuration of ``ref``: variants (names, split, models,
    configs, control), traffic share, targeting, metrics, success criteria, minimums and stopping rules.

    A new salt is drawn unless ``keep_salt`` (then every user lands in the same variant as in the
    original, which suits a re-run of the same test but carries its users' history along). Status,
    dates, winner, approval and archive state are not copied. Audited on both experiments (``clone``
    on the original, ``create`` with ``cloned_from`` on the copy). Raises :class:`ExperimentError` for a
    taken or invalid name (every problem :func:`validate_experiment` finds).
    """
    source = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=source.id)  # type: ignore[arg-type]
    values = _current_values(source, variants)
    data = _as_create(source, values, variants)
    data.name = name if isinstance(name, str) else ""
    data.salt = source.salt if keep_salt else None
    data.created_by = actor or source.created_by
    data.layer, data.holdout_layers = layer_names(session, source)  # a clone joins the same layer, with the same share
    data.layer_share = source.layer_share if data.layer else None
    data.kind = source.kind
    return create_draft(session, data, actor, source, keep_salt=bool(keep_salt))


FINISHED: tuple[str, ...] = (ExperimentStatus.COMPLETED.value, ExperimentStatus.CANCELLED.value)


def archive_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", archived: bool = True
) -> Experiment:
    """Archive (``archived=False``: restore) a completed or cancelled experiment.

    Archived experiments are left out of :func:`list_experiments` unless ``include_archived``; nothing
    else changes (a shipped winner keeps being served, results stay readable by id or name).
    Raises :class:`InvalidTransition` for an experiment that is not finished, or already in the asked state.
    Audited as ``archive`` / ``unarchive``.
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    verb = "archive" if archived else "restore"
    if experiment.status not in FINISHED:
        raise InvalidTransition(
            f"Cannot {verb} {experiment.name!r}: it is {experiment.status}; only completed or cancelled experiments"
            " are archived (stop or cancel it first)."
        )
    if (experiment.archived_at is not None) == bool(archived):
        state = "already archived" if archived else "not archived"
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it is {state}.")
    now = utcnow()
    was = col(Experiment.archived_at).is_(None) if archived else col(Experiment.archived_at).is_not(None)
    result = session.execute(
        update_statement(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status).in_(FINISHED), was)
        .values(archived_at=now if archived else None, updated_at=now)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it was just changed by someone else.")
    record_audit(session, experiment.id, "archive" if archived else "unarchive", actor, experiment.status, experiment.status)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
