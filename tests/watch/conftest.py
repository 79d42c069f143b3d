"""Helpers for the watcher tests: experiments with simulated data of known effect, a local webhook receiver."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, update
from sqlmodel import Session, col

from abcore.experiments.records import get_variants
from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, utcnow
from tests.factories import make_experiment

ROOT = Path(__file__).resolve().parents[2]
#: The allow-list of the tests' receivers: they listen on 127.0.0.1, an address the watcher refuses by default.
LOCAL = "127.0.0.1"


def simulated_experiment(
    session: Session,
    name: str,
    *,
    error_rates: tuple[float, float] = (0.10, 0.10),
    conversion_rates: tuple[float, float] = (0.10, 0.10),
    users_per_arm: int = 3000,
    auto_stop: dict[str, Any] | None = None,
    days_ago: float = 3.0,
    seed: int = 1,
) -> tuple[Experiment, dict[str, np.ndarray]]:
    """A running two-arm experiment with exactly ``users_per_arm`` exposed users per arm.

    ``errors`` is a guardrail (must not increase) and ``conversion`` the primary metric, each a
    0/1 value per user drawn with the given rates (control, treatment). Returns the experiment and
    the raw per-user values by arm (``{"control_errors": array, ...}``) for independent checks.
    """
    rng = np.random.default_rng(seed)
    exp = make_experiment(
        session, name, actor="test", primary_metric="conversion", guardrail_metrics=["errors"],
        min_samples_per_variant=users_per_arm,
        auto_stop=auto_stop if auto_stop is not None else {"guardrails": "pause", "success": "alert", "srm": "alert"},
    )
    started = utcnow() - timedelta(days=days_ago)
    session.execute(update(Experiment).where(col(Experiment.id) == exp.id).values(started_at=started))
    variants = get_variants(session=session, experiment_id=exp.id)
    raw: dict[str, np.ndarray] = {}
    assignments: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for arm, variant in enumerate(variants):
        errors = (rng.random(users_per_arm) < error_rates[arm]).astype(float)
        conversions = (rng.random(users_per_arm) < conversion_rates[arm]).astype(float)
        raw[f"{variant.name}_errors"] = errors
        raw[f"{variant.name}_conversion"] = conversions
        for i in range(users_per_arm):
            user = f"{name}-{variant.name}-{i}"
            ts = started + timedelta(seconds=float(rng.uniform(60, days_ago * 86400 - 3600)))
            assignments.append({"user_id": user, "experiment_id": exp.id, "variant_id": variant.id,
                                "attributes": {}, "assigned_at": ts})
            base = {"experiment_id": exp.id, "variant_id": variant.id, "user_id": user, "request_id": None,
                    "properties": {}, "event_key": None}
            events.append({**base, "event_type": "exposure", "metric_name": None, "value": None, "ts": ts})
            for metric, values in (("errors", errors), ("conversion", conversions)):
                if values[i]:
                    events.append({**base, "event_type": "conversion", "metric_name": metric, "value": 1.0,
                                   "ts": ts + timedelta(seconds=30)})
    session.execute(insert(UserAssignment), assignments)
    session.execute(insert(ExperimentEvent), events)
    session.commit()
    session.refresh(exp)
    return exp, raw


class Receiver:
    """A webhook receiver on 127.0.0.1: records every POST body; answers with ``statuses`` in turn
    (then 200)."""

    def __init__(self, statuses: Sequence[int] = (), port: int = 0) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.requests.append({"status": status, "path": self.path, "body": json.loads(body),
                                              "content_type": self.headers.get("Content-Type")})
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def delivered(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if 200 <= r["status"] < 300]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def watch_cli(db_url: str, *args: str, webhook_urls: str = "", start: bool = False,
              timeout: float = 120) -> subprocess.CompletedProcess[str] | subprocess.Popen[str]:
    """Run ``python -m abcore watch ...`` as a subprocess (``start=True``: return the running Popen)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ABCORE_WEBHOOK_URLS": webhook_urls,
           "ABCORE_WEBHOOK_BACKOFF": "0.05", "ABCORE_DASHBOARD_URL": "http://dash.example:8501",
           "ABCORE_WEBHOOK_ALLOW": LOCAL}
    cmd = [sys.executable, "-m", "abcore", "--database-url", db_url, "watch", *args]
    if start:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
