"""Covering indexes for the analysis queries, with ``ts`` for time windows.

* ``(experiment_id, event_type, metric_name, user_id, ts, value)``: the per-user metric
  aggregation of :mod:`abcore.analysis.sql` with a time window, answered from the index alone
  (the 0001 index lacks ``ts``, so a window forced a table lookup per event).
* ``(experiment_id, event_type, user_id, ts)``: "was this user exposed in the window" as
  one index seek per user, and the first exposure per user as an ordered scan.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 10:35:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: dict[str, list[str]] = {
    "ix_results_exp_type_metric_user_ts_value": ["experiment_id", "event_type", "metric_name", "user_id", "ts", "value"],
    "ix_results_exp_type_user_ts": ["experiment_id", "event_type", "user_id", "ts"],
}


def upgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        for name, columns in INDEXES.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        for name in INDEXES:
            batch_op.drop_index(name)
