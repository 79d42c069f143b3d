"""Watch: stopping rules on experiments, result snapshots, alerts and dashboard-configured webhooks.

* ``ab_experiments.auto_stop`` (JSON, default ``{}`` = not watched): the experiment's stopping rules;
* ``ab_result_snapshots``: frozen results of every watcher pass (time, method, engine, JSON);
* ``ab_alerts``: one row per (experiment, rule) that fired -- the unique constraint is what makes
  two watchers act once -- with the webhook delivery state;
* ``ab_webhooks``: webhook URLs entered in the dashboard.

Only adds; existing data is untouched.

Revision ID: 0007
Revises: 0005
Create Date: 2026-12-01 22:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("auto_stop", sa.JSON(), nullable=False, server_default="{}"))

    op.create_table(
        "ab_result_snapshots",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=20), nullable=False),
        sa.Column("engine", sa.String(length=20), nullable=False),
        sa.Column("primary_outcome", sa.String(length=20), nullable=False),
        sa.Column("verdict", sa.String(length=20), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ab_result_snapshots", schema=None) as batch_op:
        batch_op.create_index("ix_snapshots_experiment_computed", ["experiment_id", "computed_at"], unique=False)

    op.create_table(
        "ab_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("rule", sa.String(length=250), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=True),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("action_taken", sa.Boolean(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivery", sa.String(length=20), nullable=False),
        sa.Column("delivered_to", sa.JSON(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "rule", name="uq_alert_experiment_rule"),
    )
    with op.batch_alter_table("ab_alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_alerts_experiment_id"), ["experiment_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ab_alerts_delivery"), ["delivery"], unique=False)

    op.create_table(
        "ab_webhooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url"),
    )


def downgrade() -> None:
    op.drop_table("ab_webhooks")
    with op.batch_alter_table("ab_alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_alerts_delivery"))
        batch_op.drop_index(batch_op.f("ix_ab_alerts_experiment_id"))
    op.drop_table("ab_alerts")
    with op.batch_alter_table("ab_result_snapshots", schema=None) as batch_op:
        batch_op.drop_index("ix_snapshots_experiment_computed")
    op.drop_table("ab_result_snapshots")
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_column("auto_stop")
