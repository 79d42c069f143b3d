"""The interleaving method of an interleaving experiment: ``ab_experiments.interleaving_method``.

Only adds a nullable column: NULL for A/B and holdout experiments (and read as ``team_draft`` for an interleaving
experiment created before it existed).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("interleaving_method", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_column("interleaving_method")
