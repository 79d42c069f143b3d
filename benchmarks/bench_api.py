"""Benchmark of the HTTP API (``pytest -m bench -s benchmarks/bench_api.py``).

``POST /api/v1/assign`` for returning users (stored assignments), served by ``abcore api`` with the
default worker count on loopback, loaded with ``wrk`` for a bounded time; p50 / p99 latency and
requests/s. Anchors measured in the same run: the in-process ``Assigner.assign`` for the same users
(what the HTTP layer adds) and ``GET /docs`` (the server's floor: uvicorn + FastAPI + routing, a small page,
no abcore work). Figures are printed, not asserted (they depend on the machine and its load).
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
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session

from abcore import experiments as ex
from abcore.access.api_keys import create_api_key
from abcore.assign import Assigner
from abcore.store.db import init_db, make_engine

pytestmark = pytest.mark.bench

ROOT = Path(__file__).resolve().parents[1]
WRK = shutil.which("wrk") or "/usr/bin/wrk"
USERS = 2000
DURATION = os.environ.get("ABCORE_BENCH_WRK_DURATION", "5s")
CONNECTIONS = 16
THREADS = 2

LUA = """
local bodies = {}
for i = 0, %(users)d - 1 do
  bodies[i + 1] = string.format('{"user_id": "user-%%d", "experiment": "bench"}', i)
end
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %(key)s"}
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", "/api/v1/assign", headers, bodies[(n %% %(users)d) + 1])
end
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def _wrk(url: str, script: Path | None = None) -> dict[str, float]:
    """Run wrk; returns p50/p99 (ms), requests/s and non-2xx count."""
    command = [WRK, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{DURATION}", "--latency", "--timeout", "5s"]
    if script is not None:
        command += ["-s", str(script)]
    out = subprocess.run([*command, url], capture_output=True, text=True, check=True, timeout=120).stdout
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


def _row(what: str, p50: float, p99: float, rps: float) -> None:
    print(f"  {what:<58} p50 {p50:8.3f} ms   p99 {p99:8.3f} ms   {rps:>11,.0f} req/s")


@pytest.mark.skipif(not Path(WRK).exists(), reason="needs the wrk load generator (apt install wrk)")
def test_bench_assign_over_http(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'abcore.db'}"
    engine = init_db(make_engine(url))
    with Session(engine) as session:
        data = ex.ExperimentCreate(
            name="bench", salt="bench-salt",
            variants=[ex.VariantCreate(name="control", allocation_pct=50), ex.VariantCreate(name="treatment", allocation_pct=50)],
        )
        ex.start_experiment(session=session, ref=ex.create_experiment(session=session, data=data).id)
        key = create_api_key(session=session, name="bench", role="service", rate_limit=0)[1]
    users = [f"user-{i}" for i in range(USERS)]

    port = _free_port()
    log = (tmp_path / "api.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "abcore", "--database-url", url, "api", "--port", str(port), "--no-access-log",
         "--log-level", "warning"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
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
        auth = {"Authorization": f"Bearer {key}"}
        for start in range(0, USERS, 1000):  # make every user a returning user
            stored = httpx.post(base + "/api/v1/assign/batch", json={"user_ids": users[start:start + 1000],
                                                                    "experiment": "bench"}, headers=auth, timeout=60)
            assert stored.status_code == 200
        script = tmp_path / "assign.lua"
        script.write_text(LUA % {"users": USERS, "key": key})

        print(f"\nHTTP API on loopback: 1 worker (the default), wrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}, "
              f"{USERS:,} returning users, SQLite")
        floor = _wrk(base + "/docs")
        http = _wrk(base + "/api/v1/assign", script)
        assert http["non_2xx"] == 0 and http["requests"] > 0
    finally:
        server.terminate()
        server.wait(timeout=30)

    # Anchor: the same calls in process (what the endpoint calls), one at a time.
    assigner = Assigner(engine)
    for u in users:
        assigner.assign(u, "bench")
    timings = []
    start_all = time.perf_counter()
    for _ in range(5):
        for u in users:
            t0 = time.perf_counter()
            assigner.assign(u, "bench")
            timings.append(time.perf_counter() - t0)
    in_process_rps = len(timings) / (time.perf_counter() - start_all)
    assigner.close()
    engine.dispose()
    quantiles = statistics.quantiles(timings, n=100, method="inclusive")
    in_p50, in_p99 = quantiles[49] * 1000, quantiles[98] * 1000

    _row("GET /docs (server floor: small HTML, no abcore work)", floor["p50"], floor["p99"], floor["rps"])
    _row("POST /api/v1/assign, returning users", http["p50"], http["p99"], http["rps"])
    _row("anchor: Assigner.assign in process, returning users", in_p50, in_p99, in_process_rps)
    print(f"  ratio: HTTP assign throughput = {http['rps'] / floor['rps']:.2f} x the server floor; "
          f"in-process assign is {in_process_rps / http['rps']:,.0f} x the HTTP throughput "
          f"(HTTP p50 {http['p50'] / max(in_p50, 1e-9):,.0f} x in-process p50, with {CONNECTIONS} connections queued)")
