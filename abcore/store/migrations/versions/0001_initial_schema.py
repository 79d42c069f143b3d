"""Initial schema: models registry, experiments, variants, assignments, event log, audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-24 10:18:10.151475
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the six tables, referenced tables first."""
    _create_experiments()
    _create_models()
    _create_audit_log()
    _create_variants()
    _create_results()
    _create_user_assignments()


def _create_experiments() -> None:
    """ab_experiments: one row per experiment, name unique, status indexed."""
    op.create_table(
        "ab_experiments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("hypothesis", sa.String(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("salt", sa.String(length=200), nullable=False),
        sa.Column("traffic_allocation", sa.Float(), nullable=False),
        sa.Column("targeting", sa.JSON(), nullable=False),
        sa.Column("primary_metric", sa.String(length=200), nullable=False),
        sa.Column("secondary_metrics", sa.JSON(), nullable=False),
        sa.Column("guardrail_metrics", sa.JSON(), nullable=False),
        sa.Column("success_criteria", sa.JSON(), nullable=False),
        sa.Column("min_duration_days", sa.Integer(), nullable=False),
        sa.Column("min_samples_per_variant", sa.Integer(), nullable=False),
        sa.Column("winner_variant_id", sa.Integer(), nullable=True),
        sa.Column("rollout_pct", sa.Float(), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_experiments_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_ab_experiments_status"), ["status"], unique=False)


def _create_models() -> None:
    """ab_models: the model registry, name unique."""
    op.create_table(
        "ab_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("version", sa.String(length=100), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ab_models", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_models_name"), ["name"], unique=True)


def _create_audit_log() -> None:
    """ab_audit_log: every change, kept (experiment_id set to NULL) when an experiment is deleted."""
    op.create_table(
        "ab_audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=50), nullable=False),
        sa.Column("from_status", sa.String(length=20), nullable=True),
        sa.Column("to_status", sa.String(length=20), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ab_audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_audit_log_experiment_id"), ["experiment_id"], unique=False)


def _create_variants() -> None:
    """ab_experiment_variants: the arms of an experiment, unique names per experiment."""
    op.create_table(
        "ab_experiment_variants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("allocation_pct", sa.Float(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_id"], ["ab_models.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "name", name="uq_variant_experiment_name"),
    )
    with op.batch_alter_table("ab_experiment_variants", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_ab_experiment_variants_experiment_id"), ["experiment_id"], unique=False
        )


def _create_results() -> None:
    """ab_experiment_results: the event log, with its two analysis indexes."""
    op.create_table(
        "ab_experiment_results",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=True),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("metric_name", sa.String(length=200), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("request_id", sa.String(length=255), nullable=True),
        sa.Column("properties", sa.JSON(), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_key", sa.String(length=128), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["variant_id"], ["ab_experiment_variants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_key"),
    )
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        batch_op.create_index("ix_results_exp_ts", ["experiment_id", "ts"], unique=False)
        batch_op.create_index(
            "ix_results_exp_type_metric_user",
            ["experiment_id", "event_type", "metric_name", "user_id", "value"],
            unique=False,
        )


def _create_user_assignments() -> None:
    """ab_user_assignments: one stored variant per (experiment, user)."""
    op.create_table(
        "ab_user_assignments",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("user_id", sa.String(length=255), nullable=False),
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("variant_id", sa.Integer(), nullable=False),
        sa.Column("attributes", sa.JSON(), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["ab_experiments.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["variant_id"], ["ab_experiment_variants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("experiment_id", "user_id", name="uq_assignment_experiment_user"),
    )
    with op.batch_alter_table("ab_user_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_user_assignments_variant_id"), ["variant_id"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("ab_user_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_user_assignments_variant_id"))

    op.drop_table("ab_user_assignments")
    with op.batch_alter_table("ab_experiment_results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_exp_type_metric_user")
        batch_op.drop_index("ix_results_exp_ts")

    op.drop_table("ab_experiment_results")
    with op.batch_alter_table("ab_experiment_variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_experiment_variants_experiment_id"))

    op.drop_table("ab_experiment_variants")
    with op.batch_alter_table("ab_audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_audit_log_experiment_id"))

    op.drop_table("ab_audit_log")
    with op.batch_alter_table("ab_models", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_models_name"))

    op.drop_table("ab_models")
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_experiments_status"))
        batch_op.drop_index(batch_op.f("ix_ab_experiments_name"))

    op.drop_table("ab_experiments")
