"""Reading experiments and their audit trail: :func:`get_experiment`, :func:`list_experiments`,
:func:`get_variants`, :func:`audit_log`, and :func:`record_audit`, which every change calls.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from abcore.experiments.errors import ExperimentNotFound
from abcore.store.tables import AuditLog, Experiment, Variant
from abcore.store.values import has_lone_surrogate, id_of, is_id_text


def record_audit(
    session: Session,
    experiment_id: int | None,
    action: str,
    actor: str,
    from_status: str | None = None,
    to_status: str | None = None,
    **details: Any,
) -> None:
    session.add(
        AuditLog(
            experiment_id=experiment_id,
            action=action,
            from_status=from_status,
            to_status=to_status,
            actor=actor,
            details=details,
        )
    )


def get_experiment(*, session: Session, ref: int | str | Experiment) -> Experiment:
    """The experiment with id or name ``ref``: an int, or a string of ASCII digits, is always an id (experiment
    names cannot be all digits); any other string is a name (surrounding blanks ignored)."""
    if isinstance(ref, Experiment):
        ref = ref.id  # type: ignore[assignment]
    experiment: Experiment | None = None
    if isinstance(ref, int) and not isinstance(ref, bool):
        experiment = session.get(Experiment, ref)
    elif isinstance(ref, str) and has_lone_surrogate(ref):  # e.g. undecodable bytes on a command line
        raise ExperimentNotFound(f"No experiment with id or name {ref!r} (the name is not valid Unicode).")
    elif isinstance(ref, str) and is_id_text(ref.strip()):
        number = id_of(ref.strip())
        experiment = None if number is None else session.get(Experiment, number)
        if experiment is None:
            raise ExperimentNotFound(f"No experiment with id or name {ref!r} (a reference made of digits is an id).")
    elif isinstance(ref, str):
        experiment = session.exec(select(Experiment).where(Experiment.name == ref.strip())).first()
    if experiment is None:
        raise ExperimentNotFound(f"No experiment with id or name {ref!r}.")
    session.refresh(experiment)
    return experiment


def list_experiments(
    *, session: Session, status: str | None = None, include_archived: bool = False
) -> list[Experiment]:
    """Experiments, newest first, optionally only those in ``status``; archived ones only with ``include_archived``."""
    query = select(Experiment).order_by(col(Experiment.created_at).desc(), col(Experiment.id).desc())
    if status is not None:
        query = query.where(Experiment.status == status)
    if not include_archived:
        query = query.where(col(Experiment.archived_at).is_(None))
    return list(session.exec(query).all())


def get_variants(*, session: Session, experiment_id: int) -> list[Variant]:
    """The experiment's variants in form order (control first unless configured otherwise)."""
    return list(
        session.exec(select(Variant).where(Variant.experiment_id == experiment_id).order_by(Variant.position)).all()
    )


def audit_log(*, session: Session, experiment_id: int | None = None) -> list[AuditLog]:
    """Audit entries, newest first; all of them, or one experiment's."""
    query = select(AuditLog).order_by(col(AuditLog.ts).desc(), col(AuditLog.id).desc())
    if experiment_id is not None:
        query = query.where(AuditLog.experiment_id == experiment_id)
    return list(session.exec(query).all())
