"""Metric definitions: table ``ab_metrics``, backfilled for every metric name experiments use.

Each metric name in an experiment's primary, secondary or guardrail metrics (or its success
criterion) gets a definition with today's inferred kind (``mean`` when one of its conversion
events has a value outside {0, 1}, else ``binomial``) and ``direction="increase"``; a name used
as a guardrail gets ``"decrease"`` (the old "must not increase" rule) unless
``success_criteria["guardrail_directions"]`` said ``"increase"``; the success-criterion metric
takes the criterion's direction. So existing analyses keep their meaning.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 22:45:00
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _directions(rows: Sequence[Any]) -> tuple[dict[str, str], dict[str, list[int]]]:
    """``({metric: direction}, {metric: [experiment ids]})`` from experiment rows."""
    direction: dict[str, str] = {}
    used: dict[str, list[int]] = {}
    for exp_id, primary, secondary, guardrails, criteria in rows:
        criteria = criteria or {}
        guard_dirs = criteria.get("guardrail_directions") or {}
        names: list[tuple[str, str]] = [(primary, "increase")]
        names += [(m, "increase") for m in secondary or []]
        names += [(m, "increase" if guard_dirs.get(m) == "increase" else "decrease") for m in guardrails or []]
        if criteria.get("metric"):
            names.append((criteria["metric"], "increase"))
        crit_metric = criteria.get("metric") or primary
        crit_dir = criteria.get("direction") if criteria.get("direction") in ("increase", "decrease") else None
        for name, d in names:
            if not name:
                continue
            used.setdefault(name, []).append(exp_id)
            if name == crit_metric and crit_dir:
                d = crit_dir
            if name not in direction or d == "decrease":
                direction[name] = d
    return direction, used


def upgrade() -> None:
    op.create_table(
        "ab_metrics",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("numerator", sa.String(length=200), nullable=True),
        sa.Column("denominator", sa.String(length=200), nullable=True),
        sa.Column("quantile", sa.Float(), nullable=True),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("window_hours", sa.Float(), nullable=True),
        sa.Column("delay_hours", sa.Float(), nullable=False),
        sa.Column("cap", sa.String(length=20), nullable=True),
        sa.Column("cap_upper", sa.Float(), nullable=True),
        sa.Column("cap_lower", sa.Float(), nullable=True),
        sa.Column("min_detectable_effect", sa.Float(), nullable=True),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ab_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ab_metrics_name"), ["name"], unique=True)

    bind = op.get_bind()
    experiments = sa.table(
        "ab_experiments", sa.column("id", sa.Integer), sa.column("primary_metric", sa.String),
        sa.column("secondary_metrics", sa.JSON), sa.column("guardrail_metrics", sa.JSON),
        sa.column("success_criteria", sa.JSON),
    )
    events = sa.table(
        "ab_experiment_results", sa.column("experiment_id", sa.Integer), sa.column("event_type", sa.String),
        sa.column("metric_name", sa.String), sa.column("value", sa.Float),
    )
    rows = list(bind.execute(sa.select(
        experiments.c.id, experiments.c.primary_metric, experiments.c.secondary_metrics,
        experiments.c.guardrail_metrics, experiments.c.success_criteria,
    )))
    direction, used = _directions(rows)
    now = datetime.now(UTC)
    metrics = sa.table(
        "ab_metrics", *[sa.column(c) for c in (
            "name", "description", "kind", "direction", "delay_hours", "archived", "created_at", "updated_at",
        )]
    )
    for name in sorted(direction):
        kind = "binomial"
        for exp_id in sorted(set(used[name])):  # one index seek per experiment (the 0002 metric index)
            probe = sa.select(sa.literal(1)).where(
                events.c.experiment_id == exp_id, events.c.event_type == "conversion",
                events.c.metric_name == name, events.c.value.is_not(None), events.c.value.not_in([0.0, 1.0]),
            ).limit(1)
            if bind.execute(probe).first() is not None:
                kind = "mean"
                break
        bind.execute(metrics.insert().values(
            name=name, description="Created by migration 0004 from existing experiments.", kind=kind,
            direction=direction[name], delay_hours=0.0, archived=False, created_at=now, updated_at=now,
        ))


def downgrade() -> None:
    with op.batch_alter_table("ab_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ab_metrics_name"))
    op.drop_table("ab_metrics")
