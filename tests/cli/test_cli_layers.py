"""``abcore layers`` and ``abcore holdout``: create, list, show; experiments joining a layer through ``config import``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from abcore.cli.main import main


def _run(url: str, *args: str) -> int:
    return main(["--database-url", url, *args])


def test_layers_and_holdouts_from_the_command_line(sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(sqlite_url, "layers", "create", "home", "--description", "slate") == 0
    assert _run(sqlite_url, "layers", "create", "home") == 1
    assert "already exists" in capsys.readouterr().err
    config = {"name": "ranker", "layer": "home", "layer_share": 25,
              "variants": [{"name": "control", "weight": 1}, {"name": "treatment", "weight": 1}]}
    (tmp_path / "exp.json").write_text(json.dumps(config))
    assert _run(sqlite_url, "config", "import", str(tmp_path / "exp.json")) == 0
    assert _run(sqlite_url, "start", "ranker") == 0
    capsys.readouterr()
    assert _run(sqlite_url, "layers", "show", "home", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["free_pct"] == 75.0 and shown["experiments"][0]["ranges"] == [[0, 2500]]
    assert _run(sqlite_url, "layers", "list") == 0
    assert "ranker" in capsys.readouterr().out
    assert _run(sqlite_url, "holdout", "create", "hold", "--percent", "5", "--layer", "home") == 0
    assert "5% of users kept out of home" in capsys.readouterr().out
    assert _run(sqlite_url, "start", "hold") == 0
    capsys.readouterr()
    assert _run(sqlite_url, "holdout", "overlap", "hold") == 0
    assert json.loads(capsys.readouterr().out) == {"assigned_before": 0, "held_before": 0}
    assert _run(sqlite_url, "config", "export", str(tmp_path / "out.json"), "ranker", "hold") == 0
    exported = json.loads((tmp_path / "out.json").read_text())
    exported = exported if isinstance(exported, list) else [exported]
    by_name = {e["experiment_id"]: e for e in exported}
    assert (by_name["ranker"]["layer"], by_name["ranker"]["layer_share"]) == ("home", 25.0)
    assert by_name["hold"]["kind"] == "holdout" and by_name["hold"]["holdout_layers"] == ["home"]


def test_the_assignments_csv_names_the_layer_and_the_users_unit(sqlite_url: str, tmp_path: Path) -> None:
    import csv

    from sqlmodel import Session

    from abcore.assign import Assigner
    from abcore.assign.layers import layer_unit
    from abcore.experiments.layers import create_layer
    from abcore.store.db import make_engine
    from tests.factories import make_experiment

    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        salt = create_layer("home", session=session).salt
    make_experiment(engine, "ranker", layer="home", layer_share=100.0)
    client = Assigner(engine)
    users = [f"u{i}" for i in range(20)]
    for u in users:
        assert client.assign_layer(u, "home") is not None
    client.close()
    assert _run(sqlite_url, "export", "ranker", "--what", "assignments", "-o", str(tmp_path / "a.csv")) == 0
    with open(tmp_path / "a.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["user_id"] for r in rows) == sorted(users)
    for r in rows:  # expected unit: the scalar layer hash of the user
        assert (r["experiment_kind"], r["layer"], int(r["layer_unit"])) == ("ab", "home", layer_unit(r["user_id"], salt))
    engine.dispose()
