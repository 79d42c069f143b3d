"""abcore: a self-hosted experimentation platform (assignment, tracking, statistics, dashboard).

The public names are re-exported here lazily (PEP 562), so ``import abcore.assign`` on a
recommender's request path does not pay for scipy, pandas or statsmodels::

    from abcore.assign import assign        # the function (``abcore.assign`` is its module)
    from abcore import track, analyze, create_experiment
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # recommender code (``assign`` itself: ``from abcore.assign import assign``)
    "assign_layer": "abcore.assign",
    "assign_many": "abcore.assign",
    "assign_user_to_variant": "abcore.assign",
    "track": "abcore.assign",
    "interleave": "abcore.assign",
    "Interleaving": "abcore.assign",
    "flush": "abcore.assign",
    "bucket": "abcore.assign",
    "configure": "abcore.assign",
    "Assignment": "abcore.assign",
    "Assigner": "abcore.assign",
    "Router": "abcore.assign",
    # management
    "ExperimentCreate": "abcore.experiments.schemas",
    "VariantCreate": "abcore.experiments.schemas",
    "ExperimentError": "abcore.experiments.errors",
    "InvalidTransition": "abcore.experiments.errors",
    "create_experiment": "abcore.experiments.lifecycle",
    "start_experiment": "abcore.experiments.lifecycle",
    "pause_experiment": "abcore.experiments.lifecycle",
    "resume_experiment": "abcore.experiments.lifecycle",
    "stop_experiment": "abcore.experiments.lifecycle",
    "cancel_experiment": "abcore.experiments.lifecycle",
    "ship_winner": "abcore.experiments.lifecycle",
    "set_auto_stop": "abcore.experiments.lifecycle",
    "create_layer": "abcore.experiments.layers",
    "create_holdout": "abcore.experiments.layers",
    # watcher
    "run_pass": "abcore.watch.runner",
    # analysis
    "analyze": "abcore.analysis.pipeline",
    "Results": "abcore.analysis.results",
    # store
    "make_engine": "abcore.store.db",
    "init_db": "abcore.store.db",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'abcore' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
