"""Experiment management: create and validate experiments, and the lifecycle state machine.

Every lifecycle change is one atomic ``UPDATE ... WHERE status = <expected>``, so two
people pressing Start on the same draft at once end with one start and one clear
:class:`InvalidTransition`. Every change writes a row to ``ab_audit_log``.
Functions take the session as a keyword argument and commit their work.

Lifecycle::

    draft --start--> running --pause--> paused --resume--> running
      |                 |                  |
      |                 +------stop--------+-----> completed --ship--> completed (winner, rollout %)
      +--delete (gone)  +------cancel------+-----> cancelled
      +--cancel-------------------------------> cancelled
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlmodel import Session, col

from abcore.experiments import layers
from abcore.experiments.approvals import APPROVED, approval_problem, require_approval, withdraw_approval
from abcore.experiments.errors import ApprovalRequired, ExperimentError, InvalidTransition
from abcore.experiments.records import get_experiment, get_variants, record_audit
from abcore.experiments.schemas import ExperimentCreate
from abcore.experiments.validation import (
    allocation_problems,
    check_actor,
    interleaving_method_of,
    normalize_auto_stop,
    raise_problems,
    validate_auto_stop,
    validate_experiment,
)
from abcore.store.tables import Experiment, ExperimentStatus, Variant, utcnow
from abcore.store.values import id_of, is_id_text, is_number

# action -> (statuses it applies to, resulting status); "ship" and "delete" are handled apart.
TRANSITIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "start": ((ExperimentStatus.DRAFT,), ExperimentStatus.RUNNING),
    "pause": ((ExperimentStatus.RUNNING,), ExperimentStatus.PAUSED),
    "resume": ((ExperimentStatus.PAUSED,), ExperimentStatus.RUNNING),
    "stop": ((ExperimentStatus.RUNNING, ExperimentStatus.PAUSED), ExperimentStatus.COMPLETED),
    "cancel": (
        (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED),
        ExperimentStatus.CANCELLED,
    ),
}
_ACTIONS_BY_STATUS: dict[str, list[str]] = {
    ExperimentStatus.DRAFT: ["start", "delete", "cancel"],
    ExperimentStatus.RUNNING: ["pause", "stop", "cancel"],
    ExperimentStatus.PAUSED: ["resume", "stop", "cancel"],
    ExperimentStatus.COMPLETED: ["ship"],
    ExperimentStatus.CANCELLED: [],
}


def allowed_actions(status: str) -> list[str]:
    """The lifecycle actions offered for an experiment in ``status`` (unknown status: none)."""
    return list(_ACTIONS_BY_STATUS.get(status, []))


def create_experiment(*, session: Session, data: ExperimentCreate, actor: str = "") -> Experiment:
    """Save ``data`` as a **draft** experiment with its variants and return it.

    The first variant is the control unless one is marked ``is_control``. The salt is
    generated when not given and never changes afterwards (renaming never reshuffles).
    Raises :class:`ExperimentError` listing every problem found by :func:`validate_experiment`.
    """
    return create_draft(session, data, actor)


def create_draft(session: Session, data: ExperimentCreate, actor: str, source: Experiment | None = None, **clone: Any) -> Experiment:
    """Insert the draft; with ``source`` it is a clone, audited on both experiments in the same commit."""
    check_actor(actor)
    raise_problems(validate_experiment(data, session=session))
    with store_refusals(session, [data.name]):
        experiment = add_draft(session, data, actor, source, **clone)
        session.commit()
    session.refresh(experiment)
    return experiment


def add_draft(session: Session, data: ExperimentCreate, actor: str, source: Experiment | None = None, **clone: Any) -> Experiment:
    """Add the draft ``data`` (already validated), its variants and its audit row(s) to ``session`` and flush;
    nothing is committed, so a caller writing several drafts commits them together (inside :func:`store_refusals`)."""
    control_index = next((i for i, v in enumerate(data.variants) if v.is_control), 0)
    now = utcnow()
    experiment = Experiment(
        name=data.name.strip(),
        kind=data.kind,
        interleaving_method=interleaving_method_of(data),
        description=data.description,
        hypothesis=data.hypothesis,
        status=ExperimentStatus.DRAFT.value,
        salt=(data.salt or "").strip() or f"{data.name.strip()[:80]}-{secrets.token_hex(4)}",
        traffic_allocation=float(data.traffic_allocation),
        targeting=list(data.targeting),
        primary_metric=data.primary_metric.strip(),
        secondary_metrics=[m.strip() for m in data.secondary_metrics if m.strip()],
        guardrail_metrics=[m.strip() for m in data.guardrail_metrics if m.strip()],
        success_criteria=dict(data.success_criteria),
        min_duration_days=data.min_duration_days,
        min_samples_per_variant=data.min_samples_per_variant,
        auto_stop=normalize_auto_stop(data.auto_stop),
        **layers.layer_columns(data, session),
        created_by=actor or data.created_by,
        created_at=now,
        updated_at=now,
    )
    session.add(experiment)
    session.flush()
    for position, spec in enumerate(data.variants):
        session.add(
            Variant(
                experiment_id=experiment.id,
                name=spec.name.strip(),
                allocation_pct=float(spec.allocation_pct),
                model_id=spec.model_id,
                config=dict(spec.config),
                is_control=position == control_index,
                position=position,
            )
        )
    if source is None:
        record_audit(session, experiment.id, "create", actor, None, ExperimentStatus.DRAFT.value, name=experiment.name)
    else:
        record_audit(session, experiment.id, "create", actor, None, ExperimentStatus.DRAFT.value, name=experiment.name,
               cloned_from={"id": source.id, "name": source.name}, **clone)
        record_audit(session, source.id, "clone", actor, source.status, source.status,
               clone={"id": experiment.id, "name": experiment.name}, **clone)
    session.flush()
    return experiment


@contextmanager
def store_refusals(session: Session, names: Sequence[str]) -> Iterator[None]:
    """Around the writes and the commit of new experiments called ``names``: what the store refuses after
    validation passed rolls the whole transaction back and is raised as :class:`ExperimentError`
    (a concurrent create that took a name; a value the database cannot hold)."""
    try:
        yield
    except ExperimentError:
        session.rollback()
        raise
    except IntegrityError as error:  # a concurrent create took the name between validation and insert
        session.rollback()
        shown = ", ".join(repr(n.strip()) for n in names[:5])
        what = f"An experiment named {shown} already exists." if len(names) == 1 else \
            f"One of the experiments named {shown} already exists; none was created."
        raise ExperimentError(what) from error
    except (SQLAlchemyError, ValueError, OverflowError) as error:  # validation missed something the store refuses
        session.rollback()
        reason = str(getattr(error, "orig", None) or error).splitlines()[0][:200]
        raise ExperimentError(f"The experiment cannot be saved: the database refused it ({reason}).") from error


def _transition(
    session: Session,
    ref: int | str | Experiment,
    action: str,
    actor: str,
    conditions: Sequence[Any] = (),
    **details: Any,
) -> Experiment:
    """Apply the lifecycle ``action`` to ``ref`` and commit; raises :class:`InvalidTransition` when not allowed."""
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    apply_transition(session, experiment, action, actor, conditions, **details)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def apply_transition(
    session: Session,
    experiment: Experiment,
    action: str,
    actor: str,
    conditions: Sequence[Any] = (),
    **details: Any,
) -> None:
    """Write the lifecycle ``action`` (one atomic conditional UPDATE and its audit row) without committing.

    The caller commits, so the transition can share one transaction with other changes. Raises
    :class:`InvalidTransition` (or :class:`ApprovalRequired` when ``conditions`` no longer hold) and
    rolls the session back when the experiment was changed by someone else since it was read.
    """
    sources, target = TRANSITIONS[action]
    current = experiment.status
    if current not in sources:
        raise InvalidTransition(
            f"Cannot {action} experiment {experiment.name!r}: it is {current}"
            f" (allowed from {', '.join(s.value for s in sources)})."
        )
    now = utcnow()
    values: dict[str, Any] = {"status": target.value, "updated_at": now}
    if action == "start":
        values["started_at"] = now
    if action in ("stop", "cancel") and current != ExperimentStatus.DRAFT:
        values["stopped_at"] = now
    layer_values = layers.transition_values(session, experiment, action)  # reserve at start, release at stop
    values.update(layer_values)
    if "layer_ranges" in layer_values:
        details["layer_ranges"] = layer_values["layer_ranges"] or experiment.layer_ranges
    result = session.execute(
        update(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status) == current, *conditions)
        .values(**values)
    )
    if result.rowcount != 1:  # somebody else changed it between our read and our write
        session.rollback()
        fresh = get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
        if conditions and fresh.status == current:
            raise ApprovalRequired(
                f"Cannot {action} experiment {experiment.name!r}: its approval was withdrawn or it was edited just now;"
                " it needs a new approval."
            )
        raise InvalidTransition(
            f"Cannot {action} experiment {experiment.name!r}: it was just changed to {fresh.status} by someone else."
        )
    record_audit(session, experiment.id, action, actor, current, target.value, **details)


def start_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """draft -> running: users start being assigned.

    When the store requires approvals (:func:`require_approval`), the draft must be approved in its
    current configuration (:func:`approve_experiment`; an edit since then withdraws the approval),
    otherwise :class:`ApprovalRequired` says why. The check and the start are one atomic update, so
    an approval withdrawn or an edit saved at the same moment is never started unapproved.
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status != ExperimentStatus.DRAFT or not require_approval(session=session):
        return _transition(session, experiment, "start", actor)
    problem = approval_problem(session=session, ref=experiment)
    if problem is not None:
        raise ApprovalRequired(problem)
    conditions = (
        col(Experiment.approval_status) == APPROVED,
        col(Experiment.approval_fingerprint) == experiment.approval_fingerprint,
    )
    return _transition(session, experiment, "start", actor, conditions, approved_by=experiment.approved_by)


def pause_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", reason: str = ""
) -> Experiment:
    """running -> paused: assigned users keep their variant, nobody new enters (``reason`` goes to the audit log)."""
    return _transition(session, ref, "pause", actor, **({"reason": reason} if reason else {}))


def resume_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """paused -> running."""
    return _transition(session, ref, "resume", actor)


def stop_experiment(
    *, session: Session, ref: int | str | Experiment, actor: str = "", reason: str = ""
) -> Experiment:
    """running or paused -> completed: assignments freeze, data is kept (``reason`` goes to the audit log)."""
    return _transition(session, ref, "stop", actor, **({"reason": reason} if reason else {}))


def cancel_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> Experiment:
    """draft, running or paused -> cancelled: callers get None from then on."""
    return _transition(session, ref, "cancel", actor)


def ship_winner(
    *,
    session: Session,
    ref: int | str | Experiment,
    variant: int | str,
    rollout_pct: float = 100.0,
    actor: str = "",
    stop: bool = False,
) -> Experiment:
    """Declare ``variant`` (id or name) the winner of a completed experiment, served to ``rollout_pct`` % of users.

    With ``stop=True`` a running or paused experiment is stopped first. Everything is checked before
    anything is written (the status, the rollout, the variant), and the stop and the ship are one
    transaction: a refused ship leaves the experiment as it was, still running.
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    stopping = stop and experiment.status in TRANSITIONS["stop"][0]
    if experiment.status != ExperimentStatus.COMPLETED and not stopping:
        raise InvalidTransition(
            f"Cannot ship a winner of {experiment.name!r}: it is {experiment.status}; stop the experiment first."
        )
    if not is_number(rollout_pct) or not 0 < rollout_pct <= 100:
        raise ExperimentError("The rollout must be more than 0 % and at most 100 %.")
    chosen = _winner_variant(session, experiment, variant)
    if stopping:
        apply_transition(session, experiment, "stop", actor)
    completed = ExperimentStatus.COMPLETED.value
    previous = {"winner_variant_id": experiment.winner_variant_id, "rollout_pct": experiment.rollout_pct}
    result = session.execute(
        update(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status) == completed)
        .values(winner_variant_id=chosen.id, rollout_pct=float(rollout_pct), updated_at=utcnow())
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot ship a winner of {experiment.name!r}: it was just changed by someone else.")
    record_audit(session, experiment.id, "ship", actor, completed, completed, winner=chosen.name,
                 rollout_pct=float(rollout_pct), previous=previous)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def _winner_variant(session: Session, experiment: Experiment, variant: int | str) -> Variant:
    """The variant of ``experiment`` with id or name ``variant`` (a name first: variant names are only compared
    within one experiment, then a string of digits as an id); :class:`ExperimentError` naming its variants if none."""
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    chosen = next((v for v in variants if v.id == variant or v.name == variant), None)
    if chosen is None and isinstance(variant, str) and is_id_text(variant) and id_of(variant) is not None:
        chosen = next((v for v in variants if v.id == int(variant)), None)
    if chosen is None:
        names = ", ".join(v.name for v in variants)
        raise ExperimentError(f"{experiment.name!r} has no variant {variant!r} (its variants: {names}).")
    return chosen


def delete_experiment(*, session: Session, ref: int | str | Experiment, actor: str = "") -> None:
    """Delete a draft (it has no data yet); the audit log keeps a record with its name."""
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status != ExperimentStatus.DRAFT:
        raise InvalidTransition(
            f"Cannot delete {experiment.name!r}: it is {experiment.status}; only drafts can be deleted (cancel it instead)."
        )
    result = session.execute(
        delete(Experiment).where(col(Experiment.id) == experiment.id, col(Experiment.status) == ExperimentStatus.DRAFT)
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot delete {experiment.name!r}: it was just changed by someone else.")
    record_audit(session, None, "delete", actor, ExperimentStatus.DRAFT.value, None, name=experiment.name, id=experiment.id)
    session.commit()


def update_allocations(
    *, session: Session, ref: int | str | Experiment, allocations: Mapping[str, float], actor: str = ""
) -> Experiment:
    """Change the split (variant name -> percent, summing to 100) of a draft, running or paused experiment.

    Users already assigned keep their variant (the stored assignment always wins);
    only new users follow the new split.
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the split of {experiment.name!r}: it is {experiment.status}.")
    layers.refuse_holdout_split_change(experiment, "split")
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    by_name = {v.name: v for v in variants}
    unknown = sorted(set(allocations) - set(by_name))
    if unknown:
        raise ExperimentError(f"{experiment.name!r} has no variant(s) {', '.join(unknown)}.")
    new = {name: allocations.get(name, v.allocation_pct) for name, v in by_name.items()}
    split_problems = allocation_problems(list(new.values()))  # the one rule of create and edit too
    if split_problems:
        raise ExperimentError(split_problems[0], split_problems)
    before = {v.name: v.allocation_pct for v in variants}
    for name, variant in by_name.items():
        variant.allocation_pct = float(new[name])
        session.add(variant)
    experiment.updated_at = utcnow()
    session.add(experiment)
    withdraw_approval(session, experiment, actor, "split changed")
    record_audit(session, experiment.id, "update_allocations", actor, experiment.status, experiment.status, before=before, after=new)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def set_traffic_allocation(
    *, session: Session, ref: int | str | Experiment, traffic_allocation: float, actor: str = ""
) -> Experiment:
    """Change the share [0-1] of eligible users that enter; raising it only adds users.

    0 lets nobody new in (assigned users keep their variant); a new experiment needs more than 0.
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the traffic share of {experiment.name!r}: it is {experiment.status}.")
    layers.refuse_holdout_split_change(experiment, "traffic share")
    if not is_number(traffic_allocation) or not 0 <= traffic_allocation <= 1:
        raise ExperimentError("The traffic share must be between 0 and 1 (100 %).")
    before = experiment.traffic_allocation
    experiment.traffic_allocation = float(traffic_allocation)
    experiment.updated_at = utcnow()
    session.add(experiment)
    withdraw_approval(session, experiment, actor, "traffic share changed")
    record_audit(
        session,
        experiment.id,
        "set_traffic",
        actor,
        experiment.status,
        experiment.status,
        before=before,
        after=float(traffic_allocation),
    )
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def set_auto_stop(
    *, session: Session, ref: int | str | Experiment, auto_stop: Mapping[str, Any] | None, actor: str = ""
) -> Experiment:
    """Replace the stopping rules of a draft, running or paused experiment ({} / None: stop watching it).

    Raises :class:`ExperimentError` listing the problems found by :func:`validate_auto_stop`.
    The change is audited (``set_auto_stop`` with the rules before and after).
    """
    check_actor(actor)
    experiment = get_experiment(session=session, ref=ref)
    if experiment.status not in (ExperimentStatus.DRAFT, ExperimentStatus.RUNNING, ExperimentStatus.PAUSED):
        raise InvalidTransition(f"Cannot change the stopping rules of {experiment.name!r}: it is {experiment.status}.")
    problems = validate_auto_stop(auto_stop)
    if problems:
        raise ExperimentError("The stopping rules cannot be saved: " + " ".join(problems), problems)
    before = dict(experiment.auto_stop or {})
    after = normalize_auto_stop(auto_stop)
    experiment.auto_stop = after
    experiment.updated_at = utcnow()
    session.add(experiment)
    withdraw_approval(session, experiment, actor, "stopping rules changed")
    record_audit(session, experiment.id, "set_auto_stop", actor, experiment.status, experiment.status, before=before, after=after)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]
