"""API keys of the HTTP API (``ab_api_keys``): name, role, SHA-256 of the key, prefix, rate limit.

Only a hash of each key is stored (keys are 256-bit random tokens, so a fast hash is enough and
lets every request be checked with one indexed lookup). Revoked keys are kept (``revoked_at``).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 21:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ab_api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("prefix", sa.String(length=20), nullable=False),
        sa.Column("rate_limit", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    with op.batch_alter_table("ab_api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_api_keys_name"), ["name"], unique=True)


def downgrade() -> None:
    op.drop_table("ab_api_keys")
