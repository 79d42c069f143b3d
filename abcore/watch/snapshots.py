"""What the watcher stored, read back for the dashboard and the CLI: result snapshots and alerts.

Each pass of :func:`abcore.watch.runner.run_pass` stores one snapshot per running experiment
(``ab_result_snapshots``) and one alert per rule that fired (``ab_alerts``); these functions only read them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from abcore.store.tables import Alert, ResultSnapshot

__all__ = ["aware_utc", "latest_snapshot", "list_alerts", "snapshot_history"]


def aware_utc(ts: datetime) -> datetime:
    """A timestamp read from the store as an aware UTC datetime (naive values are UTC)."""
    from abcore.analysis.overview import as_utc  # imported on use: the analysis stack is heavy

    return as_utc(ts)  # type: ignore[return-value]


def latest_snapshot(*, session: Session, experiment_id: int) -> ResultSnapshot | None:
    """The newest snapshot of an experiment, or None."""
    return session.exec(
        select(ResultSnapshot).where(ResultSnapshot.experiment_id == experiment_id)
        .order_by(col(ResultSnapshot.computed_at).desc(), col(ResultSnapshot.id).desc())
    ).first()


def snapshot_history(*, session: Session, experiment_id: int, limit: int = 1000) -> list[dict[str, Any]]:
    """The primary metric's decision over time, oldest first: one dict per snapshot with
    ``computed_at``, ``outcome``, ``verdict`` and the first treatment's ``lift`` / CI / adjusted p."""
    rows = session.exec(
        select(ResultSnapshot).where(ResultSnapshot.experiment_id == experiment_id)
        .order_by(col(ResultSnapshot.computed_at).desc(), col(ResultSnapshot.id).desc()).limit(limit)
    ).all()
    out: list[dict[str, Any]] = []
    for snap in reversed(rows):
        primary = (snap.results or {}).get("metrics") or []
        first = next((m for m in primary if m.get("role") == "primary"), None)
        test = (first or {}).get("test") or {}
        out.append({
            "computed_at": aware_utc(snap.computed_at),
            "outcome": snap.primary_outcome,
            "verdict": snap.verdict,
            "metric": (first or {}).get("metric"),
            "lift": test.get("lift"),
            "lift_ci_low": test.get("lift_ci_low"),
            "lift_ci_high": test.get("lift_ci_high"),
            "p_value_adjusted": (first or {}).get("p_value_adjusted"),
        })
    return out


def list_alerts(*, session: Session, experiment_id: int | None = None, limit: int = 200) -> list[Alert]:
    """Alerts, newest first; all or one experiment's."""
    query = select(Alert).order_by(col(Alert.created_at).desc(), col(Alert.id).desc()).limit(limit)
    if experiment_id is not None:
        query = query.where(Alert.experiment_id == experiment_id)
    return list(session.exec(query).all())
