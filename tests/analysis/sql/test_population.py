"""The population of an exposure-table source (users exposed to more than one variant are left out) and its keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from abcore.analysis.engines import SourceConfig, duckdb_engine, load_source_config, query_source
from abcore.analysis.sql import build_stats_query
from abcore.metrics import MetricSpec


def _source(d: Path) -> SourceConfig:
    """The source config of ``d/events.parquet`` (uid, name, amount, at) and ``d/exposures.parquet`` (uid, arm, at)."""
    return load_source_config({
        "events": {"path": str(d / "events.parquet"), "format": "parquet",
                   "columns": {"user_id": "uid", "timestamp": "at", "metric_name": "name", "value": "amount"}},
        "exposures": {"path": str(d / "exposures.parquet"), "format": "parquet",
                      "columns": {"user_id": "uid", "timestamp": "at", "variant": "arm"}},
    })


def test_users_with_two_variants_or_only_null_variants_are_left_out(tmp_path: Path) -> None:
    # u1: two exposures to A (kept); u2: A then B (left out); u3: NULL only (left out);
    # u4: B and a NULL exposure (kept: NULLs are ignored, one variant remains); u5: B (kept).
    ts = pd.Timestamp("2026-01-02")
    exposures = pd.DataFrame({
        "uid": ["u1", "u1", "u2", "u2", "u3", "u4", "u4", "u5"],
        "arm": ["A", "A", "A", "B", None, "B", None, "B"],
        "at": [ts] * 8,
    })
    exposures.to_parquet(tmp_path / "exposures.parquet")
    events = pd.DataFrame({"uid": ["u1", "u2", "u3", "u4"], "name": ["buy"] * 4, "amount": [1.0] * 4,
                           "at": [ts + pd.Timedelta(hours=1)] * 4})
    events.to_parquet(tmp_path / "events.parquet")
    engine = duckdb_engine()
    sql = build_stats_query([MetricSpec(name="buy", kind="binomial")], experiment="x", dialect="duckdb",
                            source=query_source(engine, _source(tmp_path)))
    rows = {r["variant"]: (r["n"], r["sum_y"]) for r in engine.run(sql)}
    # By hand from the rows above: A = {u1} with a conversion, B = {u4, u5} with one (u4's).
    assert rows == {"A": (1, 1.0), "B": (2, 1.0)}


def test_narrow_scan_keeps_users_and_metric_names_apart(tmp_path: Path) -> None:
    # DuckDB's events_in carries an integer user key and a metric code (Dialect.narrow_shared_scan); the
    # numbers must be those of the names and ids. Ids "1" / "01" / "u1" are distinct strings; names
    # "a" / "b" / "c" are read, "z" is not.
    ts = pd.Timestamp("2026-01-02")
    pd.DataFrame({"uid": ["1", "01", "u1"], "arm": ["A", "A", "B"], "at": [ts] * 3}).to_parquet(tmp_path / "exposures.parquet")
    pd.DataFrame({
        "uid": ["1", "1", "01", "01", "u1", "u1", "u1", "1"],
        "name": ["a", "b", "a", "c", "b", "b", "z", "c"],
        "amount": [2.0, 4.0, 3.0, 5.0, 6.0, 1.0, 100.0, 7.0],
        "at": [ts + pd.Timedelta(hours=1)] * 8,
    }).to_parquet(tmp_path / "events.parquet")
    engine = duckdb_engine()
    metrics = [MetricSpec(name="a", kind="mean"), MetricSpec(name="b_per_c", kind="ratio", numerator="b", denominator="c")]
    sql = build_stats_query(metrics, experiment="x", dialect="duckdb", source=query_source(engine, _source(tmp_path)))
    assert "p.source_user_id" in sql and "WHEN 'a' THEN 0 WHEN 'b' THEN 1 WHEN 'c' THEN 2" in sql
    rows = {(r["metric"], r["variant"]): (r["n"], r["sum_y"], r["sum_y2"], r["sum_x"], r["sum_xy"]) for r in engine.run(sql)}
    # By hand: A = {"1", "01"}: a = 2 and 3 (sum 5, squares 13); b = 4 and 0, c = 7 and 5 (sum_xy 28).
    # B = {"u1"}: a = 0; b = 6 + 1 = 7, c = 0 (sum_xy 0); "z" is not read.
    assert rows[("a", "A")] == (2, 5.0, 13.0, 0.0, 0.0)
    assert rows[("a", "B")] == (1, 0.0, 0.0, 0.0, 0.0)
    assert rows[("b_per_c", "A")] == (2, 4.0, 16.0, 12.0, 28.0)
    assert rows[("b_per_c", "B")] == (1, 7.0, 49.0, 0.0, 0.0)
