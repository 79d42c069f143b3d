"""What an experiment compares: ``ab_experiments.kind`` (``ab``, ``interleaving`` or ``holdout``).

Only adds; every existing experiment is an A/B test (``ab``, the server default).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=20), nullable=False, server_default="ab"))


def downgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_column("kind")
