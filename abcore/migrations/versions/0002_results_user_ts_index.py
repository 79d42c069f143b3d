"""Covering index for the analysis queries: (experiment, type, user, metric, ts, value).

The per-user aggregations of :mod:`abcore.queries` filter events by time window
(``ts``) and look exposures up by user; with this index both are answered from the
index alone (no table lookups), on SQLite and PostgreSQL.

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

INDEX = "ix_results_exp_type_user_metric_ts_value"


def upgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        batch_op.create_index(
            INDEX, ["experiment_id", "event_type", "user_id", "metric_name", "ts", "value"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        batch_op.drop_index(INDEX)
