"""Editing, archiving and approvals of experiments; per-store settings.

* ``ab_experiments.archived_at``: when a completed or cancelled experiment was archived (NULL: not archived);
* ``ab_experiments.approval_status`` ("" | requested | approved | rejected), ``approved_by``, ``approved_at``
  and ``approval_fingerprint`` (SHA-256 of the approved configuration);
* ``ab_settings``: key -> JSON value (``require_approval``), with who changed it and when.

Only adds; existing data is untouched (existing experiments: not archived, no approval asked).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("approval_status", sa.String(length=20), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("approved_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("approved_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("approval_fingerprint", sa.String(length=64), nullable=True))

    op.create_table(
        "ab_settings",
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("ab_settings")
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_column("approval_fingerprint")
        batch_op.drop_column("approved_at")
        batch_op.drop_column("approved_by")
        batch_op.drop_column("approval_status")
        batch_op.drop_column("archived_at")
