"""Store stalls, each in a child process: every call returns within 200 ms with an Assignment, the
rows land after the stall, and a process whose store hangs exits within 3 s of its last call.

Stalls: a SQLite exclusive lock held by another process for 4 s; PostgreSQL behind a local TCP proxy that
stops forwarding; a PostgreSQL session holding ``LOCK TABLE ... ACCESS EXCLUSIVE``.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session

from abcore.assign import Assigner
from abcore.experiments.layers import create_layer
from abcore.store.db import make_engine
from tests.factories import make_experiment

from .conftest import count_assignments, new_experiment

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "stall_worker.py"
BUDGET_MS = 200.0
EXIT_BUDGET_S = 3.0
STALL_S = 4.0
EXIT_FLUSH_BOUND_S = 2.0  # Assigner(exit_timeout=...) default


def _bare_teardown() -> float:
    """Seconds a process importing abcore.assign, SQLAlchemy and psycopg takes from its last atexit hook to its end."""
    code = "import atexit, time, abcore.assign, psycopg\natexit.register(lambda: print(time.time(), flush=True))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    return time.time() - float(out.strip())


class _Child:
    def __init__(self, url: str, seconds: float, layer: str | None = None) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(seconds), *([layer] if layer else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.read() == "ready"

    def read(self) -> str:
        line = self.process.stdout.readline().strip()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"child ended: {self.process.stderr.read()}")  # type: ignore[union-attr]
        return line

    def ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]
        return json.loads(self.read())


def _scenario(engine: Engine, url: str, stall: Callable[[float], Iterator[None]], *, layered: bool = False) -> None:
    """Calls during a 4 s stall; flush after it; then calls during a second stall and an exit while it lasts.

    ``layered``: the experiment holds all of layer ``home`` and the child asks ``assign_layer(user, "home")``.
    """
    if layered:
        with Session(engine) as session:
            create_layer("home", session=session)
        exp_id = int(make_experiment(engine, "ranker_v2", layer="home", layer_share=100.0).id)  # type: ignore[arg-type]
    else:
        exp_id = new_experiment(engine)
    child = _Child(url, seconds=STALL_S - 0.8, layer="home" if layered else None)
    try:
        with stall(STALL_S):
            during = child.ask("go")
        assert during["none"] == 0 and during["n"] > 50, during
        assert during["worst_ms"] < BUDGET_MS, during
        after = child.ask("flush")
        assert after["pending"] == 0
        assert count_assignments(engine, exp_id) == 1 + during["n"]  # warm-up + every user of the stall
        with stall(STALL_S):
            last = child.ask("again")
            assert last["none"] == 0 and last["worst_ms"] < BUDGET_MS, last
            child.process.wait(timeout=EXIT_BUDGET_S + 5)
            exited_after = time.time() - last["last_call"]
        stderr = child.process.stderr.read()  # type: ignore[union-attr]
        assert child.process.returncode == 0, stderr
        flushed_at = float(stderr.split("atexit-done ")[1].split()[0])
        assert flushed_at - last["last_call"] < EXIT_FLUSH_BOUND_S + 0.3, stderr  # abcore's part: the 2 s bound
        # the whole exit within 3 s; on a loaded machine the interpreter's own teardown (measured in this run on
        # a bare process importing the same modules) can exceed its usual ~0.3 s, so the excess is allowed
        allowance = max(0.0, _bare_teardown() - 0.3)
        assert exited_after < EXIT_BUDGET_S + allowance, (exited_after, allowance, stderr)
        assert "could not be written" in stderr  # the exit-time flush says what it gave up on
    finally:
        if child.process.poll() is None:
            child.process.kill()


@contextmanager
def _sqlite_exclusive_lock(path: str, seconds: float) -> Iterator[None]:
    """Another process holds ``BEGIN EXCLUSIVE`` on the SQLite file at ``path`` for ``seconds``."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds})\n"
        "c.execute('ROLLBACK')\n"
    )
    locker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert locker.stdout.readline().strip() == "locked"  # type: ignore[union-attr]
    try:
        yield
    finally:
        locker.wait(timeout=seconds + 10)


def test_sqlite_exclusive_lock_in_another_process(sqlite_url: str, sqlite_engine: Engine) -> None:
    path = make_url(sqlite_url).database
    _scenario(sqlite_engine, sqlite_url, lambda seconds: _sqlite_exclusive_lock(str(path), seconds))


def test_sqlite_exclusive_lock_asked_by_layer(sqlite_url: str, sqlite_engine: Engine) -> None:
    path = make_url(sqlite_url).database
    _scenario(sqlite_engine, sqlite_url, lambda seconds: _sqlite_exclusive_lock(str(path), seconds), layered=True)


def test_a_store_locked_from_the_start_costs_later_calls_only_their_timeout(sqlite_url: str) -> None:
    """A fresh process whose store cannot be read (rollback journal, another process holding it exclusively):
    the first call waits ``first_load_timeout``, every later call at most about ``timeout``, not the first
    call's bound again."""
    path = make_url(sqlite_url).database
    with sqlite3.connect(str(path)) as connection:
        connection.execute("PRAGMA journal_mode=DELETE")  # readers wait for the lock (no WAL snapshot)
    client = Assigner(sqlite_url, first_load_timeout=1.0, timeout=0.1, retry_after=0.2)
    try:
        with _sqlite_exclusive_lock(str(path), 12):
            took = []
            for i in range(5):
                start = time.perf_counter()
                assert client.assign(f"user-{i}", "anything") is None
                took.append(time.perf_counter() - start)
    finally:
        client.close(timeout=1)
    assert 0.9 <= took[0] < 3.0, took  # the first call's bound
    assert max(took[1:]) < 0.6, took  # before the fix each call waited the first call's bound again


class _Proxy:
    """A TCP proxy on 127.0.0.1 in front of PostgreSQL that can stop forwarding (and resume)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.forwarding = threading.Event()
        self.forwarding.set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                self.forwarding.wait()  # stopped: hold the bytes, forward nothing
                target.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, target):
                with suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.forwarding.set()
        self.server.close()


def test_postgres_behind_a_proxy_that_stops_forwarding(postgres_url: str) -> None:
    parsed = make_url(postgres_url)
    proxy = _Proxy(parsed.host or "127.0.0.1", parsed.port or 5432)
    url = parsed.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    engine = make_engine(postgres_url)

    @contextmanager
    def stall(seconds: float) -> Iterator[None]:
        proxy.forwarding.clear()
        timer = threading.Timer(seconds, proxy.forwarding.set)
        timer.start()
        try:
            yield
        finally:
            timer.join()

    try:
        _scenario(engine, url, stall)
    finally:
        proxy.close()
        engine.dispose()


@pytest.mark.parametrize("layered", [False, True], ids=["by-experiment", "by-layer"])
def test_postgres_access_exclusive_table_lock(postgres_url: str, layered: bool) -> None:
    engine = make_engine(postgres_url)

    @contextmanager
    def stall(seconds: float) -> Iterator[None]:
        connection = engine.connect()
        transaction = connection.begin()
        connection.execute(text("LOCK TABLE ab_user_assignments, ab_experiment_results IN ACCESS EXCLUSIVE MODE"))
        timer = threading.Timer(seconds, transaction.rollback)
        timer.start()
        try:
            yield
        finally:
            timer.join()
            connection.close()

    try:
        _scenario(engine, postgres_url, stall, layered=layered)
    finally:
        engine.dispose()

