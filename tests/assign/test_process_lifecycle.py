"""Interpreter exit flushes buffered rows and events; a hard crash loses only what was buffered since the last
flush (assignment rows are written behind the answer too); importing abcore.assign builds no
client and touches no database."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy.engine import Engine

from .conftest import count_assignments, count_events, new_experiment

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env, timeout=120)


def test_exit_flushes_and_crash_keeps_rows(sqlite_url: str, sqlite_engine: Engine) -> None:
    exp_id = new_experiment(sqlite_engine)
    clean = _run(
        f"""
        from abcore.assign import assign, configure
        configure({sqlite_url!r}, flush_interval=3600, max_buffer=10**9)
        assert assign("clean-exit", "ranker_v2") is not None
        """
    )
    assert clean.returncode == 0, clean.stderr
    assert count_events(sqlite_engine, exp_id, "exposure", "clean-exit") == 1  # written by the atexit flush
    crash = _run(
        f"""
        import os
        from abcore.assign import assign, configure
        from abcore.assign import flush
        configure({sqlite_url!r}, flush_interval=3600, max_buffer=10**9)
        assert assign("flushed", "ranker_v2") is not None
        assert flush() == 2  # its user_assignment and exposure events
        assert assign("hard-crash", "ranker_v2") is not None
        os._exit(0)  # like SIGKILL: no atexit
        """
    )
    assert crash.returncode == 0, crash.stderr
    assert count_assignments(sqlite_engine, exp_id, "flushed") == 1
    assert count_events(sqlite_engine, exp_id, "exposure", "flushed") == 1
    # what was buffered since the last flush (at most flush_interval seconds' worth) is lost: row and events
    assert count_assignments(sqlite_engine, exp_id, "hard-crash") == 0
    assert count_events(sqlite_engine, exp_id, "exposure", "hard-crash") == 0


def test_import_builds_nothing(tmp_path: Path) -> None:
    target = tmp_path / "never-created.db"
    result = _run(
        f"""
        import os
        os.environ["ABCORE_DATABASE_URL"] = "sqlite:///{target}"
        import abcore.assign.defaults as a
        assert a._default is None
        from abcore.assign import bucket
        bucket("u", "s")
        assert a._default is None
        """
    )
    assert result.returncode == 0, result.stderr
    assert not target.exists()
