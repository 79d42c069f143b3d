"""abcore.dashboard.views.experiment_list.ship_advice: the ship dialog reads the one verdict (no Streamlit)."""

from __future__ import annotations

from types import SimpleNamespace

from abcore.analysis.results import HealthCheck, VariantInfo
from abcore.analysis.verdict import verdict
from abcore.dashboard.views import forms
from abcore.dashboard.views.experiment_list import ship_advice

VARIANTS = (VariantInfo(1, "control", True, 50.0, 1000, 1000), VariantInfo(2, "b", False, 50.0, 1000, 1000))
TOO_FEW = HealthCheck("samples", False, "warning", "Too few users: control 1,000, b 1,000 (minimum 5,000 per variant).")


def _advice(status: str) -> object:
    v = verdict(status=status, shipped_variant=None, rollout_pct=None, success_metric="conversion", threshold=0.0,
                results=[], health=[TOO_FEW], alpha=0.05)
    return ship_advice(SimpleNamespace(variants=VARIANTS, verdict=v, metrics=()))


def test_a_completed_experiment_is_never_told_to_keep_running_in_the_ship_dialog() -> None:
    advice = _advice("completed")
    label = forms.verdict_label(advice.decision)[0]
    assert advice.decision == "no_winner" and label == "No winner: do not ship"
    assert "Keep running" not in advice.reason and "Do not ship" in advice.reason
    assert advice.variant_id == 1  # the dialog proposes the control


def test_a_running_experiment_that_is_not_ready_keeps_running() -> None:
    advice = _advice("running")
    assert advice.decision == "keep_running" and advice.reason.startswith("Keep running: Too few users")
