"""`abcore stats EXPERIMENT --engine ... --metrics FILE.json`: the same rows on the store and on DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abcore.cli.main import main
from abcore.store.db import make_engine
from tests.analysis.sql.parity_data import END, oracle
from tests.analysis.sql.test_parity import load


def test_stats_command_on_store_and_duckdb(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sa = make_engine(sqlite_url)
    load(sa)
    sa.dispose()
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps([{"name": "revenue_abs", "kind": "mean", "cap": "absolute", "cap_upper": 20.0,
                                    "cap_lower": 1.0}]))
    expected = oracle()  # pandas on the raw rows (parity_data.oracle), the independent source
    outputs = []
    for engine in ("store", "duckdb"):
        assert main(["--database-url", sqlite_url, "stats", "parity", "--engine", engine, "--metrics", str(metrics),
                     "--end", END.isoformat()]) == 0
        outputs.append(json.loads(capsys.readouterr().out))
    a, b = outputs
    assert [(r["variant"], r["n"]) for r in a] == [(r["variant"], r["n"]) for r in b]
    for r in a:
        exp = expected[("revenue_abs", r["variant"], "(all)")]
        assert r["n"] == exp["n"]
        assert r["sum_y"] == pytest.approx(exp["sum_y"], rel=1e-9)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "kind": "median"}))
    assert main(["--database-url", sqlite_url, "stats", "parity", "--metrics", str(bad)]) != 0
    assert "kind must be one of" in capsys.readouterr().err
