"""``abcore dashboard``: the Streamlit command it runs, and a real server answering its health check."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from abcore.cli import servers
from abcore.cli.main import build_parser, main
from abcore.dashboard import APP_PATH


def test_streamlit_command_serves_the_packaged_app_with_every_option() -> None:
    command = servers.streamlit_command("0.0.0.0", 8600, extra=["--server.fileWatcherType", "none"])
    assert command[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    options = dict(zip(command[5::2], command[6::2], strict=True))
    assert options == {
        "--server.address": "0.0.0.0", "--server.port": "8600",
        "--server.headless": "true", "--server.runOnSave": "false", "--browser.gatherUsageStats": "false",
        "--client.showSidebarNavigation": "false", "--client.toolbarMode": "minimal",
        "--client.showErrorDetails": "none", "--theme.primaryColor": "#4f46e5", "--theme.base": "light",
        "--server.fileWatcherType": "none",
    }
    assert APP_PATH.is_file()


def test_dashboard_defaults_and_the_command_it_runs(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["dashboard"])
    assert (args.host, args.port) == ("127.0.0.1", 8501)
    calls: list[tuple[list[str], dict[str, str]]] = []
    monkeypatch.setattr(servers.subprocess, "call", lambda command, env: calls.append((command, env)) or 0)
    assert main(["--database-url", "sqlite:///nowhere.db", "dashboard", "--port", "8600", "--no-watch"]) == 0
    (command, env), = calls
    assert command == servers.streamlit_command("127.0.0.1", 8600)
    assert env["ABCORE_DATABASE_URL"] == "sqlite:///nowhere.db"
    assert "http://127.0.0.1:8600" in capsys.readouterr().err


def test_the_dashboard_runs_the_watcher_and_stops_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`abcore dashboard` (what `make run` starts) runs watcher passes alongside, each recorded in the store,
    and ends it with the server; --no-watch starts none."""
    from sqlmodel import Session

    from abcore.store.db import make_engine
    from abcore.watch.heartbeat import read_heartbeat

    url = f"sqlite:///{tmp_path / 'store.db'}"
    seen: list[object] = []

    def serve(command: list[str], env: dict[str, str]) -> int:  # the server "runs" until the first pass is stored
        engine = make_engine(url)
        deadline = time.monotonic() + 60
        while not seen and time.monotonic() < deadline:
            try:
                with Session(engine) as s:
                    beat = read_heartbeat(s)
            except Exception:  # noqa: BLE001 - the watcher is still creating the tables
                beat = None
            if beat is not None:
                seen.append(beat)
            time.sleep(0.1)
        engine.dispose()
        return 0

    monkeypatch.setattr(servers.subprocess, "call", serve)
    started: list[servers.BackgroundWatcher] = []
    real_start = servers.start_watcher
    monkeypatch.setattr(servers, "start_watcher", lambda *a, **k: started.append(real_start(*a, **k)) or started[-1])
    began = time.monotonic()
    assert main(["--database-url", url, "dashboard", "--watch-every", "120"]) == 0
    assert time.monotonic() - began < 30  # the exit does not wait for another pass
    (beat,) = seen
    assert beat.every == 120 and beat.errors == 0  # type: ignore[attr-defined]
    assert started and not started[0].thread.is_alive()
    assert "watcher: a pass every 120 s" in capsys.readouterr().err
    started.clear()
    monkeypatch.setattr(servers.subprocess, "call", lambda command, env: 0)
    assert main(["--database-url", url, "dashboard", "--no-watch"]) == 0
    assert not started


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_and_check_health(command: list[str], cwd: Path, env: dict[str, str]) -> int:
    """Start ``command`` (an ``abcore dashboard`` on a free port given in it), return the health check's status."""
    port = command[command.index("--port") + 1]
    log_path = cwd / "dashboard.log"
    log = log_path.open("w")
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while status != 200:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "no health answer within 60 s"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as response:
                    status = response.status
            except OSError:
                time.sleep(0.3)
    finally:
        os.killpg(process.pid, 15)  # the abcore process and the streamlit server it started
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()
    return status


def test_abcore_dashboard_serves_a_healthy_server(tmp_path: Path) -> None:
    env = {**os.environ, "ABCORE_DATABASE_URL": f"sqlite:///{tmp_path / 'store.db'}"}
    env.pop("ABCORE_USERS", None)
    command = [sys.executable, "-m", "abcore", "dashboard", "--port", str(_free_port())]
    assert _serve_and_check_health(command, tmp_path, env) == 200


def test_an_installed_wheel_serves_the_dashboard_without_a_checkout(tmp_path: Path) -> None:
    """The wheel carries the dashboard (app, pages) and the migrations; run outside any checkout, its default
    store is ``data/abcore.db`` under the working directory. (pip builds the wheel in an isolated environment,
    fetching setuptools from the package index as ``make`` does.)"""
    root = Path(__file__).resolve().parents[2]
    wheels, site, work = tmp_path / "wheels", tmp_path / "site", tmp_path / "work"
    work.mkdir()
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", str(wheels), str(root)], check=True, timeout=600,
                   capture_output=True)
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), *map(str, wheels.glob("abcore-*.whl"))],
                   check=True, timeout=600, capture_output=True)
    installed = site / "abcore" / "dashboard"
    assert (installed / "app.py").is_file() and (installed / "pages" / "results.py").is_file()
    env = {k: v for k, v in os.environ.items() if k not in ("ABCORE_DATABASE_URL", "ABCORE_USERS")}
    env["PYTHONPATH"] = str(site)  # before the checkout's editable install
    init = subprocess.run([sys.executable, "-m", "abcore", "init"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=120)
    assert init.returncode == 0, init.stderr
    assert (work / "data" / "abcore.db").is_file() and str(work / "data" / "abcore.db") in init.stdout + init.stderr
    command = [sys.executable, "-m", "abcore", "dashboard", "--port", str(_free_port())]
    assert _serve_and_check_health(command, work, env) == 200
