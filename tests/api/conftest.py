"""Fixtures for the HTTP API tests: keys, an in-process client, and a real uvicorn server (subprocess).

``client`` runs the app in process (starlette's TestClient) on each backend of ``db_url``;
``live_server`` starts ``python -m abcore api`` on a free loopback port, as a user would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.access.api_keys import create_api_key
from abcore.api import ApiSettings, create_app

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Keys:
    editor: str
    viewer: str
    service: str

    def auth(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {getattr(self, role)}"}


def make_keys(engine: Engine, rate_limit: float | None = 0) -> Keys:
    """An editor ('ed'), a viewer ('vi') and a service key ('svc'), unlimited unless told otherwise."""
    with Session(engine, expire_on_commit=False) as session:
        return Keys(
            editor=create_api_key(session=session, name="ed", role="editor", rate_limit=rate_limit)[1],
            viewer=create_api_key(session=session, name="vi", role="viewer", rate_limit=rate_limit)[1],
            service=create_api_key(session=session, name="svc", role="service", rate_limit=rate_limit)[1],
        )


@pytest.fixture
def keys(engine: Engine) -> Keys:
    return make_keys(engine)


@pytest.fixture
def client(engine: Engine, keys: Keys) -> Iterator[TestClient]:
    """The app in process on ``engine``; keys verified afresh on every request (cache ttl 0)."""
    app = create_app(engine, settings=ApiSettings(key_cache_ttl=0.0, max_body_bytes=64_000))
    with TestClient(app) as test_client:
        yield test_client


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_server(db_url: str, log: Path, *extra: str, env: dict[str, str] | None = None) -> LiveServer:
    """``python -m abcore api`` on a free loopback port; returns once /api/v1/health answers 200."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "abcore", "--database-url", db_url, "api", "--host", "127.0.0.1", "--port", str(port),
         "--no-access-log", "--log-level", "warning", *extra],
        cwd=ROOT, env=environment, stdout=handle, stderr=subprocess.STDOUT,
    )
    server = LiveServer(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if httpx.get(server.url + "/api/v1/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the API server did not come up within 60 s:\n{log.read_text()}")


@pytest.fixture
def live_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(db_url, tmp_path / "api.log")
    try:
        yield server
    finally:
        server.stop()
