"""A model may be registered in several versions: ``(name, version)`` is unique, not ``name``.

The unique index ``ix_ab_models_name`` of 0001 becomes a plain index, and the unique constraint
``uq_model_name_version`` is added. Existing rows already satisfy it (one row per name). The downgrade
restores the one-row-per-name index and fails if a name has several versions by then.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ab_models", schema=None) as batch_op:
        batch_op.drop_index("ix_ab_models_name")
        batch_op.create_index("ix_ab_models_name", ["name"], unique=False)
        batch_op.create_unique_constraint("uq_model_name_version", ["name", "version"])


def downgrade() -> None:
    with op.batch_alter_table("ab_models", schema=None) as batch_op:
        batch_op.drop_constraint("uq_model_name_version", type_="unique")
        batch_op.drop_index("ix_ab_models_name")
        batch_op.create_index("ix_ab_models_name", ["name"], unique=True)
