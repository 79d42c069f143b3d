"""Approvals (four eyes before a draft starts) and the per-store settings that turn them on.

An approval covers the draft's :func:`run_configuration` (hashed by :func:`configuration_fingerprint`); an
edit afterwards withdraws it. Whether approvals are required is the store setting ``require_approval``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import update as update_statement
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col

from abcore.experiments.errors import ExperimentError, InvalidTransition
from abcore.experiments.records import audit_log, get_experiment, get_variants, record_audit
from abcore.experiments.validation import check_actor, text_problems
from abcore.store.tables import AuditLog, Experiment, ExperimentStatus, Setting, Variant, utcnow

REQUIRE_APPROVAL = "require_approval"
#: The per-store settings abcore knows: key -> (type of the value, default, what it means).
SETTINGS: dict[str, tuple[type, Any, str]] = {
    REQUIRE_APPROVAL: (bool, False, "a draft needs an approver's approval before it can start"),
}


def get_setting(*, session: Session, key: str) -> Any:
    """The stored value of setting ``key``, or its default (:data:`SETTINGS`); unknown keys raise."""
    if key not in SETTINGS:
        raise ExperimentError(f"Unknown setting {key!r} (known: {', '.join(SETTINGS)}).")
    row = session.get(Setting, key)
    if row is not None:
        session.refresh(row)  # another process may have changed it
    return SETTINGS[key][1] if row is None or row.value is None else row.value


def set_setting(*, session: Session, key: str, value: Any, actor: str = "") -> Any:
    """Store setting ``key`` (audited as ``set_setting`` with before/after); returns the new value.

    Raises :class:`ExperimentError` for an unknown key or a value of the wrong type.
    """
    check_actor(actor)
    if key not in SETTINGS:
        raise ExperimentError(f"Unknown setting {key!r} (known: {', '.join(SETTINGS)}).")
    kind = SETTINGS[key][0]
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ExperimentError(f"The setting {key!r} must be a {kind.__name__}; got {value!r}.")
    before = get_setting(session=session, key=key)
    for attempt in range(2):  # a concurrent first write of the same key: retry once as an update
        row = session.get(Setting, key)
        if row is None:
            row = Setting(key=key)
        row.value = value
        row.updated_by = actor
        row.updated_at = utcnow()
        session.add(row)
        record_audit(session, None, "set_setting", actor, None, None, key=key, before=before, after=value)
        try:
            session.commit()
            break
        except IntegrityError:
            session.rollback()
            if attempt:
                raise
    return value


def require_approval(*, session: Session) -> bool:
    """Whether drafts need an approval before they start (setting ``require_approval``, off by default)."""
    return bool(get_setting(session=session, key=REQUIRE_APPROVAL))


def set_require_approval(*, session: Session, required: bool, actor: str = "") -> bool:
    """Turn the approval requirement on or off for the whole store (audited)."""
    return bool(set_setting(session=session, key=REQUIRE_APPROVAL, value=required, actor=actor))




APPROVAL_NONE = ""
#: Audit actions that change a draft's configuration (what an approval covers).
CONFIGURATION_ACTIONS: tuple[str, ...] = ("update", "update_allocations", "set_traffic", "set_auto_stop")
REQUESTED = "requested"
APPROVED = "approved"
REJECTED = "rejected"
NO_APPROVAL: dict[str, Any] = {
    "approval_status": APPROVAL_NONE, "approved_by": None, "approved_at": None, "approval_fingerprint": None,
}


def run_configuration(*, session: Session, ref: int | str | Experiment) -> dict[str, Any]:
    """What will run when the draft starts, as plain JSON: variants (split, model, config, control),
    traffic share, targeting, metrics, success criteria, minimums, stopping rules and the salt.

    This is what an approver approves; :func:`configuration_fingerprint` hashes it.
    """
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    return _run_configuration(experiment, variants)


def _run_configuration(experiment: Experiment, variants: Sequence[Variant]) -> dict[str, Any]:
    return {
        "name": experiment.name,
        "description": experiment.description,
        "hypothesis": experiment.hypothesis,
        "salt": experiment.salt,
        "variants": [
            {"name": v.name, "allocation_pct": float(v.allocation_pct), "model_id": v.model_id,
             "config": dict(v.config or {}), "is_control": bool(v.is_control)}
            for v in variants
        ],
        "traffic_allocation": float(experiment.traffic_allocation),
        "targeting": list(experiment.targeting or []),
        "primary_metric": experiment.primary_metric,
        "secondary_metrics": list(experiment.secondary_metrics or []),
        "guardrail_metrics": list(experiment.guardrail_metrics or []),
        "success_criteria": dict(experiment.success_criteria or {}),
        "min_duration_days": experiment.min_duration_days,
        "min_samples_per_variant": experiment.min_samples_per_variant,
        "auto_stop": dict(experiment.auto_stop or {}),
    }


def configuration_fingerprint(configuration: Mapping[str, Any]) -> str:
    """Hex SHA-256 of :func:`run_configuration`'s JSON (sorted keys, compact): equal iff nothing changed."""
    text = json.dumps(configuration, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


@dataclass(frozen=True)
class ApprovalState:
    """Where a draft stands with approvals (:func:`approval_state`)."""

    required: bool  # the store requires approvals
    status: str  # "" | requested | approved | rejected
    approved_by: str | None
    approved_at: datetime | None
    current: bool  # approved, and the configuration is still the approved one
    comment: str  # the comment of the last request, approval or rejection
    decided_by: str  # who made the last decision (approve / reject), "" when none

    @property
    def can_start(self) -> bool:
        """Whether the approval rule lets the draft start."""
        return not self.required or self.current


def approval_state(*, session: Session, ref: int | str | Experiment) -> ApprovalState:
    """The approval state of an experiment, with the last comment from the audit log."""
    experiment = get_experiment(session=session, ref=ref)
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    current = (
        experiment.approval_status == APPROVED
        and experiment.approval_fingerprint == configuration_fingerprint(_run_configuration(experiment, variants))
    )
    last = next(
        (a for a in audit_log(session=session, experiment_id=experiment.id)
         if a.action in ("request_approval", "approve", "reject", "approval_withdrawn")),
        None,
    )
    return ApprovalState(
        required=require_approval(session=session),
        status=experiment.approval_status or APPROVAL_NONE,
        approved_by=experiment.approved_by,
        approved_at=experiment.approved_at,
        current=current,
        comment=str((last.details or {}).get("comment", "")) if last is not None else "",
        decided_by=last.actor if last is not None and last.action in ("approve", "reject") else "",
    )


def approval_problem(*, session: Session, ref: int | str | Experiment) -> str | None:
    """Why the draft cannot start under the approval rule (None when it can, or approvals are off)."""
    if not require_approval(session=session):
        return None
    experiment = get_experiment(session=session, ref=ref)
    state = approval_state(session=session, ref=experiment)
    if state.current:
        return None
    prefix = f"Cannot start {experiment.name!r}: this store requires an approval before a draft starts, and"
    if state.status == APPROVED:
        return f"{prefix} it was changed after {state.approved_by} approved it; it needs a new approval."
    if state.status == REJECTED:
        why = f" ({state.comment})" if state.comment else ""
        return f"{prefix} {state.decided_by or 'an approver'} rejected it{why}; edit it and request approval again."
    if state.status == REQUESTED:
        return f"{prefix} it is waiting for an approver (`abcore approve {experiment.name}`)."
    return f"{prefix} nobody approved it yet; request an approval from someone with the approver role."


def approval_authors(*, session: Session, ref: int | str | Experiment) -> set[str]:
    """Who cannot approve the draft's current configuration (four eyes): whoever asked for the approval
    since the last decision, and whoever wrote the configuration last (its creator or last editor)."""
    experiment = get_experiment(session=session, ref=ref)
    authors: set[str] = set()
    for entry in audit_log(session=session, experiment_id=experiment.id):  # newest first
        if entry.action in ("approve", "reject"):
            break
        if entry.action == "request_approval":
            authors.add(entry.actor)
    last_edit = next((e for e in audit_log(session=session, experiment_id=experiment.id)
                      if e.action in (*CONFIGURATION_ACTIONS, "create")), None)
    if last_edit is not None:
        authors.add(last_edit.actor)
    return {a for a in authors if a}


def _approval_change(
    session: Session,
    ref: int | str | Experiment,
    action: str,
    actor: str,
    comment: str,
    allowed_from: Sequence[str],
    allow_self_approval: bool = True,
) -> Experiment:
    check_actor(actor)
    problems = text_problems("comment", comment if isinstance(comment, str) else "", None)
    if not isinstance(comment, str):
        problems.append("The comment must be text.")
    if problems:
        raise ExperimentError(" ".join(problems), problems)
    experiment = get_experiment(session=session, ref=ref)
    verb = {"request_approval": "request an approval of", "approve": "approve", "reject": "reject"}[action]
    if experiment.status != ExperimentStatus.DRAFT:
        raise InvalidTransition(
            f"Cannot {verb} {experiment.name!r}: it is {experiment.status}; approvals are for drafts."
        )
    if action in ("approve", "reject") and not actor.strip():
        raise ExperimentError(f"Cannot {verb} {experiment.name!r} anonymously: say who decides (the actor).")
    if action == "reject" and not comment.strip():
        raise ExperimentError(f"Cannot reject {experiment.name!r} without a comment: say what has to change.")
    if action == "approve" and not allow_self_approval and actor in approval_authors(session=session, ref=experiment):
        raise ExperimentError(
            f"Cannot approve {experiment.name!r}: {actor} asked for this approval or wrote its current configuration;"
            " another approver must approve it (four eyes)."
        )
    state = approval_state(session=session, ref=experiment)
    status = experiment.approval_status or APPROVAL_NONE
    if status == APPROVED and not state.current:  # edited behind abcore's back: treat as not approved
        status = APPROVAL_NONE
    if status not in allowed_from:
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it is already {status}.")
    variants = get_variants(session=session, experiment_id=experiment.id)  # type: ignore[arg-type]
    configuration = _run_configuration(experiment, variants)
    now = utcnow()
    if action == "approve":
        values: dict[str, Any] = {"approval_status": APPROVED, "approved_by": actor, "approved_at": now,
                                  "approval_fingerprint": configuration_fingerprint(configuration)}
    else:
        values = {**NO_APPROVAL, "approval_status": REQUESTED if action == "request_approval" else REJECTED}
    result = session.execute(
        update_statement(Experiment)
        .where(col(Experiment.id) == experiment.id, col(Experiment.status) == ExperimentStatus.DRAFT,
               col(Experiment.updated_at) == experiment.updated_at)
        .values(**values, updated_at=experiment.updated_at)  # a decision is not an edit
    )
    if result.rowcount != 1:
        session.rollback()
        raise InvalidTransition(f"Cannot {verb} {experiment.name!r}: it was just changed by someone else; look again.")
    details: dict[str, Any] = {"comment": comment.strip(), "previous": status}
    if action == "approve":
        details.update(configuration=configuration, fingerprint=values["approval_fingerprint"])
    record_audit(session, experiment.id, action, actor, experiment.status, experiment.status, **details)
    session.commit()
    return get_experiment(session=session, ref=experiment.id)  # type: ignore[arg-type]


def request_approval(*, session: Session, ref: int | str | Experiment, actor: str = "", comment: str = "") -> Experiment:
    """Mark a draft as waiting for an approver (also after a rejection); audited as ``request_approval``."""
    return _approval_change(session, ref, "request_approval", actor, comment, (APPROVAL_NONE, REJECTED))


def approve_experiment(
    *,
    session: Session,
    ref: int | str | Experiment,
    actor: str,
    comment: str = "",
    allow_self_approval: bool = False,
) -> Experiment:
    """Approve a draft's current configuration (``approved_by`` = ``actor``).

    Any draft not yet approved can be approved (requested or not, or rejected before), but not by
    someone in :func:`approval_authors` unless ``allow_self_approval`` (the open-mode dashboard, where
    every visitor is the same anonymous actor, passes it). The audit entry
    ``approve`` holds the comment and the approved configuration (:func:`run_configuration`); an edit
    afterwards withdraws the approval. Who may approve (the ``approver`` role) is checked by the
    caller: the dashboard by :func:`abcore.access.users.can_approve`; the CLI acts with database access.
    """
    return _approval_change(session, ref, "approve", actor, comment, (APPROVAL_NONE, REQUESTED, REJECTED),
                            allow_self_approval)


def reject_experiment(*, session: Session, ref: int | str | Experiment, actor: str, comment: str) -> Experiment:
    """Reject a draft (a comment saying what must change is required); withdraws an earlier approval.

    Audited as ``reject``; the draft can be edited and :func:`request_approval` asked again.
    """
    return _approval_change(session, ref, "reject", actor, comment, (APPROVAL_NONE, REQUESTED, APPROVED))


def withdraw_approval(session: Session, experiment: Experiment, actor: str, reason: str) -> None:
    """An approved draft changed (split, traffic, stopping rules): its approval no longer holds."""
    if experiment.status != ExperimentStatus.DRAFT or experiment.approval_status != APPROVED:
        return
    approved_by = experiment.approved_by
    for key, value in NO_APPROVAL.items():
        setattr(experiment, key, value)
    record_audit(session, experiment.id, "approval_withdrawn", actor, experiment.status, experiment.status,
           reason=reason, approved_by=approved_by)


def edits_since_decision(*, session: Session, ref: int | str | Experiment) -> list[AuditLog]:
    """Configuration changes (``update``, split, traffic, stopping rules) since the last approval,
    rejection or request (since creation when there was none), oldest first: what an approver reviews."""
    experiment = get_experiment(session=session, ref=ref)
    edits: list[AuditLog] = []
    for entry in audit_log(session=session, experiment_id=experiment.id):  # newest first
        if entry.action in ("approve", "reject", "request_approval", "create"):
            break
        if entry.action in CONFIGURATION_ACTIONS:
            edits.append(entry)
    return edits[::-1]
