"""The population of an exposure-table source: users exposed to more than one variant are left out."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from abcore.engines import duckdb_engine, load_source_config, query_source
from abcore.sql import MetricSpec, build_stats_query


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
    config = load_source_config({
        "events": {"path": str(tmp_path / "events.parquet"), "format": "parquet",
                   "columns": {"user_id": "uid", "timestamp": "at", "metric_name": "name", "value": "amount"}},
        "exposures": {"path": str(tmp_path / "exposures.parquet"), "format": "parquet",
                      "columns": {"user_id": "uid", "timestamp": "at", "variant": "arm"}},
    })
    engine = duckdb_engine()
    sql = build_stats_query([MetricSpec(name="buy", kind="binomial")], experiment="x", dialect="duckdb",
                            source=query_source(engine, config))
    rows = {r["variant"]: (r["n"], r["sum_y"]) for r in engine.run(sql)}
    # By hand from the rows above: A = {u1} with a conversion, B = {u4, u5} with one (u4's).
    assert rows == {"A": (1, 1.0), "B": (2, 1.0)}
