"""The results page says which engine computed the analysis, chosen by ABCORE_ANALYSIS_ENGINE /
ABCORE_DUCKDB_MIN_EVENTS (README, Dashboard)."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from streamlit.testing.v1 import AppTest

from abcore.assign import Assigner
from tests.dashboard.markdown_view import text
from tests.factories import make_experiment

pytest.importorskip("duckdb", reason="the DuckDB caption needs the duckdb extra")


def _experiment(url: str, users: int = 60) -> int:
    """A running experiment "Engine caption" with ``users`` assigned users, 30 % of them converted."""
    exp = make_experiment(url, "Engine caption", ["control", "new"])
    assigner = Assigner(url, timeout=10.0, cache_ttl=0.0)
    rng = random.Random(5)
    for i in range(users):
        assert assigner.assign(f"u{i}", "Engine caption") is not None
        if rng.random() < 0.3:
            assigner.track(f"u{i}", "Engine caption", "conversion")
    assigner.close()  # flushes the write-behind buffer: every event is stored before the page reads
    return int(exp.id)


@pytest.mark.parametrize(
    ("env", "label"),
    [
        ({}, "SQLite"),  # default: the store
        ({"ABCORE_ANALYSIS_ENGINE": "duckdb"}, "DuckDB"),
        ({"ABCORE_DUCKDB_MIN_EVENTS": "0"}, "DuckDB"),  # auto: the experiment has more than 0 events
        ({"ABCORE_ANALYSIS_ENGINE": "auto", "ABCORE_DUCKDB_MIN_EVENTS": "1000000"}, "SQLite"),
    ],
)
def test_caption_names_the_engine(store: str, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], label: str,
                                  open_results: Callable[..., AppTest]) -> None:
    monkeypatch.delenv("ABCORE_ANALYSIS_ENGINE", raising=False)
    monkeypatch.delenv("ABCORE_DUCKDB_MIN_EVENTS", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    _experiment(store)
    captions = [c.value for c in open_results("Engine caption").caption]
    computed = [c for c in captions if c.startswith("Computed by ")]
    assert len(computed) == 1, captions
    assert computed[0].startswith(f"Computed by {label} in ") and computed[0].endswith(" s")


def test_bad_engine_setting_is_shown_not_ignored(store: str, monkeypatch: pytest.MonkeyPatch,
                                                open_results: Callable[..., AppTest]) -> None:
    monkeypatch.setenv("ABCORE_ANALYSIS_ENGINE", "spark")
    _experiment(store)
    at = open_results("Engine caption")
    shown = " ".join(text(e.value) for e in at.error)
    assert "ABCORE_ANALYSIS_ENGINE" in shown
