"""Request and response bodies of the HTTP API (pydantic).

The create body *is* :class:`abcore.experiments.schemas.ExperimentCreate` (a subclass that also accepts
a relative variant ``weight``, normalised to percents), so every field added to ``ExperimentCreate`` is accepted
by ``POST /api/v1/experiments`` without touching this module.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from abcore.experiments.schemas import ExperimentCreate, Number, VariantCreate
from abcore.store.values import name_problem, parse_timestamp

# Text the store can hold: no NUL characters (PostgreSQL refuses them), bounded length.
UserId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]+$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
RequestId = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
ExperimentRef = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] | Name


def _valid_name(value: str) -> str:
    """``value`` unless :func:`abcore.store.values.name_problem` refuses it as a name."""
    problem = name_problem("name", value)
    if problem is not None:
        raise ValueError(problem)
    return value


#: A new name (of a metric an event records): the rule of every name, no control or invisible characters.
NewName = Annotated[Name, AfterValidator(_valid_name)]

#: When an event happened: ISO-8601 text (``Z`` allowed; naive = UTC) or epoch seconds, the rule of the event
#: importer (:func:`abcore.store.values.parse_timestamp`; UTC time within years 1-9999, epoch seconds >= 0).
EventTime = Annotated[
    datetime,
    BeforeValidator(parse_timestamp),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number", "minimum": 0}],
                    "description": "when the event happened (default: now): ISO-8601 (naive = UTC) or epoch seconds"}),
]
MAX_BATCH = 1000


class ErrorBody(BaseModel):
    """Every error: ``detail`` says what went wrong in words; 422 adds ``problems``, one per finding."""

    detail: str
    problems: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- experiments


class VariantIn(VariantCreate):
    """A variant: ``allocation_pct`` (percent, all summing to 100) or a relative ``weight`` (normalised to percents)."""

    allocation_pct: Number | None = Field(default=None, allow_inf_nan=False)  # type: ignore[assignment]
    weight: Number | None = Field(default=None, ge=0, allow_inf_nan=False)


class ExperimentIn(ExperimentCreate):
    """``ExperimentCreate`` whose variants may give a relative ``weight`` instead of ``allocation_pct``.

    Either every variant has ``weight`` (normalised to percents summing to exactly 100) or every
    variant has ``allocation_pct``.
    """

    variants: list[VariantIn] = Field(default_factory=list, max_length=100)  # type: ignore[assignment]


class VariantOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    allocation_pct: float
    weight: float = Field(description="allocation_pct / 100 (the relative weight, normalised)")
    config: dict[str, Any]
    is_control: bool
    model_id: int | None = None
    position: int = 0


class ExperimentOut(BaseModel):
    """An experiment with its variants; fields added to the store's experiment ride along."""

    model_config = ConfigDict(extra="allow")

    id: int
    name: str
    kind: str = "ab"  # ab | interleaving | holdout (abcore.experiments.schemas.EXPERIMENT_KINDS)
    status: str
    description: str = ""
    hypothesis: str = ""
    salt: str
    traffic_allocation: float
    targeting: list[dict[str, Any]] = Field(default_factory=list)
    primary_metric: str
    secondary_metrics: list[str] = Field(default_factory=list)
    guardrail_metrics: list[str] = Field(default_factory=list)
    success_criteria: dict[str, Any] = Field(default_factory=dict)
    winner_variant_id: int | None = None
    winner: str | None = None
    rollout_pct: float | None = None
    created_by: str = ""
    created_at: datetime
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    updated_at: datetime
    archived_at: datetime | None = None
    approval_status: str = ""  # "" | requested | approved | rejected (see abcore.experiments.approvals.approval_state)
    approved_by: str | None = None
    approved_at: datetime | None = None
    variants: list[VariantOut]
    allowed_actions: list[str]


class ExperimentPage(BaseModel):
    items: list[ExperimentOut]
    total: int
    limit: int
    offset: int


class StatusChange(BaseModel):
    status: Literal["running", "paused", "completed", "cancelled"]


class ShipIn(BaseModel):
    """Ship a winner: serve ``variant`` (name or id) to ``rollout_pct`` % of users."""

    variant: Annotated[int, Field(strict=True, ge=1, le=2**31 - 1)] | Name
    rollout_pct: Number = Field(default=100.0, gt=0, le=100, allow_inf_nan=False)
    stop: bool = Field(default=False, description="stop a running or paused experiment first")


# --------------------------------------------------------------------------- assignment and events


class AssignIn(BaseModel):
    user_id: UserId
    experiment: ExperimentRef | None = Field(
        default=None, description="id or name; omitted: the most recently started running experiment"
    )
    attributes: dict[str, Any] | None = None
    expose: bool = True
    request_id: RequestId | None = None


class AssignmentOut(BaseModel):
    """The variant served to ``user_id``; ``assigned`` is false (and the rest null) when the caller
    should serve its default (draft, cancelled, paused for a new user, excluded by targeting or the
    traffic share, completed without a winner, store unavailable)."""

    user_id: str
    assigned: bool
    experiment_id: int | None = None
    experiment: str | None = None
    variant_id: int | None = None
    variant: str | None = None
    config: dict[str, Any] | None = None
    is_control: bool | None = None
    is_new: bool | None = None
    model_id: int | None = Field(default=None, description="the registered model the variant serves (null: none)")
    model_name: str | None = None
    model_version: str | None = Field(default=None, description="the model's registered version")
    model_config_: dict[str, Any] | None = Field(
        default=None, alias="model_config", serialization_alias="model_config",
        description="the model's registered config ({} without a model); the variant's `config` is separate, "
                    "its keys win where both apply",
    )


class AssignBatchIn(BaseModel):
    user_ids: list[UserId] = Field(min_length=1, max_length=MAX_BATCH)
    experiment: ExperimentRef | None = None
    attributes: dict[str, Any] | list[dict[str, Any] | None] | None = Field(
        default=None, description="one object for every user, or one (or null) per user"
    )
    expose: bool = True
    request_id: RequestId | None = None

    @model_validator(mode="after")
    def _attributes_per_user(self) -> AssignBatchIn:
        if isinstance(self.attributes, list) and len(self.attributes) != len(self.user_ids):
            raise ValueError(f"got {len(self.attributes)} attribute objects for {len(self.user_ids)} users")
        return self


class AssignBatchOut(BaseModel):
    assignments: list[AssignmentOut]


#: The deprecated spelling of ``experiment`` in event bodies (accepted, not documented as a field).
DEPRECATED_EXPERIMENT_ALIAS = "experiment_id"


class ConversionIn(BaseModel):
    """A conversion: a metric value for a user of an experiment (``value`` defaults to 1).

    The experiment is ``experiment`` (id or name), as in every request body; ``experiment_id`` is accepted
    as a deprecated alias (not both)."""

    experiment: ExperimentRef = Field(
        validation_alias=AliasChoices("experiment", DEPRECATED_EXPERIMENT_ALIAS),
        description="id or name (deprecated alias: experiment_id)",
    )
    user_id: UserId
    metric_name: NewName
    value: Number | None = Field(default=None, allow_inf_nan=False)
    properties: dict[str, Any] | None = None
    request_id: RequestId | None = None
    timestamp: EventTime | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_spelling(cls, data: Any) -> Any:
        if isinstance(data, dict) and "experiment" in data and DEPRECATED_EXPERIMENT_ALIAS in data:
            raise ValueError("give the experiment as 'experiment' (or the deprecated 'experiment_id'), not both")
        return data


class EventIn(ConversionIn):
    event_type: Literal["conversion", "feedback", "error"] = "conversion"


class EventsIn(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class Recorded(BaseModel):
    recorded: bool
    experiment_id: int
    experiment: str = Field(description="the experiment's name")
    user_id: str
    metric_name: str


class Rejected(BaseModel):
    index: int
    status: int
    detail: str


class EventsOut(BaseModel):
    recorded: int
    rejected: list[Rejected]


# --------------------------------------------------------------------------- metrics


class MetricCounts(BaseModel):
    count: int = Field(description="conversion events of the metric")
    users: int = Field(description="exposed users with at least one event of the metric")
    converted: int = Field(description="exposed users whose summed value is >= 1")
    conversion_rate: float | None = Field(description="converted / unique_users (null without users)")
    sum: float
    mean: float | None = Field(description="sum / unique_users (users without events count as 0)")


class VariantMetrics(BaseModel):
    variant_id: int
    variant: str
    is_control: bool
    assigned: int
    exposures: int
    unique_users: int
    conversions: dict[str, MetricCounts]


class ExperimentMetrics(BaseModel):
    experiment_id: int
    experiment: str
    status: str
    start: datetime | None
    variants: list[VariantMetrics]


class Health(BaseModel):
    status: str
    version: str
