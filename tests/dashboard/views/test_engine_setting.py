"""abcore.config's analysis engine setting and forms.engine_caption (hand-written expectations)."""

from __future__ import annotations

import pytest

from abcore.config import DEFAULT_DUCKDB_MIN_EVENTS, analysis_engine_setting, choose_analysis_engine
from abcore.dashboard.views import forms


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ABCORE_ANALYSIS_ENGINE", raising=False)
    monkeypatch.delenv("ABCORE_DUCKDB_MIN_EVENTS", raising=False)


def _never() -> int:
    raise AssertionError("the events are counted only in auto mode")


def test_default_is_the_store_and_counts_nothing() -> None:
    assert analysis_engine_setting() == ("store", DEFAULT_DUCKDB_MIN_EVENTS)
    assert choose_analysis_engine(_never) == "store"


def test_fixed_duckdb(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_ANALYSIS_ENGINE", " DuckDB ")
    assert choose_analysis_engine(_never) == "duckdb"


def test_threshold_alone_means_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("duckdb")
    monkeypatch.setenv("ABCORE_DUCKDB_MIN_EVENTS", "1_000")
    assert analysis_engine_setting() == ("auto", 1000)
    assert choose_analysis_engine(lambda: 1001) == "duckdb"  # more than N events
    assert choose_analysis_engine(lambda: 1000) == "store"  # exactly N: not more


def test_every_problem_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_ANALYSIS_ENGINE", "spark")
    monkeypatch.setenv("ABCORE_DUCKDB_MIN_EVENTS", "many")
    with pytest.raises(ValueError) as err:
        analysis_engine_setting()
    text = str(err.value)
    assert "ABCORE_ANALYSIS_ENGINE must be one of store, duckdb, auto; got 'spark'" in text
    assert "ABCORE_DUCKDB_MIN_EVENTS must be a whole number" in text


def test_threshold_with_a_fixed_engine_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_ANALYSIS_ENGINE", "store")
    monkeypatch.setenv("ABCORE_DUCKDB_MIN_EVENTS", "10")
    with pytest.raises(ValueError, match="applies only with ABCORE_ANALYSIS_ENGINE=auto"):
        analysis_engine_setting()


def test_engine_caption() -> None:
    assert forms.engine_caption("duckdb", 0.42) == "Computed by DuckDB in 0.4 s"
    assert forms.engine_caption("store", 1.25, "sqlite") == "Computed by SQLite in 1.2 s"
    assert forms.engine_caption("store", 12.6, "postgresql") == "Computed by PostgreSQL in 13 s"
    assert forms.engine_caption("spark", 3.0) == "Computed by Spark in 3.0 s"
