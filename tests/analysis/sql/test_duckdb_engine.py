"""The DuckDB engine's memory limit: argument, ``ABCORE_DUCKDB_MEMORY_LIMIT``, clear errors."""

from __future__ import annotations

import duckdb
import pytest

from abcore.analysis.engines import duckdb_engine


def _limit_of(engine: object) -> str:
    return engine.run("SELECT current_setting('memory_limit') AS m")[0]["m"]  # type: ignore[attr-defined]


def _duckdb_renders(limit: str) -> str:
    # Independent source: a plain DuckDB connection given the same limit.
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{limit}'")
    return con.execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_the_environment_sets_the_limit_and_the_argument_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_DUCKDB_MEMORY_LIMIT", "1500MB")
    assert _limit_of(duckdb_engine()) == _duckdb_renders("1500MB")
    assert _limit_of(duckdb_engine(memory_limit="1GB")) == _duckdb_renders("1GB")
    monkeypatch.setenv("ABCORE_DUCKDB_MEMORY_LIMIT", "  ")
    assert _limit_of(duckdb_engine()) == duckdb.connect().execute("SELECT current_setting('memory_limit')").fetchone()[0]


def test_a_bad_limit_names_where_it_came_from(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABCORE_DUCKDB_MEMORY_LIMIT", "lots")
    with pytest.raises(ValueError, match="ABCORE_DUCKDB_MEMORY_LIMIT 'lots' is not a DuckDB memory limit"):
        duckdb_engine()
    with pytest.raises(ValueError, match="memory_limit '12 parsecs' is not a DuckDB memory limit"):
        duckdb_engine(memory_limit="12 parsecs")
