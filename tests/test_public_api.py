"""The public API: the names ``abcore`` exports, and what importing it costs.

A change to ``abcore.__all__`` is a change for every user of the package, so the list is
pinned here; the request path (``abcore.assign``) must stay free of the analysis stack.
"""

from __future__ import annotations

import inspect
import subprocess
import sys

import abcore

PUBLIC_NAMES = [
    "Assigner",
    "Assignment",
    "ExperimentCreate",
    "ExperimentError",
    "Interleaving",
    "InvalidTransition",
    "Results",
    "Router",
    "VariantCreate",
    "__version__",
    "analyze",
    "assign_layer",
    "assign_many",
    "assign_user_to_variant",
    "bucket",
    "cancel_experiment",
    "configure",
    "create_experiment",
    "create_holdout",
    "create_layer",
    "flush",
    "init_db",
    "interleave",
    "make_engine",
    "pause_experiment",
    "resume_experiment",
    "run_pass",
    "set_auto_stop",
    "ship_winner",
    "start_experiment",
    "stop_experiment",
    "track",
]

HEAVY_MODULES = ("pandas", "scipy")


def test_all_is_the_pinned_list() -> None:
    assert sorted(abcore.__all__) == PUBLIC_NAMES


def test_every_public_name_resolves() -> None:
    for name in abcore.__all__:
        assert getattr(abcore, name) is not None, name


def test_assign_is_the_function() -> None:
    from abcore.assign import assign

    assert inspect.isfunction(assign)
    assert assign.__name__ == "assign"


def _loaded_after(statement: str) -> list[str]:
    """The heavy modules present in ``sys.modules`` after ``statement`` runs in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {HEAVY_MODULES!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.split()


def test_import_abcore_loads_neither_pandas_nor_scipy() -> None:
    assert _loaded_after("import abcore") == []


def test_import_abcore_assign_loads_neither_pandas_nor_scipy() -> None:
    assert _loaded_after("import abcore.assign\nfrom abcore.assign import assign, track") == []
