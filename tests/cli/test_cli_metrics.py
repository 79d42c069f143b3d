"""`abcore metrics list|define|update` and metric definitions in config export/import (both backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session

from abcore.cli.main import main
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.metrics import MetricNotFound, get_metric
from abcore.store.db import make_engine


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_metrics_define_list_update(db_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, db_url, "metrics", "define", '{"name": "latency_ms", "kind": "mean", "direction": "decrease"}')
    assert code == 0 and "latency_ms" in out
    spec = tmp_path / "ratio.json"
    spec.write_text(json.dumps({"name": "min_per_session", "kind": "ratio", "numerator": "watch_min",
                                "denominator": "sessions"}))
    assert run(capsys, db_url, "metrics", "define", f"@{spec}")[0] == 0
    code, out, _ = run(capsys, db_url, "metrics", "list")
    assert "latency_ms: mean (Mean per user), lower is better" in out and "watch_min / sessions" in out
    assert run(capsys, db_url, "metrics", "update", "latency_ms", '{"cap": "percentile", "cap_upper": 0.99}')[0] == 0
    code, out, _ = run(capsys, db_url, "metrics", "list", "--json")
    listed = {m["name"]: m for m in json.loads(out)}
    assert listed["latency_ms"]["cap_upper"] == 0.99 and listed["latency_ms"]["direction"] == "decrease"


def test_metrics_errors_are_one_line(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, db_url, "metrics", "define", '{"name": "x", "kind": "nope", "direction": "up"}')
    assert code == 1 and "kind" in err and "direction" in err and err.count("\n") == 1
    code, _, err = run(capsys, db_url, "metrics", "update", "missing", '{"kind": "mean"}')
    assert code == 1 and "missing" in err
    code, _, err = run(capsys, db_url, "metrics", "define", "{not json")
    assert code == 1 and "JSON" in err


def test_config_export_import_carries_metric_definitions(db_url: str, capsys: pytest.CaptureFixture[str],
                                                         tmp_path: Path) -> None:
    run(capsys, db_url, "metrics", "define", '{"name": "latency_ms", "kind": "mean", "direction": "decrease"}')
    engine = make_engine(db_url)
    with Session(engine, expire_on_commit=False) as s:
        create_experiment(session=s, data=ExperimentCreate(
            name="exp", primary_metric="click", guardrail_metrics=["latency_ms"],
            variants=[VariantCreate(name="a", allocation_pct=50, is_control=True),
                      VariantCreate(name="b", allocation_pct=50)]))
    out_file = tmp_path / "config.json"
    assert run(capsys, db_url, "config", "export", str(out_file), "exp")[0] == 0
    config = json.loads(out_file.read_text())
    assert [m["name"] for m in config["metric_definitions"]] == ["latency_ms"]  # click is not defined
    # import into a fresh store: the definition comes along
    target = tmp_path / "other.db"
    other = f"sqlite:///{target}"
    assert main(["--database-url", other, "init"]) == 0
    config["experiment_id"] = "exp_copy"
    out_file.write_text(json.dumps(config))
    assert run(capsys, other, "config", "import", str(out_file))[0] == 0
    other_engine = make_engine(other)
    with Session(other_engine) as s:
        assert get_metric(session=s, name="latency_ms").direction == "decrease"
        with pytest.raises(MetricNotFound):
            get_metric(session=s, name="click")
    # an invalid definition blocks the whole import
    config["experiment_id"] = "exp_bad"
    config["metric_definitions"] = [{"name": "bad", "kind": "nope"}]
    out_file.write_text(json.dumps(config))
    code, _, err = run(capsys, other, "config", "import", str(out_file))
    assert code == 1 and "bad" in err
    engine.dispose()
    other_engine.dispose()
