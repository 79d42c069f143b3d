"""Leaner event-log index set: drop the two indexes the 0002 indexes supersede.

``ab_experiment_results`` keeps three secondary indexes (fewer indexes, cheaper inserts for
``abcore.assign``; no data is touched):

* ``ix_results_exp_type_metric_user_ts_value`` (0002): per-user metric aggregation, time
  window and values, answered from the index alone;
* ``ix_results_exp_type_user_ts`` (0002): first exposure per user, feedback events, and any
  per-experiment scan (it starts with ``experiment_id`` and holds ``ts``);
* the unique ``event_key`` constraint (0001).

Dropped: ``ix_results_exp_type_metric_user`` (0001; a prefix of the 0002 metric index, which
adds ``ts``) and ``ix_results_exp_ts`` (0001; SQLite's planner picked it for the percentile
query and then read 10 million table rows, and every per-experiment scan is served by the
0002 indexes).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 11:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DROPPED: dict[str, list[str]] = {
    "ix_results_exp_type_metric_user": ["experiment_id", "event_type", "metric_name", "user_id", "value"],
    "ix_results_exp_ts": ["experiment_id", "ts"],
}


def upgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        for name in DROPPED:
            batch_op.drop_index(name)


def downgrade() -> None:
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        for name, columns in DROPPED.items():
            batch_op.create_index(name, columns, unique=False)
