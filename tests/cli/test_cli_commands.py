"""The CLI end to end on temporary databases: every command, in-process via ``abcore.cli.main``."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import select
from sqlmodel import Session
from statsmodels.stats import proportion as sm_proportion

from abcore.cli import main as cli
from abcore.cli.main import main
from abcore.experiments.lifecycle import create_experiment
from abcore.experiments.records import audit_log, get_experiment
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.store.db import make_engine
from abcore.store.tables import AuditLog, ExperimentEvent, UserAssignment

T0 = datetime(2026, 2, 1, tzinfo=UTC)
# Known data: control 1,000 exposed users, 100 convert; treatment 1,000 exposed users, 130 convert.
ARMS = {"control": (1000, 100), "treatment": (1000, 130)}


def run(capsys: pytest.CaptureFixture[str], url: str, *argv: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *argv])
    out, err = capsys.readouterr()
    return code, out, err


def make(url: str, name: str = "exp", *, data: bool = False, start: bool = True) -> int:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            exp = create_experiment(
                session=session,
                data=ExperimentCreate(
                    name=name,
                    primary_metric="conversion",
                    variants=[VariantCreate(name="control", allocation_pct=50), VariantCreate(name="treatment", allocation_pct=50)],
                ),
            )
            if start:
                from abcore.experiments.lifecycle import start_experiment

                start_experiment(session=session, ref=exp.id)
            if data:
                # Events after the start (analysis windows default to started_at onwards).
                t0 = get_experiment(session=session, ref=exp.id).started_at or T0
                variants = {v.name: v.id for v in _variants(session, exp.id)}
                rng = np.random.default_rng(3)
                for arm, (users, converters) in ARMS.items():
                    converted = set(rng.choice(users, size=converters, replace=False).tolist())
                    for i in range(users):
                        user = f"{arm}-{i}"
                        session.add(UserAssignment(user_id=user, experiment_id=exp.id, variant_id=variants[arm], assigned_at=t0))
                        session.add(ExperimentEvent(experiment_id=exp.id, variant_id=variants[arm], user_id=user,
                                                    event_type="exposure", ts=t0 + timedelta(milliseconds=i)))
                        if i in converted:
                            session.add(ExperimentEvent(experiment_id=exp.id, variant_id=variants[arm], user_id=user,
                                                        event_type="conversion", metric_name="conversion", value=1.0,
                                                        ts=t0 + timedelta(milliseconds=i + 1)))
                session.commit()
            return int(exp.id)  # type: ignore[arg-type]
    finally:
        engine.dispose()


def _variants(session: Session, experiment_id: int) -> list:
    from abcore.experiments.records import get_variants

    return get_variants(session=session, experiment_id=experiment_id)


# --------------------------------------------------------------------------- help, errors


def test_python_m_abcore_help_in_a_subprocess() -> None:
    result = subprocess.run([sys.executable, "-m", "abcore", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("init", "demo", "list", "start", "ship", "analyze", "export", "import-events", "config", "hash-password"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"], ["init", "--help"], ["demo", "--help"], ["list", "--help"], ["start", "--help"], ["pause", "--help"],
        ["resume", "--help"], ["stop", "--help"], ["cancel", "--help"], ["ship", "--help"], ["analyze", "--help"],
        ["export", "--help"], ["import-events", "--help"], ["config", "--help"], ["config", "import", "--help"],
        ["config", "export", "--help"], ["hash-password", "--help"],
    ],
)
def test_every_command_has_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: abcore" in capsys.readouterr().out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nonsense"], ["export", "x"], ["analyze", "x", "--alpha", "2"], ["ship", "x", "y", "--rollout", "120"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    capsys.readouterr()


def test_analysis_choices_match_the_library() -> None:
    from abcore.analysis import pipeline as analysis

    assert cli.METHODS == analysis.METHODS
    assert cli.CORRECTIONS == analysis.CORRECTIONS


def test_uninitialised_or_unreachable_database_is_one_line(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, f"sqlite:///{tmp_path / 'missing.db'}", "list")
    assert code == 1 and err.startswith("error: no database at") and "abcore init" in err
    assert not (tmp_path / "missing.db").exists()  # a mistyped path is not created
    make_engine(f"sqlite:///{tmp_path / 'empty.db'}").dispose()
    (tmp_path / "empty.db").touch()
    code, out, err = run(capsys, f"sqlite:///{tmp_path / 'empty.db'}", "list")
    assert code == 1 and err.startswith("error: ") and "not initialised" in err and len(err.strip().splitlines()) == 1
    code, out, err = run(capsys, "not a url", "list")
    assert code == 1 and "not a database URL" in err
    code, out, err = run(capsys, "postgresql+psycopg://nobody@127.0.0.1:1/none", "list")
    assert code == 1 and err.startswith("error: cannot open the database") and "Traceback" not in err


def test_init_and_demo_still_work(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, _ = run(capsys, url, "init")
    assert code == 0 and "newest schema" in out
    code, out, _ = run(capsys, url, "list")
    assert (code, out.strip()) == (0, "No experiments.")
    make(url, "already-here")
    code, out, _ = run(capsys, url, "demo", "--if-empty", "--quiet")
    assert (code, out.strip()) == (0, "The store already holds experiments; demo data not loaded.")


# --------------------------------------------------------------------------- list + lifecycle


def test_list_shows_split_and_participants(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(sqlite_url, "with-data", data=True)
    make(sqlite_url, "a draft, \"quoted\"", start=False)
    code, out, _ = run(capsys, sqlite_url, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "status", "variants", "(split)", "participants"]
    assert "with-data" in lines[2] and "running" in lines[2] and "control 50% / treatment 50%" in lines[2]
    assert lines[2].rstrip().endswith("2,000")
    assert 'a draft, "quoted"' in lines[3] and lines[3].rstrip().endswith(" 0")
    code, out, _ = run(capsys, sqlite_url, "list", "--status", "draft", "--json")
    records = json.loads(out)
    assert [r["name"] for r in records] == ['a draft, "quoted"']
    code, out, _ = run(capsys, sqlite_url, "list", "--status", "paused")
    assert out.strip() == "No paused experiments."


def test_lifecycle_and_ship(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(db_url, "flow", start=False)
    steps = [("start", "running"), ("pause", "paused"), ("resume", "running"), ("stop", "completed")]
    for command, status in steps:
        code, out, err = run(capsys, db_url, command, "flow", "--actor", "alice")
        assert (code, out.strip(), err) == (0, f"flow: {status}", "")
    code, out, err = run(capsys, db_url, "ship", "flow", "treatment", "--rollout", "25", "--actor", "alice")
    assert code == 0 and out.strip() == "flow: shipped treatment to 25 % of users"
    engine = make_engine(db_url)
    with Session(engine) as session:
        exp = get_experiment(session=session, ref="flow")
        assert (exp.status, exp.rollout_pct) == ("completed", 25.0)
        log = audit_log(session=session, experiment_id=exp.id)
        assert [e.action for e in reversed(log)] == ["create", "start", "pause", "resume", "stop", "ship"]
        assert {e.actor for e in log if e.action != "create"} == {"alice"}
    engine.dispose()


def test_ship_with_stop_is_one_change_and_a_refused_one_changes_nothing(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    make(db_url, "flow")
    code, out, err = run(capsys, db_url, "ship", "flow", "treatmnet", "--stop")
    assert code == 1 and "has no variant 'treatmnet'" in err and out == ""
    engine = make_engine(db_url)
    with Session(engine) as session:
        assert get_experiment(session=session, ref="flow").status == "running"
    code, out, err = run(capsys, db_url, "ship", "flow", "treatment", "--stop", "--rollout", "50", "--actor", "alice")
    assert (code, out.strip(), err) == (0, "flow: shipped treatment to 50 % of users", "")
    with Session(engine) as session:
        exp = get_experiment(session=session, ref="flow")
        assert (exp.status, exp.rollout_pct) == ("completed", 50.0)
        assert [e.action for e in reversed(audit_log(session=session, experiment_id=exp.id))] == ["create", "start", "stop", "ship"]
    engine.dispose()


def test_list_writes_control_characters_of_old_names_as_escapes(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.factories import insert_experiment

    engine = make_engine(sqlite_url)
    with Session(engine) as session:  # stored before names refused them
        insert_experiment(session, (("a\x1b[2J", 50.0), ("b\u202e", 50.0)), name="red\x1b[31m\u200bname", salt="s",
                          status="draft")
    engine.dispose()
    code, out, _ = run(capsys, sqlite_url, "list")
    assert code == 0 and "\x1b" not in out and "\u202e" not in out and "\u200b" not in out
    assert "red\\x1b[31m\\u200bname" in out and "a\\x1b[2J 50%" in out and "b\\u202e 50%" in out


def test_an_experiment_argument_of_digits_is_always_an_id(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    from tests.factories import insert_experiment

    engine = make_engine(db_url)
    with Session(engine) as session:
        insert_experiment(session, name="2", salt="s", status="draft")  # a name stored before the rule: id 1
    engine.dispose()
    assert make(db_url, "second", start=False) == 2
    code, out, err = run(capsys, db_url, "start", "2")
    assert (code, out.strip(), err) == (0, "second: running", "")
    code, out, err = run(capsys, db_url, "clone", "second", "20")
    assert code == 1 and "all digits" in err and "a reference made of digits is always an id" in err


def test_actor_defaults_to_user(sqlite_url: str, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.setenv("USER", "bob")
    make(sqlite_url, "x", start=False)
    assert run(capsys, sqlite_url, "start", "x")[0] == 0
    monkeypatch.delenv("USER")
    monkeypatch.delenv("USERNAME", raising=False)
    assert run(capsys, sqlite_url, "cancel", "x")[0] == 0
    engine = make_engine(sqlite_url)
    with Session(engine) as session:
        actors = {e.action: e.actor for e in session.exec(select(AuditLog)).scalars()}  # type: ignore[call-overload]
    engine.dispose()
    assert actors["start"] == "bob" and actors["cancel"] == "cli"


def test_lifecycle_errors_are_one_line(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(sqlite_url, "draft-one", start=False)
    for argv, fragment in (
        (["pause", "draft-one"], "Cannot pause"),
        (["start", "missing"], "No experiment"),
        (["ship", "draft-one", "control"], "draft"),
        (["stop", "draft-one"], "Cannot stop"),
    ):
        code, out, err = run(capsys, sqlite_url, *argv)
        assert code == 1, argv
        assert err.startswith("error: ") and fragment in err and len(err.strip().splitlines()) == 1 and out == ""


# --------------------------------------------------------------------------- analyze + export


def test_analyze_export_and_pandas_agree(sqlite_url: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    make(sqlite_url, "known", data=True)
    code, out, _ = run(capsys, sqlite_url, "analyze", "known", "--json", str(tmp_path / "a.json"))
    assert code == 0 and "Wrote the analysis" in out
    analysis = json.loads((tmp_path / "a.json").read_text(encoding="utf-8"))
    row = next(r for r in analysis["frame"] if r["metric"] == "conversion")
    assert (row["control_users"], row["control_conversions"], row["users"], row["conversions"]) == (1000, 100, 1000, 130)

    for what in ("assignments", "events", "results"):
        code, out, _ = run(capsys, sqlite_url, "export", "known", "--what", what, "-o", str(tmp_path / f"{what}.csv"))
        assert code == 0 and out.startswith("Wrote ")
    assignments = pd.read_csv(tmp_path / "assignments.csv", dtype={"user_id": str})
    events = pd.read_csv(tmp_path / "events.csv", dtype={"user_id": str})
    # Per user first (analysis population: assigned and exposed), then per variant.
    exposed = set(events.loc[events["event_type"] == "exposure", "user_id"])
    converted = set(events.loc[(events["event_type"] == "conversion") & (events["value"] >= 1), "user_id"])
    population = assignments[assignments["user_id"].isin(exposed)]
    per_variant = population.groupby("variant_name")["user_id"].agg(
        users="count", conversions=lambda users: int(users.isin(converted).sum())
    )
    assert per_variant.loc["control"].tolist() == [row["control_users"], row["control_conversions"]]
    assert per_variant.loc["treatment"].tolist() == [row["users"], row["conversions"]]
    # statsmodels on the CSV numbers: unpooled (Wald) z-test and Wald CI of the difference.
    counts = per_variant.loc["treatment"].tolist() + per_variant.loc["control"].tolist()
    z = sm_proportion.test_proportions_2indep(counts[1], counts[0], counts[3], counts[2], method="wald", compare="diff")
    low, high = sm_proportion.confint_proportions_2indep(counts[1], counts[0], counts[3], counts[2], method="wald", compare="diff", alpha=0.05)
    assert row["p_value"] == pytest.approx(z.pvalue, rel=1e-6)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high), rel=1e-6)
    assert row["diff"] == pytest.approx(0.03)
    # The results CSV holds the same numbers as analyze.
    results = pd.read_csv(tmp_path / "results.csv")
    csv_row = results[results["metric"] == "conversion"].iloc[0]
    for column in ("control_users", "users", "control_conversions", "conversions", "p_value", "ci_low", "ci_high", "lift"):
        assert csv_row[column] == pytest.approx(row[column], rel=1e-12), column


def test_analyze_prints_a_readable_report(sqlite_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    make(sqlite_url, "known", data=True)
    code, out, _ = run(capsys, sqlite_url, "analyze", "known", "--alpha", "0.1", "--method", "sequential")
    assert code == 0
    assert "method sequential, alpha 0.1" in out
    assert "Overall conversion rate: 0.1150 (230 of 2,000 exposed users)" in out  # (100 + 130) / 2000
    assert "90 % CI" in out and "Verdict:" in out and "outcome" in out
    code, out, _ = run(capsys, sqlite_url, "analyze", "known", "--json", "-")
    assert json.loads(out)["experiment"] == "known"
    assert run(capsys, sqlite_url, "analyze", "nope")[0] == 1


def test_a_completed_experiment_is_never_told_to_keep_running(
    sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    experiment_id = make(sqlite_url, "short", data=True)
    engine = make_engine(sqlite_url)
    with Session(engine) as session:  # 1,000 users per arm of a planned 5,000: the result is not ready
        exp = get_experiment(session=session, ref=experiment_id)
        exp.min_samples_per_variant = 5000
        session.add(exp)
        session.commit()
    engine.dispose()
    code, out, _ = run(capsys, sqlite_url, "analyze", "short")
    assert code == 0 and "Verdict: keep_running -- Keep running:" in out
    assert run(capsys, sqlite_url, "stop", "short")[0] == 0
    code, out, _ = run(capsys, sqlite_url, "analyze", "short")
    verdict = next(line for line in out.splitlines() if line.startswith("Verdict:"))
    assert code == 0 and "keep_running" not in verdict and "Keep running" not in verdict
    assert verdict.startswith("Verdict: no_winner -- No winner:") and "Do not ship" in verdict


def test_export_to_stdout_and_errors(sqlite_url: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    make(sqlite_url, "known", data=True)
    code, out, _ = run(capsys, sqlite_url, "export", "known", "--what", "assignments", "-o", "-", "--chunk-size", "7")
    assert code == 0
    frame = pd.read_csv(io.StringIO(out))
    assert len(frame) == 2000 and frame["variant_name"].value_counts().to_dict() == {"control": 1000, "treatment": 1000}
    code, _, err = run(capsys, sqlite_url, "export", "nope", "--what", "events", "-o", str(tmp_path / "x.csv"))
    assert code == 1 and "No experiment" in err
    code, _, err = run(capsys, sqlite_url, "export", "known", "--what", "events", "-o", str(tmp_path / "no" / "dir.csv"))
    assert code == 1 and err.startswith("error: cannot write")


def test_progress_is_shown_on_a_terminal(sqlite_url: str, tmp_path, capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    make(sqlite_url, "known", data=True)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(cli.Progress, "__init__", _eager_progress_init(cli.Progress.__init__))
    code, _, err = run(capsys, sqlite_url, "export", "known", "--what", "events", "-o", str(tmp_path / "e.csv"), "--chunk-size", "500")
    assert code == 0 and "\r  exporting events 500" in err and err.endswith("\n")
    lines = [json.dumps({"user": f"p{i}", "experiment": "known", "variant": "control", "event": "exposure", "ts": i}) for i in range(50)]
    (tmp_path / "p.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, _, err = run(capsys, sqlite_url, "import-events", str(tmp_path / "p.jsonl"), "--batch-size", "10")
    assert code == 0 and "\r  importing 10" in err and "100 %" in err
    code, _, err = run(capsys, sqlite_url, "import-events", str(tmp_path / "p.jsonl"), "--quiet")
    assert "\r" not in err and "importing" not in err


def _eager_progress_init(original):  # redraw on every update so the test sees each step
    def init(self, label, *, enabled, interval=0.25, stream=None):
        original(self, label, enabled=enabled, interval=0.0, stream=stream)

    return init


# --------------------------------------------------------------------------- import-events


def test_import_events_reports_and_is_idempotent(db_url: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    make(db_url, "imp")
    good = {"user": "u1", "experiment": "imp", "variant": "treatment", "event": "exposure", "timestamp": "2026-02-01T00:00:00Z"}
    path = tmp_path / "kafka.log"
    path.write_text(
        "\n".join([json.dumps(good), "garbage", json.dumps({**good, "event": "conversion", "metric": "conversion"}),
                   json.dumps({**good, "variant": "control"})]) + "\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, db_url, "import-events", str(path))
    assert code == 0
    assert out.strip() == "4 records: 2 imported, 0 already present, 2 bad (skipped); 1 new assignments"
    assert f"{path}:2: not valid JSON" in err and f"{path}:4: variant conflicts" in err
    code, out, _ = run(capsys, db_url, "import-events", str(path), "--strict")
    assert code == 1 and "0 imported, 2 already present, 2 bad" in out
    code, _, err = run(capsys, db_url, "import-events", str(tmp_path / "missing.log"))
    assert code == 1 and "no such file" in err


# --------------------------------------------------------------------------- config


def test_config_import_export(sqlite_url: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    seed = [
        {"experiment_id": "als_vs_popgen", "salt": "als-popgen-v1",
         "variants": [{"name": "als_model", "weight": 0.6}, {"name": "popgen_model", "weight": 0.4}]},
        {"experiment_id": "three", "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 1}, {"name": "c", "weight": 1}]},
    ]
    (tmp_path / "in.json").write_text(json.dumps(seed), encoding="utf-8")
    code, out, _ = run(capsys, sqlite_url, "config", "import", str(tmp_path / "in.json"))
    assert code == 0 and out.count("Created draft experiment") == 2
    code, out, _ = run(capsys, sqlite_url, "config", "export", "-", "three")
    single = json.loads(out)
    assert single["experiment_id"] == "three" and single["salt"] == "three" and single["status"] == "draft"
    assert [v["weight"] for v in single["variants"]] == [33.34, 33.33, 33.33]
    code, out, _ = run(capsys, sqlite_url, "config", "export", str(tmp_path / "all.json"))
    assert code == 0 and "2 experiment config(s)" in out
    exported = json.loads((tmp_path / "all.json").read_text(encoding="utf-8"))
    assert [c["experiment_id"] for c in exported] == ["als_vs_popgen", "three"]
    assert [v["weight"] for v in exported[0]["variants"]] == [60.0, 40.0]
    # Importing again: the names exist -> refused as a whole, one line.
    code, _, err = run(capsys, sqlite_url, "config", "import", str(tmp_path / "all.json"))
    assert code == 1 and "already exists" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "broken.json").write_text("{nope", encoding="utf-8")
    code, _, err = run(capsys, sqlite_url, "config", "import", str(tmp_path / "broken.json"))
    assert code == 1 and "not valid JSON" in err
    code, _, err = run(capsys, sqlite_url, "config", "export", "-", "missing")
    assert code == 1 and "No experiment" in err


def test_offline_logs_before_the_start_need_analyze_start(sqlite_url: str, tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """The offline workflow: import a config, import an older Kafka log, analyse it with --start."""
    (tmp_path / "seed.json").write_text(json.dumps({"experiment_id": "old", "variants": [{"name": "a"}, {"name": "b"}]}), encoding="utf-8")
    assert run(capsys, sqlite_url, "config", "import", str(tmp_path / "seed.json"))[0] == 0
    assert run(capsys, sqlite_url, "start", "old")[0] == 0
    lines = []
    for i in range(40):  # a: 20 exposed, 5 convert; b: 20 exposed, 10 convert (hand count)
        variant = "ab"[i % 2]
        lines.append({"user": f"u{i}", "experiment": "old", "variant": variant, "event": "exposure", "ts": 1772323200 + i})
        if (variant == "a" and i < 10) or (variant == "b" and i < 20):
            lines.append({"user": f"u{i}", "experiment": "old", "variant": variant, "event": "conversion", "ts": 1772323300 + i})
    (tmp_path / "old.log").write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    code, out, err = run(capsys, sqlite_url, "import-events", str(tmp_path / "old.log"))
    assert code == 0 and "55 imported" in out and "55 records are dated before their experiment started" in err
    code, out, _ = run(capsys, sqlite_url, "analyze", "old", "--json", "-")
    assert json.loads(out)["variants"][0]["users"] == 0  # default window: from the start on
    code, out, _ = run(capsys, sqlite_url, "analyze", "old", "--json", "-", "--start", "2026-01-01T00:00:00Z")
    row = json.loads(out)["frame"][0]
    assert (row["control_users"], row["control_conversions"], row["users"], row["conversions"]) == (20, 5, 20, 10)
    with pytest.raises(SystemExit):
        main(["analyze", "old", "--start", "last tuesday"])
    capsys.readouterr()
