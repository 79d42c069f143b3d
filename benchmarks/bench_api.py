"""Benchmark of the HTTP API's data plane (``pytest -m bench -s benchmarks/bench_api.py``).

``abcore api`` is started on a free loopback port over a seeded store (one running experiment, a service key
with the default limits): SQLite, and PostgreSQL in a schema of its own when ``ABCORE_TEST_POSTGRES_URL`` is set;
with 1 worker and with ``ABCORE_BENCH_WORKERS`` (default 2) workers. ``wrk`` (2 threads) loads, at 8 and at 64
connections, in ``ABCORE_BENCH_ROUNDS`` (default 3) alternating runs of ``ABCORE_BENCH_WRK_DURATION`` (default 3 s)
per route, so that a change in the machine's load hits both alike:

* ``GET /docs``: the server's cheapest route (uvicorn + FastAPI routing, a small HTML page, no abcore work);
* ``POST /api/v1/assign``: a Lua script sends a body with a different user id on every request, half of them
  users assigned before the run (returning), half never seen (new: a row and an exposure written behind).

With one worker on a machine of two or more cores, the server is pinned to the first core and wrk to the others
(``taskset``): on a small machine the load generator would otherwise take the server's core in turns and its
wait would count as the server's latency (``/docs`` alone showed p99 of 54-134 ms from run to run unpinned,
11-12 ms pinned). ``ABCORE_BENCH_PIN=0`` turns pinning off; N workers are never pinned. Each server gets a
warm-up run of both routes before the measured runs.

Printed: mean requests/s, the median p50 and p99 of the runs, and the ratio assign / cheapest route. The targets of the data plane
(assign >= 0.7 x the cheapest route at 8 and 64 connections, p99 <= 25 ms at 64 connections, one worker) are
printed next to the figures, not asserted: they depend on the machine and on what else it runs.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlmodel import Session

from abcore import experiments as ex
from abcore.access.api_keys import create_api_key
from abcore.store.db import make_engine

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
WRK = shutil.which("wrk") or "/usr/bin/wrk"
RETURNING = 5000
DURATION = os.environ.get("ABCORE_BENCH_WRK_DURATION", "3s")
ROUNDS = int(os.environ.get("ABCORE_BENCH_ROUNDS", "3"))
WORKERS = int(os.environ.get("ABCORE_BENCH_WORKERS", "2"))
CONNECTIONS = (8, 64)
THREADS = 2
TASKSET = shutil.which("taskset")
PIN = os.environ.get("ABCORE_BENCH_PIN", "1") != "0" and (os.cpu_count() or 1) >= 2 and TASKSET is not None

# Every request a user id of its own: even counters are returning users (user-0 .. user-RETURNING-1, cycled),
# odd ones new users (a per-thread prefix and a counter: never seen before, never repeated).
LUA = """
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
local threads = 0
setup = function(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local n = 0
local prefix = ""
init = function(args)
  prefix = "new-" .. (args[1] or "run") .. "-" .. tostring(tid) .. "-"
end
request = function()
  n = n + 1
  local user
  if n %% 2 == 0 then
    user = "user-" .. tostring((n / 2) %% %(returning)d)
  else
    user = prefix .. tostring(n)
  end
  return wrk.format("POST", "/api/v1/assign", headers, '{"user_id": "' .. user .. '", "experiment": "bench"}')
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def pinned(command: list[str], cores: str | None) -> list[str]:
    """``command`` run on ``cores`` (a taskset CPU list) when given."""
    return [TASKSET, "-c", cores, *command] if cores and TASKSET else command  # type: ignore[list-item]


def cores_of(pin: bool) -> tuple[str | None, str | None]:
    """(server cores, wrk cores): the first core and the others when pinning, else (None, None)."""
    count = os.cpu_count() or 1
    return ("0", f"1-{count - 1}") if pin else (None, None)


def wrk(
    url: str, connections: int, script: Path | None = None, cores: str | None = None, duration: str = DURATION
) -> dict[str, float]:
    """Run wrk against ``url`` (on ``cores``); returns p50 / p99 (ms), requests/s, the request count and non-2xx answers."""
    command = pinned([WRK, f"-t{THREADS}", f"-c{connections}", f"-d{duration}", "--latency", "--timeout", "5s"], cores)
    if script is not None:
        command += ["-s", str(script)]
    tail = ["--", f"r{time.monotonic_ns()}"] if script is not None else []  # new users of this run only
    out = subprocess.run([*command, url, *tail], capture_output=True, text=True, check=True, timeout=300).stdout
    figures = {
        "p50": _seconds(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
        "p99": _seconds(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)) * 1000,  # type: ignore[union-attr]
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
    }
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    figures["non_2xx"] = float(bad.group(1)) if bad else 0.0
    if errors:
        print("  wrk:", errors.group(0))
    return figures


def seed(url: str) -> str:
    """The running experiment ``bench`` (50/50) in the migrated store at ``url``; returns a service key."""
    engine = make_engine(url)
    with Session(engine) as session:
        data = ex.ExperimentCreate(
            name="bench", salt="bench-salt",
            variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="treatment", allocation_pct=50)],
        )
        ex.start_experiment(session=session, ref=ex.create_experiment(session=session, data=data).id)
        key = create_api_key(session=session, name="bench", role="service")[1]  # the default limits
    engine.dispose()
    return key


@contextmanager
def serve(url: str, workers: int, log: Path, cores: str | None = None) -> Iterator[str]:
    """``abcore api --workers N`` on a free port (on ``cores``), as an operator starts it; yields its base URL."""
    port = _free_port()
    with log.open("ab") as out:
        server = subprocess.Popen(
            pinned([sys.executable, "-m", "abcore", "--database-url", url, "api", "--port", str(port), "--workers",
                    str(workers), "--no-access-log", "--log-level", "warning"], cores),
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out, stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base + "/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "the API server did not start"
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _row(what: str, f: dict[str, float]) -> None:
    print(f"  {what:<34} {f['rps']:>9,.0f} req/s   p50 {f['p50']:7.2f} ms   p99 {f['p99']:7.2f} ms")


def run(base: str, key: str, script: Path, cores: str | None) -> dict[int, tuple[dict[str, float], dict[str, float]]]:
    """For each connection count: (cheapest route, assign) figures; returning users assigned first, then a warm-up."""
    users = [f"user-{i}" for i in range(RETURNING)]
    auth = {"Authorization": f"Bearer {key}"}
    for start in range(0, RETURNING, 1000):
        stored = httpx.post(base + "/api/v1/assign/batch", json={"user_ids": users[start:start + 1000],
                                                                "experiment": "bench"}, headers=auth, timeout=60)
        assert stored.status_code == 200, stored.text
    wrk(base + "/docs", CONNECTIONS[-1], cores=cores, duration="1s")  # warm-up: not counted
    wrk(base + "/api/v1/assign", CONNECTIONS[-1], script, cores=cores, duration="1s")
    found = {}
    for connections in CONNECTIONS:
        # Alternate short runs of the two routes, so that a change of the machine's load hits both alike.
        slices: dict[str, list[dict[str, float]]] = {"floor": [], "assign": []}
        for _ in range(ROUNDS):
            slices["floor"].append(wrk(base + "/docs", connections, cores=cores))
            slices["assign"].append(wrk(base + "/api/v1/assign", connections, script, cores=cores))
        assert all(a["non_2xx"] == 0 and a["requests"] > 0 for a in slices["assign"]), "assign answered errors"
        found[connections] = (_combine(slices["floor"]), _combine(slices["assign"]))
    return found


def _combine(runs: list[dict[str, float]]) -> dict[str, float]:
    """Mean requests/s of the runs; the median of their p50 and of their p99."""
    return {
        "rps": statistics.fmean(r["rps"] for r in runs),
        "p50": statistics.median(r["p50"] for r in runs),
        "p99": statistics.median(r["p99"] for r in runs),
    }


def report(workers: int, pin: bool, found: dict[int, tuple[dict[str, float], dict[str, float]]]) -> None:
    for connections, (floor, assign) in found.items():
        where = "server on core 0, wrk on the others" if pin else "not pinned"
        print(f" {workers} worker(s), {connections} connections ({where}):")
        _row("GET /docs (cheapest route)", floor)
        _row("POST /api/v1/assign", assign)
        ratio = assign["rps"] / floor["rps"]
        target = f"target >= 0.70 {'met' if ratio >= 0.7 else 'NOT met'}"
        if connections == 64 and workers == 1:
            target += f"; p99 target <= 25 ms {'met' if assign['p99'] <= 25 else 'NOT met'}"
        print(f"  ratio assign / cheapest route: {ratio:.2f} ({target})")


@pytest.mark.skipif(not Path(WRK).exists(), reason="needs the wrk load generator (apt install wrk)")
@pytest.mark.parametrize("store", ["sqlite_url", "postgres_url"])
def test_bench_assign_over_http(store: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = request.getfixturevalue(store)  # PostgreSQL: a schema of its own when ABCORE_TEST_POSTGRES_URL is set
    key = seed(url)
    script = tmp_path / "assign.lua"
    script.write_text(LUA % {"returning": RETURNING, "key": key})
    load = os.getloadavg()[0]
    print(f"\nHTTP API on loopback, {make_url(url).get_backend_name()}, wrk -t{THREADS}, {ROUNDS} alternating runs of {DURATION} per route, "
          f"half returning / half new users, {os.cpu_count()} cores, load average {load:.1f} at the start")
    for workers in sorted({1, WORKERS}):
        pin = PIN and workers == 1
        server_cores, wrk_cores = cores_of(pin)
        with serve(url, workers, tmp_path / "api.log", server_cores) as base:
            report(workers, pin, run(base, key, script, wrk_cores))
