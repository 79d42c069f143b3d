"""Layers and holdouts: ``ab_layers`` and the layer / holdout columns of ``ab_experiments``.

Only adds; every existing experiment stays outside any layer (``layer_id`` NULL, no ranges) and covers nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ab_layers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False, server_default=""),
        sa.Column("salt", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("created_by", sa.String(length=200), nullable=False, server_default=""),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_ab_layers_name", "ab_layers", ["name"], unique=True)
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("layer_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("layer_share", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("layer_ranges", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(sa.Column("holdout_layers", sa.JSON(), nullable=True))
        batch_op.create_index("ix_ab_experiments_layer_id", ["layer_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_ab_experiments_layer_id", "ab_layers", ["layer_id"], ["id"], ondelete="RESTRICT"
        )


def downgrade() -> None:
    with op.batch_alter_table("ab_experiments", schema=None) as batch_op:
        batch_op.drop_constraint("fk_ab_experiments_layer_id", type_="foreignkey")
        batch_op.drop_index("ix_ab_experiments_layer_id")
        batch_op.drop_column("holdout_layers")
        batch_op.drop_column("layer_ranges")
        batch_op.drop_column("layer_share")
        batch_op.drop_column("layer_id")
    op.drop_index("ix_ab_layers_name", table_name="ab_layers")
    op.drop_table("ab_layers")
