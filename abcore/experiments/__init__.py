"""Experiment management: define, check, run, edit and approve experiments (the store's ``ab_experiments``).

Which module holds what:

* :mod:`~abcore.experiments.schemas` — what an experiment is made of as entered: :class:`ExperimentCreate`,
  :class:`VariantCreate`, :class:`ExperimentUpdate`, limits (``MAX_NAME_LENGTH``) and the stopping-rule keys;
* :mod:`~abcore.experiments.errors` — :class:`ExperimentError` and its kinds (not found, invalid transition,
  approval required);
* :mod:`~abcore.experiments.validation` — every problem with the input as a sentence: :func:`validate_experiment`,
  :func:`validate_auto_stop` / :func:`normalize_auto_stop`, text checks;
* :mod:`~abcore.experiments.records` — reading experiments, variants and the audit log, and writing audit entries;
* :mod:`~abcore.experiments.lifecycle` — the state machine: create, start, pause, resume, stop, cancel, ship,
  delete, and the split, traffic share and stopping rules of a live experiment;
* :mod:`~abcore.experiments.editing` — :func:`update_experiment` (and its preview :func:`planned_changes`),
  :func:`clone_experiment`, :func:`archive_experiment`;
* :mod:`~abcore.experiments.approvals` — the ``require_approval`` setting, requesting, approving and rejecting
  a draft, and the fingerprint of the configuration an approval covers;
* :mod:`~abcore.experiments.layers` — layers (mutually exclusive experiments on one surface: ranges reserved at
  start, released at stop) and holdouts: :func:`create_layer`, :func:`layer_usage`, :func:`create_holdout`;
* :mod:`~abcore.experiments.ml_models` — the model registry (``ab_models``) the variants point to.

Targeting rules are checked and evaluated by :mod:`abcore.assign.targeting` (the request path uses them too).
The names below are re-exported here lazily, so ``from abcore import experiments`` gives the whole API.
"""

from __future__ import annotations

import importlib
from typing import Any

_MODULES: dict[str, tuple[str, ...]] = {
    "errors": ("ApprovalRequired", "ExperimentError", "ExperimentNotFound", "InvalidTransition"),
    "schemas": (
        "ALLOCATION_TOLERANCE",
        "AUTO_STOP_CHOICES",
        "AUTO_STOP_DEFAULTS",
        "AUTO_STOP_LIMITS",
        "MAX_NAME_LENGTH",
        "UPDATE_FIELDS",
        "ExperimentCreate",
        "ExperimentUpdate",
        "VariantCreate",
    ),
    "validation": ("allocation_problems", "exact_percent", "normalize_auto_stop", "validate_auto_stop", "validate_experiment"),
    "layers": (
        "LayerConflict",
        "LayerNotFound",
        "HoldoutOverlap",
        "LayerUsage",
        "create_holdout",
        "create_layer",
        "get_layer",
        "holdout_overlap",
        "layer_usage",
        "list_layers",
    ),
    "records": ("audit_log", "get_experiment", "get_variants", "list_experiments"),
    "lifecycle": (
        "TRANSITIONS",
        "allowed_actions",
        "cancel_experiment",
        "create_experiment",
        "delete_experiment",
        "pause_experiment",
        "resume_experiment",
        "set_auto_stop",
        "set_traffic_allocation",
        "ship_winner",
        "start_experiment",
        "stop_experiment",
        "update_allocations",
    ),
    "editing": (
        "FINISHED",
        "SAFE_WHILE_RUNNING",
        "archive_experiment",
        "clone_experiment",
        "planned_changes",
        "update_experiment",
    ),
    "approvals": (
        "APPROVAL_NONE",
        "APPROVED",
        "CONFIGURATION_ACTIONS",
        "REJECTED",
        "REQUESTED",
        "REQUIRE_APPROVAL",
        "SETTINGS",
        "ApprovalState",
        "approval_authors",
        "approval_problem",
        "approval_state",
        "approve_experiment",
        "configuration_fingerprint",
        "edits_since_decision",
        "get_setting",
        "reject_experiment",
        "request_approval",
        "require_approval",
        "run_configuration",
        "set_require_approval",
        "set_setting",
    ),
}
_EXPORTS: dict[str, str] = {name: f"abcore.experiments.{module}" for module, names in _MODULES.items() for name in names}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'abcore.experiments' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
