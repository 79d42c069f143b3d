"""`abcore edit | clone | archive | approve | reject | request-approval | settings` in process."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session

from abcore import experiments as ex
from abcore.cli.main import main
from abcore.store.db import make_engine
from tests.factories import make_experiment


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err



def _make(url: str, name: str = "exp", status: str = "draft") -> int:
    """A two-arm experiment (control, treatment) in ``status``."""
    return int(make_experiment(url, name, status=status).id)


def _get(url: str, ref: int | str) -> ex.Experiment:  # type: ignore[name-defined]
    engine = make_engine(url)
    with Session(engine, expire_on_commit=False) as session:
        found = ex.get_experiment(session=session, ref=ref)
    engine.dispose()
    return found


def test_edit_a_draft_prints_every_change_and_dry_run_saves_nothing(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    exp_id = _make(db_url)
    code, out, _ = run(capsys, db_url, "edit", "exp", "--traffic", "40", "--description", "new",
                       "--json", '{"allocations": {"control": 30, "treatment": 70}}', "--dry-run")
    assert code == 0 and "traffic_allocation: 1.0 -> 0.4" in out and "dry run" in out
    assert _get(db_url, exp_id).traffic_allocation == 1.0
    code, out, _ = run(capsys, db_url, "edit", "exp", "--traffic", "40", "--secondary", "a, b", "--actor", "ed",
                       "--json", '{"allocations": {"control": 30, "treatment": 70}}')
    assert code == 0 and 'secondary_metrics: [] -> ["a", "b"]' in out
    assert '"control": 30' in out
    saved = _get(db_url, exp_id)
    assert (saved.traffic_allocation, saved.secondary_metrics) == (0.4, ["a", "b"])


def test_edit_a_running_experiment_lists_every_refused_change(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    _make(db_url, status="running")
    code, _, err = run(capsys, db_url, "edit", "exp", "--traffic", "50", "--primary-metric", "clicks")
    assert code == 1
    assert "primary_metric: cannot change while the experiment is running" in err
    assert "traffic_allocation: the share can only go up" in err
    code, _, err = run(capsys, db_url, "edit", "exp", "--json", "[1]")
    assert code == 1 and "JSON object" in err
    code, _, err = run(capsys, db_url, "edit", "exp")
    assert code == 1 and "nothing to change" in err


def test_clone_and_archive(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    source = _make(db_url, status="completed")
    code, out, _ = run(capsys, db_url, "clone", "exp", "exp again", "--keep-salt")
    assert code == 0 and "same salt" in out
    assert _get(db_url, "exp again").salt == _get(db_url, source).salt
    code, _, err = run(capsys, db_url, "archive", "exp again")
    assert code == 1 and "only completed or cancelled" in err
    code, out, _ = run(capsys, db_url, "archive", "exp")
    assert code == 0 and "archived" in out
    code, out, _ = run(capsys, db_url, "list", "--json")
    assert [e["name"] for e in json.loads(out)] == ["exp again"]
    code, out, _ = run(capsys, db_url, "list", "--json", "--archived")
    assert sorted(e["name"] for e in json.loads(out)) == ["exp", "exp again"]
    code, out, _ = run(capsys, db_url, "archive", "exp", "--restore")
    assert code == 0 and "restored" in out


def test_settings_and_approvals_gate_the_start(capsys: pytest.CaptureFixture[str], db_url: str) -> None:
    _make(db_url)
    code, out, _ = run(capsys, db_url, "settings", "require-approval")
    assert code == 0 and out.strip() == "require-approval: off"
    code, out, _ = run(capsys, db_url, "settings", "require-approval", "on", "--actor", "admin")
    assert code == 0 and out.startswith("require-approval: on")
    code, _, err = run(capsys, db_url, "start", "exp")
    assert code == 1 and "requires an approval" in err
    code, out, _ = run(capsys, db_url, "request-approval", "exp", "--actor", "ed")
    assert code == 0 and "requested" in out
    with pytest.raises(SystemExit):  # argparse: --comment is required for reject
        main(["--database-url", db_url, "reject", "exp"])
    capsys.readouterr()
    code, out, _ = run(capsys, db_url, "reject", "exp", "--comment", "needs a guardrail", "--actor", "boss")
    assert code == 0 and "rejected" in out
    code, _, err = run(capsys, db_url, "start", "exp")
    assert code == 1 and "needs a guardrail" in err
    code, out, _ = run(capsys, db_url, "approve", "exp", "--comment", "ok now", "--actor", "boss")
    assert code == 0 and "approved" in out
    code, out, _ = run(capsys, db_url, "start", "exp")
    assert code == 0 and "running" in out
    assert _get(db_url, "exp").approved_by == "boss"
    code, out, _ = run(capsys, db_url, "settings", "require-approval", "off")
    assert code == 0 and out.strip() == "require-approval: off"
