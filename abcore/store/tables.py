"""Every table of the abcore store, in one module (SQLModel).

Table names start with ``ab_`` (``ab_experiments``, ``ab_user_assignments``, ...).
Timestamps are timezone-aware UTC datetimes (``utcnow()``): ``timestamptz`` on
PostgreSQL, UTC text on SQLite; SQLModel returns them aware in UTC on both.
JSON columns hold plain dicts/lists and round-trip on both backends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlmodel import Field, SQLModel

# SQLite only auto-increments an ``INTEGER PRIMARY KEY``; Postgres gets a BIGINT identity for the event log.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    """Current time as an aware UTC datetime (the store's convention)."""
    return datetime.now(UTC)


class ExperimentStatus(StrEnum):
    DRAFT = "draft"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class EventType(StrEnum):
    USER_ASSIGNMENT = "user_assignment"
    EXPOSURE = "exposure"
    CONVERSION = "conversion"
    FEEDBACK = "feedback"
    ERROR = "error"
    # One position of an interleaved list (abcore.assign.interleave): value = position (1-based), properties =
    # {"impression": id, "item": item id, "owner": ranker (variant) name or null}.
    IMPRESSION = "impression"


class Model(SQLModel, table=True):
    """A registered recommender model; the create form's Model dropdown lists the active ones."""

    __tablename__ = "ab_models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_model_name_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, index=True)  # one row per version: (name, version) is unique
    version: str = Field(default="1", max_length=100)
    description: str = ""
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    is_active: bool = True  # False once retired: kept for history, no longer offered
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Layer(SQLModel, table=True):
    """A surface (``ab_layers``): its experiments are mutually exclusive, each holding ranges of the layer's hash.

    The salt is fixed at creation (:mod:`abcore.experiments.layers`); ``version`` is bumped by every range
    reservation, so two experiments started at once never reserve the same range.
    """

    __tablename__ = "ab_layers"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    description: str = ""
    salt: str = Field(max_length=200)
    version: int = 0
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class Experiment(SQLModel, table=True):
    """An experiment definition and its lifecycle state."""

    __tablename__ = "ab_experiments"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    description: str = ""
    hypothesis: str = ""
    status: str = Field(default=ExperimentStatus.DRAFT.value, max_length=20, index=True)
    # What is compared (abcore.experiments.schemas.EXPERIMENT_KINDS): "ab" (variants split the users),
    # "interleaving" (rankers merged in one list per user) or "holdout" (a share of users kept out of others).
    kind: str = Field(default="ab", max_length=20, sa_column_kwargs={"server_default": "ab"})
    # How an interleaving experiment merges its rankers (abcore.assign.interleaving.INTERLEAVING_METHODS); None otherwise.
    interleaving_method: str | None = Field(default=None, max_length=20)
    salt: str = Field(max_length=200)
    # Layers (abcore.experiments.layers): the layer the experiment belongs to, the percent of the layer it claims,
    # and the ranges [start, end) of the layer hash (units of 1/LAYER_UNITS) it holds while running or paused.
    layer_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("ab_layers.id", ondelete="RESTRICT"), nullable=True, index=True)
    )
    layer_share: float | None = None
    layer_ranges: list[list[int]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False, server_default="[]")
    )
    # A holdout (kind "holdout"): the ids of the layers it covers; None: every experiment and shipped winner.
    holdout_layers: list[int] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    traffic_allocation: float = 1.0  # share (0-1] of eligible users that enter
    targeting: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    primary_metric: str = Field(default="conversion", max_length=200)
    secondary_metrics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    guardrail_metrics: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    # {"metric": str, "direction": "increase"|"decrease", "threshold": float (min relative effect), "confidence": 0.95}
    success_criteria: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    min_duration_days: int = 0
    min_samples_per_variant: int = 0
    # Automated stopping rules (abcore.watch.runner): {"guardrails", "success", "srm", "max_days", "max_users",
    # "min_days", "min_users"}; {} = not watched. Validated by abcore.experiments.validation.validate_auto_stop.
    auto_stop: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False, server_default="{}"))
    # No database FK (experiments and variants would reference each other); abcore.experiments.lifecycle checks it.
    winner_variant_id: int | None = None
    rollout_pct: float | None = None  # percent of users served the winner after shipping
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    updated_at: datetime = Field(default_factory=utcnow)
    # Set when a completed or cancelled experiment is archived: left out of listings by default.
    archived_at: datetime | None = None
    # Approvals (abcore.experiments.approvals): "" (none asked), requested, approved, rejected.
    approval_status: str = Field(default="", max_length=20, sa_column_kwargs={"server_default": ""})
    approved_by: str | None = Field(default=None, max_length=200)
    approved_at: datetime | None = None
    # SHA-256 of the configuration that was approved; a draft edited since then is no longer approved.
    approval_fingerprint: str | None = Field(default=None, max_length=64)


class Setting(SQLModel, table=True):
    """One per-store setting (``ab_settings``), e.g. ``require_approval``; read through abcore.experiments.lifecycle."""

    __tablename__ = "ab_settings"

    key: str = Field(primary_key=True, max_length=100)
    value: Any = Field(default=None, sa_column=Column(JSON, nullable=True))
    updated_by: str = Field(default="", max_length=200)
    updated_at: datetime = Field(default_factory=utcnow)


class Variant(SQLModel, table=True):
    """One arm of an experiment; an experiment's allocation_pct values sum to exactly 100."""

    __tablename__ = "ab_experiment_variants"
    __table_args__ = (UniqueConstraint("experiment_id", "name", name="uq_variant_experiment_name"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    name: str = Field(max_length=200)
    allocation_pct: float
    model_id: int | None = Field(
        default=None, sa_column=Column(Integer, ForeignKey("ab_models.id", ondelete="SET NULL"), nullable=True)
    )
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    is_control: bool = False
    position: int = 0


class UserAssignment(SQLModel, table=True):
    """The sticky assignment of one user to one variant; at most one per (experiment, user)."""

    __tablename__ = "ab_user_assignments"
    __table_args__ = (UniqueConstraint("experiment_id", "user_id", name="uq_assignment_experiment_user"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    user_id: str = Field(max_length=255)
    experiment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="CASCADE"), nullable=False)
    )
    variant_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiment_variants.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    # Attributes the caller passed at assignment time (country, platform, ...): used for segment breakdowns.
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    assigned_at: datetime = Field(default_factory=utcnow)


class ExperimentEvent(SQLModel, table=True):
    """The event log (``ab_experiment_results``): assignments, exposures, metric values, feedback, errors."""

    __tablename__ = "ab_experiment_results"
    __table_args__ = (
        # Same set as the migrations create (0001-0003); the analysis SQL (abcore.analysis.sql) reads events through these two.
        # Per-user metric aggregation with a time window, answered from the index alone.
        Index(
            "ix_results_exp_type_metric_user_ts_value",
            "experiment_id", "event_type", "metric_name", "user_id", "ts", "value",
        ),
        # First exposure per user (and any per-experiment scan).
        Index("ix_results_exp_type_user_ts", "experiment_id", "event_type", "user_id", "ts"),
    )

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    experiment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="CASCADE"), nullable=False)
    )
    variant_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("ab_experiment_variants.id", ondelete="CASCADE"), nullable=True),
    )
    user_id: str = Field(max_length=255)
    event_type: str = Field(max_length=32)
    metric_name: str | None = Field(default=None, max_length=200)
    value: float | None = None
    request_id: str | None = Field(default=None, max_length=255)
    properties: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    ts: datetime = Field(default_factory=utcnow)
    # Optional idempotency key (an imported event id or a content hash): importing twice never double-counts.
    event_key: str | None = Field(
        default=None, sa_column=Column(String(128), unique=True, nullable=True)
    )


class AuditLog(SQLModel, table=True):
    """One lifecycle change of an experiment: who did what, when, from which status to which."""

    __tablename__ = "ab_audit_log"

    id: int | None = Field(default=None, primary_key=True)
    # SET NULL keeps the history of a deleted draft; ``details`` holds its name.
    experiment_id: int | None = Field(
        default=None,
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="SET NULL"), nullable=True, index=True),
    )
    action: str = Field(max_length=50)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str | None = Field(default=None, max_length=20)
    actor: str = Field(default="", max_length=200)
    ts: datetime = Field(default_factory=utcnow)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class ApiKey(SQLModel, table=True):
    """A key of the HTTP API (``abcore api-key create``): only its SHA-256 is stored, never the key."""

    __tablename__ = "ab_api_keys"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    role: str = Field(max_length=20)  # viewer | editor | service (abcore.access.api_keys.ROLES)
    key_hash: str = Field(max_length=64, unique=True)  # hex SHA-256 of the whole key
    prefix: str = Field(max_length=20)  # the first characters of the key, to recognise it in listings
    rate_limit: float | None = None  # requests per second; None: the server's default, 0: unlimited
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
class ResultSnapshot(SQLModel, table=True):
    """Frozen results of one watcher pass over one experiment (``Results.to_dict()`` as JSON)."""

    __tablename__ = "ab_result_snapshots"
    __table_args__ = (Index("ix_snapshots_experiment_computed", "experiment_id", "computed_at"),)

    id: int | None = Field(default=None, sa_column=Column(BigIntPK, primary_key=True, autoincrement=True))
    experiment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="CASCADE"), nullable=False)
    )
    computed_at: datetime = Field(default_factory=utcnow)
    method: str = Field(default="sequential", max_length=20)
    engine: str = Field(default="store", max_length=20)
    # The primary metric's outcome for the first treatment (better | worse | inconclusive) and the verdict.
    primary_outcome: str = Field(default="inconclusive", max_length=20)
    verdict: str = Field(default="", max_length=20)
    results: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Alert(SQLModel, table=True):
    """One rule that fired for an experiment; at most one per (experiment, rule) ever (the dedupe key).

    ``rule`` is the rule key (``guardrail:<metric>``, ``success:<metric>``, ``srm``, ``max_days``,
    ``max_users``); ``action`` what the watcher did (pause | stop | alert); ``delivery`` the webhook
    state: pending | delivered | failed | no_target.
    """

    __tablename__ = "ab_alerts"
    __table_args__ = (UniqueConstraint("experiment_id", "rule", name="uq_alert_experiment_rule"),)

    id: int | None = Field(default=None, primary_key=True)
    experiment_id: int = Field(
        sa_column=Column(Integer, ForeignKey("ab_experiments.id", ondelete="CASCADE"), nullable=False, index=True)
    )
    rule: str = Field(max_length=250)
    metric: str | None = Field(default=None, max_length=200)
    action: str = Field(default="alert", max_length=20)
    action_taken: bool = False  # False: the action was not needed or not possible (see ``message``)
    message: str = ""
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)
    delivery: str = Field(default="pending", max_length=20, index=True)
    delivered_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    attempts: int = 0
    last_error: str = ""
    next_attempt_at: datetime | None = None
    claimed_until: datetime | None = None  # a sender's lease: two watchers never post the same alert at once
    delivered_at: datetime | None = None


class Webhook(SQLModel, table=True):
    """A webhook URL configured in the dashboard (in addition to ``$ABCORE_WEBHOOK_URLS``)."""

    __tablename__ = "ab_webhooks"

    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000, unique=True)
    name: str = Field(default="", max_length=200)
    is_active: bool = True
    created_by: str = Field(default="", max_length=200)
    created_at: datetime = Field(default_factory=utcnow)
class MetricDefinition(SQLModel, table=True):
    """A metric definition (``ab_metrics``): what a user's value is, which direction is better, window, capping.

    Managed through :mod:`abcore.metrics` (validation lives there); experiments refer to metrics by ``name``.
    """

    __tablename__ = "ab_metrics"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200, unique=True, index=True)
    description: str = ""
    kind: str = Field(default="binomial", max_length=20)  # binomial | count | mean | event_mean | ratio | quantile
    numerator: str | None = Field(default=None, max_length=200)  # ratio only
    denominator: str | None = Field(default=None, max_length=200)  # ratio only
    quantile: float | None = None  # quantile only, in (0, 1)
    direction: str = Field(default="increase", max_length=10)  # increase | decrease: which way is better
    window_hours: float | None = None  # None: until the end of the analysis window
    delay_hours: float = 0.0
    cap: str | None = Field(default=None, max_length=20)  # None | absolute | percentile
    cap_upper: float | None = None
    cap_lower: float | None = None
    min_detectable_effect: float | None = None  # relative, default threshold
    archived: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
