"""Hostile event logs: one bad line never aborts an import, and importing is idempotent.

Both backends. Each hostile line is reported with its line number and a reason; the good lines land;
neither the library nor the CLI shows a traceback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.experiments.lifecycle import create_experiment, start_experiment
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.event_import import import_events
from abcore.store.db import init_db, make_engine
from abcore.store.tables import ExperimentEvent, UserAssignment

ROOT = Path(__file__).resolve().parents[2]


def _setup(session: Session) -> None:
    create_experiment(
        session=session,
        data=ExperimentCreate(
            name="exp", primary_metric="watch",
            variants=[VariantCreate(name="a", allocation_pct=50), VariantCreate(name="b", allocation_pct=50)],
        ),
    )
    start_experiment(session=session, ref="exp")


def _line(**fields: object) -> dict[str, object]:
    return {"user": "u", "experiment": "exp", "variant": "a", "event": "exposure", "ts": "2026-03-01T10:00:00Z", **fields}


BIG_400 = "9" * 400
BIG_5000 = "9" * 5000
DEEP = "[" * 100_000 + "]" * 100_000

# (raw JSON text of the line, a word the reason must contain)
HOSTILE: list[tuple[str, str]] = [
    (json.dumps(_line(user="x")).replace('"x"', BIG_400), "user_id"),
    (json.dumps(_line(value="x", event="conversion")).replace('"x"', BIG_400), "value"),
    (json.dumps(_line(ts="x")).replace('"x"', BIG_400), "timestamp"),
    (json.dumps(_line(user="x")).replace('"x"', BIG_5000), "number"),
    (json.dumps(_line(value="x", event="conversion")).replace('"x"', BIG_5000), "number"),
    (json.dumps(_line(ts="x")).replace('"x"', BIG_5000), "number"),
    (json.dumps(_line(extra="x")).replace('"x"', DEEP), "nested"),
    (json.dumps(_line(user="x")).replace('"x"', DEEP), "nested"),
    (json.dumps(_line(ts="0001-01-01T00:00:00+14:00")), "timestamp"),
    (json.dumps(_line(ts="9999-12-31T23:00:00-05:00")), "timestamp"),
    (json.dumps(_line(ts=-(10**30))), "timestamp"),
]


def _hostile_file(tmp_path: Path) -> Path:
    lines = [json.dumps(_line(user="good-1"))]
    lines += [text for text, _ in HOSTILE]
    lines.append(json.dumps(_line(user="good-2", variant="b")))
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _events(session: Session) -> int:
    session.expire_all()
    return session.execute(select(func.count()).select_from(ExperimentEvent)).scalar_one()


def test_hostile_lines_are_reported_and_the_rest_lands(engine: Engine, session: Session, tmp_path: Path) -> None:
    _setup(session)
    summary = import_events(engine=engine, path=_hostile_file(tmp_path), batch_size=4)
    reasons = {b.line: b.reason for b in summary.bad_lines}
    assert sorted(reasons) == list(range(2, 2 + len(HOSTILE))), reasons
    for offset, (_, word) in enumerate(HOSTILE):
        assert word in reasons[offset + 2], (offset + 2, reasons[offset + 2])
        assert len(reasons[offset + 2]) < 300  # the reason never echoes the whole hostile value
    assert (summary.records, summary.imported, summary.bad) == (len(HOSTILE) + 2, 2, len(HOSTILE))
    assert _events(session) == 2


def test_cli_reports_hostile_lines_without_traceback(db_url: str, session: Session, tmp_path: Path) -> None:
    _setup(session)
    path = _hostile_file(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "abcore", "--database-url", db_url, "import-events", str(path), "--quiet", "--show-bad", "50"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    bad = [line for line in done.stderr.splitlines() if line.startswith(f"{path}:")]
    assert [int(line.split(":")[1]) for line in bad] == list(range(2, 2 + len(HOSTILE)))
    assert all(len(line) < 400 for line in bad)
    assert "2 imported" in done.stdout
    assert _events(session) == 2


def _snapshot(session: Session) -> tuple[set, set]:
    session.expire_all()
    events = {tuple(r) for r in session.execute(select(ExperimentEvent.event_key, ExperimentEvent.user_id, ExperimentEvent.variant_id))}
    assignments = {tuple(r) for r in session.execute(select(UserAssignment.user_id, UserAssignment.variant_id))}
    return events, assignments


def test_variantless_line_before_the_first_assigned_line_is_idempotent(engine: Engine, session: Session, tmp_path: Path) -> None:
    _setup(session)
    path = tmp_path / "log.jsonl"
    lines = [
        {"user": "u1", "experiment": "exp", "event": "exposure", "ts": "2026-03-01T09:00:00Z"},  # variant-less, first
        _line(user="u1", event="conversion", metric="watch", ts="2026-03-01T10:00:00Z"),
        {"user": "nobody", "experiment": "exp", "event": "exposure", "ts": "2026-03-01T09:00:00Z"},  # never assigned
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    first = import_events(engine=engine, path=path, batch_size=1)
    once = _snapshot(session)
    # The variant-less line takes the variant the file assigns u1 later; only the user never assigned stays bad.
    assert (first.imported, first.bad) == (2, 1)
    assert [b.line for b in first.bad_lines] == [3] and "no assignment" in first.bad_lines[0].reason
    second = import_events(engine=engine, path=path)
    assert (second.imported, second.duplicates, second.bad) == (0, 2, 1)
    assert _snapshot(session) == once
    assert len(once[0]) == 2


def _kill_file(tmp_path: Path, users: int = 400) -> Path:
    """Per user a variant-less exposure first, then the line that assigns the variant, then a conversion."""
    lines = []
    for i in range(users):
        lines.append({"user": f"u{i}", "experiment": "exp", "event": "exposure", "ts": 1772359200 + i})
        lines.append({"user": f"u{i}", "experiment": "exp", "variant": "ab"[i % 2], "event": "exposure", "ts": 1772359300 + i})
        lines.append({"user": f"u{i}", "experiment": "exp", "event": "conversion", "value": i, "ts": 1772359400 + i})
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    return path


def test_kill_then_reimport_equals_one_import(db_url: str, session: Session, tmp_path: Path) -> None:
    _setup(session)
    path = _kill_file(tmp_path)
    # Reference: the same file imported once, uninterrupted, into a fresh SQLite store.
    reference_url = f"sqlite:///{tmp_path / 'reference.db'}"
    reference_engine = init_db(make_engine(reference_url))
    with Session(reference_engine) as ref_session:
        _setup(ref_session)
        import_events(engine=reference_engine, path=path, batch_size=7)
        ref_events, ref_assignments = _snapshot(ref_session)
    reference_engine.dispose()
    ref_keys = {(k, u) for k, u, _ in ref_events}
    assert len(ref_keys) == 1200

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "abcore", "--database-url", db_url, "import-events", str(path), "--quiet", "--batch-size", "7"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and _events(session) < 60:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    landed = _events(session)
    assert 0 < landed < 1200, f"the kill came too late or too early ({landed} events)"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    events, assignments = _snapshot(session)
    # Variant ids differ between stores only by their numbering: compare by key/user and by variant name order.
    assert {(k, u) for k, u, _ in events} == ref_keys
    assert len(assignments) == len(ref_assignments) == 400
    by_user = dict(assignments)
    ref_by_user = dict(ref_assignments)
    low, ref_low = min(by_user.values()), min(ref_by_user.values())
    assert {u: v - low for u, v in by_user.items()} == {u: v - ref_low for u, v in ref_by_user.items()}
    assert all(by_user[u] == v for _, u, v in events)


@pytest.mark.parametrize("text", ["9" * 400, "9" * 5000])
def test_csv_huge_numbers_are_bad_lines(engine: Engine, session: Session, tmp_path: Path, text: str) -> None:
    _setup(session)
    path = tmp_path / "log.csv"
    path.write_text(
        "user,experiment,variant,event,value,ts\n"
        f"{text},exp,a,exposure,,2026-03-01T10:00:00Z\n"
        f"u2,exp,a,conversion,{text},2026-03-01T10:00:00Z\n"
        f"u3,exp,a,exposure,,{text}\n"
        "u4,exp,a,exposure,,2026-03-01T10:00:00Z\n",
        encoding="utf-8",
    )
    summary = import_events(engine=engine, path=path)
    assert [b.line for b in summary.bad_lines] == [2, 3, 4]
    assert summary.imported == 1
