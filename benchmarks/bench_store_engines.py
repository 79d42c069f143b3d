"""Benchmark: ``analyze`` on the 10M-event SQLite bench store, by engine (``pytest benchmarks/bench_store_engines.py -m bench -s``).

The store is the one of ``bench_analysis.py`` (10,000,000 events, 1,000,000 users, 2 variants, metrics
``click`` and ``revenue``; generated once and cached at ``ABCORE_BENCH_DB``). In the same run, each in a
fresh subprocess (wall time and peak RSS = ``VmHWM``):

* **anchor**: a hand-written DuckDB query over the same attached SQLite file computing the same
  sufficient statistics (users, click conversions, revenue sum and sum of squares per variant, events at
  or after each user's first exposure) and the exact percentiles of the revenue values (``quantile_disc``), as
  ``analyze`` does (the target: "the same sufficient statistics and exact percentiles"); the statistics-only
  query is timed and printed too;
* ``analyze(engine="duckdb")`` (full: daily series included) and ``analyze(engine="duckdb", daily=False)``;
* ``analyze()`` on SQLite (``engine="store"``) and, when the baseline can be checked out, the same call on
  the code of ``ABCORE_BENCH_BASELINE`` (default ``457757d``: the queries path before the builder
  carried the store analysis), extracted with ``git archive`` into a temporary folder.

Targets: DuckDB within 1.5x of the anchor with peak RSS <= 1 GB; the SQLite path no slower
than the baseline's in the same run (20 % allowance for the noise of a loaded machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DB_PATH = Path(os.environ.get("ABCORE_BENCH_DB", "/tmp/abcore-bench-10m.db"))
BASELINE = os.environ.get("ABCORE_BENCH_BASELINE", "457757d")
MAX_RATIO = 1.5
MAX_RSS_MB = 1024.0
STORE_ALLOWANCE = 1.2

HAND = """
WITH ev AS (
  SELECT user_id, event_type, metric_name, value, ts FROM store.ab_experiment_results
  WHERE experiment_id = 1 AND ts >= '2026-01-01 00:00:00'),
first AS (SELECT user_id, MIN(ts) AS first_ts FROM ev WHERE event_type = 'exposure' GROUP BY user_id),
pop AS (
  SELECT a.user_id, a.variant_id, f.first_ts FROM store.ab_user_assignments a JOIN first f ON f.user_id = a.user_id
  WHERE a.experiment_id = 1),
j AS (
  SELECT p.user_id, p.variant_id, e.metric_name, e.value
  FROM pop p LEFT JOIN ev e ON e.user_id = p.user_id AND e.event_type = 'conversion'
    AND e.metric_name IN ('click', 'revenue') AND e.ts >= p.first_ts),
u AS (
  SELECT variant_id,
    MAX(CASE WHEN metric_name = 'click' THEN 1 ELSE 0 END) AS click,
    SUM(CASE WHEN metric_name = 'revenue' THEN COALESCE(value, 1) ELSE 0 END) AS revenue
  FROM j GROUP BY user_id, variant_id),
s AS (SELECT variant_id, COUNT(*) AS n, SUM(click) AS conversions, SUM(revenue) AS s, SUM(revenue * revenue) AS s2
      FROM u GROUP BY variant_id){pct_ctes}
SELECT s.*{pct_cols} FROM s{pct_join} ORDER BY variant_id
"""
# As in bench_engines.py: the anchor also computes the exact percentiles of the revenue values, as analyze does.
PCT = {"pct_ctes": ",\nq AS (SELECT variant_id, quantile_disc(value, [0.5, 0.95, 0.99]) AS pct FROM j"
                   " WHERE metric_name = 'revenue' AND value IS NOT NULL GROUP BY variant_id)",
       "pct_cols": ", q.pct", "pct_join": " LEFT JOIN q USING (variant_id)"}
STATS_ONLY = {"pct_ctes": "", "pct_cols": "", "pct_join": ""}


RUNNER = r"""
import json, os, sys, time
from pathlib import Path
mode, db = sys.argv[1], sys.argv[2]

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0

url = f"sqlite:///{db}"
if mode == "hand":
    from abcore.analysis.engines import duckdb_engine
    eng = duckdb_engine(store_url=url)  # the same read-only attach (sqlite_scanner) as analyze(engine="duckdb")
    t0 = time.perf_counter()
    rows = [list(r) for r in eng.connection.execute(sys.argv[3]).fetchall()]
    out = {v: {"users": n, "click": c, "revenue_mean": s / n} for v, n, c, s, _s2, *_pct in rows}
    print(json.dumps({"seconds": time.perf_counter() - t0, "rss_mb": rss(), "store_mode": eng.store_mode,
                      "variants": out, "load": os.getloadavg()[0]}))
    raise SystemExit(0)
from sqlmodel import Session
from abcore.analysis.pipeline import analyze
from abcore.store.db import make_engine
kwargs = {} if mode == "baseline" else {"engine": mode.split(":")[0]}
if mode.endswith(":nodaily"):
    kwargs["daily"] = False
engine = make_engine(url)
t0 = time.perf_counter()
with Session(engine) as s:
    res = analyze(1, session=s, **kwargs)
seconds = time.perf_counter() - t0
out = {}
for v in res.variants:
    out[str(v.variant_id)] = {"users": v.users}
for r in res.metrics:
    out[str(r.variant_id)]["click" if r.metric == "click" else "revenue_mean"] = (
        r.conversions if r.metric == "click" else r.value)
    control = str(next(v.variant_id for v in res.variants if v.is_control))
    out[control]["click" if r.metric == "click" else "revenue_mean"] = (
        r.control_conversions if r.metric == "click" else r.control_value)
print(json.dumps({"seconds": seconds, "rss_mb": rss(), "variants": out, "load": os.getloadavg()[0],
                  "engine": getattr(res, "engine", "store")}))
"""


def _run(mode: str, pythonpath: Path = ROOT) -> dict:
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    query = HAND.format(**(STATS_ONLY if mode == "hand:stats" else PCT))
    out = subprocess.run([sys.executable, "-c", RUNNER, mode.split(":")[0] if mode.startswith("hand") else mode,
                          str(DB_PATH), query], capture_output=True, text=True,
                         env=env, timeout=3600)
    if out.returncode != 0:
        raise AssertionError(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _baseline_tree(target: Path) -> Path | None:
    """The ``abcore`` package of ``BASELINE`` extracted under ``target`` (None, with the reason printed, if git cannot)."""
    archive = target / "baseline.tar"
    done = subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), BASELINE, "abcore"],
                          capture_output=True, text=True)
    if done.returncode != 0:
        print(f"baseline {BASELINE} not measured: git archive failed ({done.stderr.strip()})")
        return None
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    return target


def _warm(path: Path) -> None:
    """Read ``path`` once so every measurement starts from the page cache (the first one otherwise pays the
    cold read of the 2 GB file alone: 72.9 s instead of 4-10 s for the anchor in one run)."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def _same_numbers(a: dict, b: dict) -> None:
    assert set(a["variants"]) == set(b["variants"])
    for v, x in a["variants"].items():
        y = b["variants"][v]
        assert (x["users"], x["click"]) == (y["users"], y["click"]), v
        assert abs(x["revenue_mean"] - y["revenue_mean"]) <= 1e-9 * abs(y["revenue_mean"]), v


def _fig(label: str, f: dict, anchor: dict | None = None) -> str:
    ratio = f" = {f['seconds'] / anchor['seconds']:.2f}x the anchor" if anchor else ""
    return f"  {label:<44} {f['seconds']:7.2f} s{ratio:<22} peak RSS {f['rss_mb']:6.0f} MB  (load {f['load']:.1f})"


@pytest.mark.bench
def test_analyze_engines_on_the_10m_sqlite_store() -> None:
    script = str(ROOT / "benchmarks" / "bench_analysis.py")  # the generator and migration of bench_analysis
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if not DB_PATH.exists():
        subprocess.run([sys.executable, script, "generate", str(DB_PATH)], check=True, env=env)
    subprocess.run([sys.executable, script, "migrate", str(DB_PATH)], check=True, capture_output=True, env=env)
    print(f"\n10,000,000 events in {DB_PATH} (uptime: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f})")
    _warm(DB_PATH)
    stats_only = _run("hand:stats")
    hand = _run("hand")
    duck = _run("duckdb")
    duck_core = _run("duckdb:nodaily")
    store = _run("store")
    print(_fig(f"hand-written DuckDB query, statistics only ({hand['store_mode']})", stats_only))
    print(_fig("hand-written, statistics + exact percentiles (anchor)", hand))
    print(f"  analyze(engine=\"duckdb\") / statistics-only query: {duck['seconds'] / stats_only['seconds']:.2f}x")
    print(_fig('analyze(engine="duckdb")', duck, hand))
    print(_fig('analyze(engine="duckdb", daily=False)', duck_core, hand))
    print(_fig('analyze(engine="store") on SQLite', store, hand))
    with tempfile.TemporaryDirectory(prefix="abcore-baseline-") as tmp:
        tree = _baseline_tree(Path(tmp))
        base = _run("baseline", tree) if tree else None
    if base:
        print(_fig(f"analyze() on SQLite, baseline {BASELINE}", base, hand))
        print(f"  SQLite path now / baseline: {store['seconds'] / base['seconds']:.2f}x")
    for other in (stats_only, duck, duck_core, store, *([base] if base else [])):
        _same_numbers(other, hand)
    assert duck["engine"] == "duckdb" and store["engine"] == "store"
    assert duck["seconds"] <= MAX_RATIO * hand["seconds"], "analyze(engine='duckdb') slower than 1.5x the anchor"
    assert duck["rss_mb"] <= MAX_RSS_MB
    if base:
        assert store["seconds"] <= STORE_ALLOWANCE * base["seconds"], "the SQLite path is slower than the baseline"
