"""What an experiment is made of, as entered: :class:`ExperimentCreate` (with its :class:`VariantCreate` arms),
:class:`ExperimentUpdate` (an edit), and the limits and stopping-rule keys they are checked against
(:mod:`abcore.experiments.validation` does the checking).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic import Field as PydanticField
from sqlmodel import SQLModel

#: Longest name (experiment, variant, metric, salt, actor) abcore stores.
MAX_NAME_LENGTH = 200
#: What an experiment compares: ``ab`` (variants split the users; the default), ``interleaving`` (each user sees
#: one list merged from the rankers that are its variants) and ``holdout`` (a share of users kept out of other experiments).
EXPERIMENT_KINDS: tuple[str, ...] = ("ab", "interleaving", "holdout")
#: How far the variant allocations may sum away from 100 (percentage points).
ALLOCATION_TOLERANCE = 1e-6

# Automated stopping rules (abcore.watch.runner): the contract of ``ExperimentCreate.auto_stop``.
AUTO_STOP_CHOICES: dict[str, tuple[str, ...]] = {
    "guardrails": ("pause", "stop", "alert", "off"),  # a guardrail significantly worse in its bad direction
    "success": ("stop", "alert", "off"),  # the primary metric reached a decision
    "srm": ("pause", "alert", "off"),  # sample ratio mismatch
    "novelty": ("pause", "alert", "off"),  # a metric's lift decays (or grows) with days since exposure
    "differential": ("pause", "alert", "off"),  # a segment cell's guardrail effect differs from the rest
}
AUTO_STOP_LIMITS: tuple[str, ...] = ("max_days", "max_users", "min_days", "min_users")
#: What a key left out of a non-empty ``auto_stop`` means.
AUTO_STOP_DEFAULTS: dict[str, Any] = {
    "guardrails": "pause",
    "success": "alert",
    "srm": "alert",
    "novelty": "off",
    "differential": "off",
    "max_days": None,
    "max_users": None,
    "min_days": 0,
    "min_users": 0,
}


def refuse_bool(value: Any) -> Any:
    """``value`` unchanged unless it is true or false, which pydantic would otherwise read as 1 or 0."""
    if isinstance(value, bool):
        raise ValueError("a number is expected, not true or false")
    return value


#: A number field (a float; true / false are refused, not read as 1 / 0).
Number = Annotated[float, BeforeValidator(refuse_bool)]
#: A whole-number field (true / false are refused, not read as 1 / 0).
WholeNumber = Annotated[int, BeforeValidator(refuse_bool)]


class VariantCreate(SQLModel):
    """One arm as entered in the creation form."""

    name: str
    allocation_pct: Number
    model_id: WholeNumber | None = None
    config: dict[str, Any] = PydanticField(default_factory=dict)
    is_control: bool = False


class ExperimentCreate(SQLModel):
    """Everything needed to create a draft experiment."""

    name: str
    kind: str = "ab"  # one of EXPERIMENT_KINDS; fixed at creation
    # kind "interleaving" only: team_draft (default), balanced or probabilistic (abcore.assign.interleaving)
    interleaving_method: str | None = None
    description: str = ""
    hypothesis: str = ""
    variants: list[VariantCreate] = PydanticField(default_factory=list)
    traffic_allocation: Number = 1.0
    targeting: list[dict[str, Any]] = PydanticField(default_factory=list)
    primary_metric: str = "conversion"
    secondary_metrics: list[str] = PydanticField(default_factory=list)
    guardrail_metrics: list[str] = PydanticField(default_factory=list)
    success_criteria: dict[str, Any] = PydanticField(default_factory=dict)
    min_duration_days: WholeNumber = 0
    min_samples_per_variant: WholeNumber = 0
    salt: str | None = None
    created_by: str = ""
    # Stopping rules for abcore.watch.runner ({} = not watched); see validate_auto_stop for the keys.
    auto_stop: dict[str, Any] = PydanticField(default_factory=dict)
    # The layer (name) the experiment belongs to and the percent of it the experiment claims (abcore.experiments.layers).
    layer: str | None = None
    layer_share: Number | None = None
    # A holdout only: the layers (names) it covers; None: every experiment.
    holdout_layers: list[str] | None = None


class ExperimentUpdate(SQLModel):
    """Changes to an experiment; a field left at None is not changed.

    ``allocations``, ``variant_models`` and ``variant_configs`` map variant names to the new
    percent, model id (None: no model) or JSON config; variants not named keep theirs.
    """

    description: str | None = None
    hypothesis: str | None = None
    primary_metric: str | None = None
    secondary_metrics: list[str] | None = None
    guardrail_metrics: list[str] | None = None
    targeting: list[dict[str, Any]] | None = None
    traffic_allocation: Number | None = None
    allocations: dict[str, Number] | None = None
    variant_models: dict[str, WholeNumber | None] | None = None
    variant_configs: dict[str, dict[str, Any]] | None = None
    success_criteria: dict[str, Any] | None = None
    min_duration_days: WholeNumber | None = None
    min_samples_per_variant: WholeNumber | None = None
    auto_stop: dict[str, Any] | None = None


UPDATE_FIELDS: tuple[str, ...] = tuple(ExperimentUpdate.model_fields)
