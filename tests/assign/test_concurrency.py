"""Several processes assigning the same users at the same moment end with one stored row per user,
and every caller serves that row's variant once its writes are flushed (SQLite and PostgreSQL).

``assign`` answers before its row is written, so a process whose cached split is stale
(simulated here: each child believes a different split) can serve its own variant on the first call;
the writer's read-back corrects it. The test checks that every contradicted first answer was counted
as a correction and that the answers after the flush equal the stored rows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from abcore.store.db import make_engine
from abcore.store.tables import ExperimentEvent, UserAssignment

from .conftest import new_experiment

WORKER = Path(__file__).resolve().parent / "concurrency_worker.py"
PROCESSES = 4
MODES = ["single", "many", "single", "many"]  # assign() one by one and batched assign_many race each other


def test_racing_processes_agree_on_one_stored_assignment(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        exp_id = new_experiment(engine, allocations=(25, 25, 25, 25), salt="race")
        users = [f"racer-{i}" for i in range(120)]
        start_at = time.time() + 3.0  # children import abcore and connect first, then start together
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        children = [
            subprocess.Popen(
                # each child believes a different split (variant i gets everyone): only the stored row can reconcile them
                [sys.executable, str(WORKER), db_url, "ranker_v2", str(i), str(start_at), MODES[i], ",".join(users)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for i in range(PROCESSES)
        ]
        results = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
        with engine.connect() as connection:
            stored = dict(
                connection.execute(
                    select(UserAssignment.user_id, UserAssignment.variant_id).where(UserAssignment.experiment_id == exp_id)
                ).all()
            )
            per_user = connection.execute(
                select(func.count()).select_from(UserAssignment).group_by(UserAssignment.experiment_id, UserAssignment.user_id)
            ).scalars().all()
            assignment_events = connection.execute(
                select(func.count()).where(
                    ExperimentEvent.experiment_id == exp_id, ExperimentEvent.event_type == "user_assignment"
                )
            ).scalar_one()
        assert set(stored) == set(users)
        assert set(per_user) == {1}  # exactly one stored assignment per user and experiment
        for result in results:
            assert result["answers"] == stored  # every caller serves the stored variant after its flush
            contradicted = sum(1 for u, v in result["first"].items() if v != stored[u])
            assert result["corrected"] == contradicted  # each contradicted first answer was found and counted
        assert sum(r["new"] for r in results) == len(users)  # exactly one process created each row ...
        assert assignment_events == len(users)  # ... and logged its user_assignment event
        print("rows created per process:", [r["new"] for r in results])
    finally:
        engine.dispose()
