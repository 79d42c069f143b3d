"""The query builder: golden SQL per dialect, validation errors, source-config errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from abcore.analysis.engines import load_source_config
from abcore.analysis.sql import build_daily_query, build_stats_query, get_dialect
from abcore.metrics import MetricSpec
from tests.analysis.sql.parity_data import END, METRICS

GOLDEN = Path(__file__).resolve().parents[2] / "data" / "sql"
DIALECT_NAMES = ("sqlite", "postgresql", "duckdb", "spark")


def _render(dialect: str) -> str:
    stats = build_stats_query(METRICS, experiment=1, dialect=dialect, end=END, segment="country", cuped=True)
    daily = build_daily_query(experiment=1, dialect=dialect, end=END)
    return f"-- stats\n{stats};\n\n-- daily\n{daily};\n"


@pytest.mark.parametrize("dialect", DIALECT_NAMES)
def test_rendered_sql_matches_the_reviewed_golden_file(dialect: str) -> None:
    """tests/data/sql/<dialect>.sql is the reviewed rendering; ABCORE_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / f"{dialect}.sql"
    sql = _render(dialect)
    if os.environ.get("ABCORE_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql)
    assert path.read_text() == sql


def test_dialect_differences_are_spelled_out() -> None:
    # Integer division and epoch conversion differ per engine (see abcore.analysis.sql.dialects).
    assert get_dialect("duckdb").int_div("a", "b") == "(a // b)"
    assert get_dialect("spark").int_div("a", "b") == "(a div b)"
    assert "unix_micros" in get_dialect("spark").epoch_us("ts")
    assert "from_json" in get_dialect("spark").json_text("attributes", "country")
    with pytest.raises(ValueError, match="unknown SQL dialect"):
        get_dialect("clickhouse")


def test_invalid_metric_lists_every_problem() -> None:
    with pytest.raises(ValueError) as err:
        MetricSpec(name="r", kind="ratio", cap="percentile", cap_upper=5, window_hours=0, delay_hours=-1)
    text = str(err.value)
    for part in ("numerator and denominator", "window_hours", "delay_hours", "percentile cap must be in (0, 1)"):
        assert part in text
    with pytest.raises(ValueError, match="kind must be one of"):
        MetricSpec(name="x", kind="median")
    with pytest.raises(ValueError, match="cannot be capped"):
        MetricSpec(name="q", kind="quantile", quantile=0.5, cap="absolute", cap_upper=3)


def test_duck_typed_definitions_are_validated_too() -> None:
    class Def:  # what abcore.metrics.MetricCreate looks like to the builder
        name, kind, direction = "q", "quantile", "decrease"
        numerator = denominator = window_hours = cap = cap_upper = cap_lower = None
        quantile, delay_hours = 1.5, 0

    with pytest.raises(ValueError, match="quantile in"):
        build_stats_query([Def()], experiment=1, dialect="duckdb")


def test_source_config_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        load_source_config(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_source_config("{nope")
    with pytest.raises(ValueError) as err:
        load_source_config({"events": {"format": "orc", "columns": {"user_id": "u", "bogus": "b"}},
                            "exposures": {"path": "x.parquet", "columns": {}}, "extra": 1})
    text = str(err.value)
    for part in ("unknown keys: extra", "events.format", "events.columns.timestamp is required",
                 "unknown key 'bogus'", "exposures.columns.variant is required"):
        assert part in text
    ok = load_source_config({"events": {"table": "warehouse.events", "columns": {
        "user_id": "uid", "timestamp": "ts", "metric_name": "name", "value": "v", "event_type": None}}})
    assert ok.format == "table" and ok.columns["event_type"] is None and ok.exposures is None
