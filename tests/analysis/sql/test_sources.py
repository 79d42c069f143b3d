"""Event sources that are not our tables: the events' experiment column scopes them, CSV files are read with
their header on every engine, each part's ``timestamp_format`` is honoured, and wrong keys are errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from abcore.analysis.engines import compute_stats, duckdb_engine, load_source_config, spark_engine
from abcore.metrics import MetricSpec

T0 = datetime(2026, 5, 1, tzinfo=UTC)
END = T0 + timedelta(days=2)
METRIC = MetricSpec(name="spend", kind="mean")


def _write(tmp_path: Path, exposure_ts: str = "epoch_ms") -> Path:
    """CSV events of two experiments for the SAME users (``other`` worth 100 each), and CSV exposures whose
    timestamps are in ``exposure_ts`` (``timestamp_format`` at the ``exposures`` level)."""
    events, exposures = [], []
    for i in range(12):
        uid, first = f"u{i}", T0 + timedelta(hours=i)
        for exp in ("checkout", "other"):
            ts: Any = int(first.timestamp() * 1000) if exposure_ts == "epoch_ms" else first.strftime("%Y-%m-%d %H:%M:%S")
            exposures.append({"uid": uid, "ts": ts, "arm": "ab"[i % 2], "exp": exp})
            events.append({"uid": uid, "ts": (first + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S"),
                           "name": "spend", "amount": 100.0 if exp == "other" else float(i), "exp": exp})
    pd.DataFrame(events).to_csv(tmp_path / "events.csv", index=False)
    pd.DataFrame(exposures).to_csv(tmp_path / "exposures.csv", index=False)
    config = {
        "events": {"path": str(tmp_path / "events.csv"), "format": "csv",
                   "columns": {"user_id": "uid", "timestamp": "ts", "event_type": None, "metric_name": "name",
                               "value": "amount", "experiment": "exp"}},
        "exposures": {"path": str(tmp_path / "exposures.csv"), "format": "csv", "timestamp_format": exposure_ts,
                      "columns": {"user_id": "uid", "timestamp": "ts", "variant": "arm", "experiment": "exp"}},
    }
    path = tmp_path / "source.json"
    path.write_text(json.dumps(config))
    return path


#: (arm) -> (users, sum of spend) of ``checkout`` only: 6 users per arm, spend = the user's index.
ORACLE = {"a": (6, float(sum(range(0, 12, 2)))), "b": (6, float(sum(range(1, 12, 2))))}


def _check(rows: list[Any]) -> None:
    assert {r.variant: (r.n, r.sum_y) for r in rows} == ORACLE


@pytest.mark.parametrize("exposure_ts", ["timestamp", "epoch_ms"])
def test_csv_source_with_an_exposure_table_on_duckdb(tmp_path: Path, exposure_ts: str) -> None:
    """Only ``checkout``'s events count (``other``'s events of the same users are left out)."""
    source = load_source_config(_write(tmp_path, exposure_ts))
    _check(compute_stats("checkout", [METRIC], engine=duckdb_engine(), source=source, end=END))


def test_csv_source_with_an_exposure_table_on_spark(spark: Any, tmp_path: Path) -> None:
    """Spark reads the CSV files with their header (column names), like DuckDB."""
    source = load_source_config(_write(tmp_path))
    _check(compute_stats("checkout", [METRIC], engine=spark_engine(spark), source=source, end=END))


def test_unknown_or_misplaced_source_keys_are_errors() -> None:
    columns = {"user_id": "u", "timestamp": "t", "metric_name": "m", "value": "v"}
    with pytest.raises(ValueError) as err:
        load_source_config({
            "events": {"path": "e.parquet", "format": "parquet", "table": "ev", "columns": columns,
                       "timestamp_fmt": "epoch_ms"},
            "exposures": {"table": "ex", "path": "x.parquet", "window": 3, "timestamp_format": "days",
                          "columns": {"user_id": "u", "timestamp": "t", "variant": "v", "timestamp_format": "epoch_s"}},
        })
    text = str(err.value)
    for part in ("events: unknown key 'timestamp_fmt'", "events: 'table' goes with format table",
                 "exposures: unknown key 'window'", "exposures: 'path' goes with format parquet or csv",
                 "exposures.timestamp_format must be", "exposures.columns: unknown key 'timestamp_format'"
                 " (timestamp_format goes in exposures, next to columns)"):
        assert part in text
