"""Benchmark: ``analyze`` on 10,000,000 events in SQLite (2 variants, ~1,000,000 users, 2 metrics).

``ABCORE_BENCH_EVENTS`` scales the data set (users = events / 10); ``ABCORE_BENCH_BASELINE`` names a
checkout whose ``analyze`` is timed on the same data in the same run (the anchor of the ratio).

Run with ``pytest benchmarks/bench_analysis.py -m bench -s``. The data set is generated once
in a separate process (so its memory does not count) by SQLite itself (recursive CTEs with
``random()``) and cached under ``/tmp``. The test then runs ``analyze`` in a fresh
subprocess and reports its wall time and peak RSS (``VmHWM`` of ``/proc/self/status``),
next to the naive pandas path (read all rows, group by) on the same data.

Before timing, the cached database is brought to the newest schema with ``init_db`` (new
migrations may add or drop indexes on the existing rows); that time is printed separately.

Targets: ``analyze`` <= 10 s and peak RSS <= 300 MB.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

#: Events in the data set (default 10,000,000; e.g. ABCORE_BENCH_EVENTS=1000000 for a quick run).
TOTAL_EVENTS = int(os.environ.get("ABCORE_BENCH_EVENTS", "10000000"))
DB_PATH = Path(os.environ.get("ABCORE_BENCH_DB", f"/tmp/abcore-bench-{TOTAL_EVENTS // 1_000_000}m.db"
                              if TOTAL_EVENTS >= 1_000_000 else f"/tmp/abcore-bench-{TOTAL_EVENTS}.db"))
USERS = TOTAL_EVENTS // 10
EXPOSURES = TOTAL_EVENTS * 6 // 10
CLICKS = TOTAL_EVENTS * 15 // 100
REVENUE = TOTAL_EVENTS - EXPOSURES - CLICKS
#: A checkout of the code to compare with (e.g. ``git archive main | tar -x -C /tmp/abcore-main``): its
#: ``analyze`` runs on the same data in the same run and the ratio new / baseline is printed.
BASELINE = os.environ.get("ABCORE_BENCH_BASELINE")
START = "2026-01-01 00:00:00"
MAX_RSS_MB = 300.0
MAX_SECONDS = 10.0


def _peak_rss_mb() -> float:
    """Peak resident set size of this process (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path) -> None:
    """Build the 10M-event database at ``path`` (schema by Alembic, rows by SQLite CTEs)."""
    from abcore.store.db import init_db, make_engine

    tmp = path.with_suffix(".partial")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    engine = init_db(make_engine(f"sqlite:///{tmp}"))
    engine.dispose()
    con = sqlite3.connect(tmp)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    con.execute("PRAGMA cache_size=-400000")
    # Indexes are built after the load (faster); their definitions come from the migration.
    index_sql = [
        r[0]
        for r in con.execute(
            "SELECT sql FROM sqlite_master WHERE type='index' AND tbl_name='ab_experiment_results' AND sql IS NOT NULL"
        )
    ]
    for (name,) in con.execute(
        "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='ab_experiment_results' AND sql IS NOT NULL"
    ).fetchall():
        con.execute(f'DROP INDEX "{name}"')
    now = "2026-01-20 00:00:00.000000"
    con.execute(
        "INSERT INTO ab_experiments (id, name, description, hypothesis, status, salt, traffic_allocation, targeting,"
        " primary_metric, secondary_metrics, guardrail_metrics, success_criteria, min_duration_days,"
        " min_samples_per_variant, created_by, created_at, started_at, updated_at) VALUES"
        " (1, 'bench', '', '', 'running', 'salt', 1.0, '[]', 'click', '[\"revenue\"]', '[]',"
        " '{\"metric\": \"click\", \"direction\": \"increase\", \"threshold\": 0.02, \"confidence\": 0.95}',"
        f" 7, 1000, 'bench', '{now}', '{START}.000000', '{now}')"
    )
    con.execute(
        "INSERT INTO ab_experiment_variants (id, experiment_id, name, allocation_pct, config, is_control, position)"
        " VALUES (1, 1, 'control', 50, '{}', 1, 0), (2, 1, 'treatment', 50, '{}', 0, 1)"
    )
    con.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {USERS - 1})
        INSERT INTO ab_user_assignments (user_id, experiment_id, variant_id, attributes, assigned_at)
        SELECT printf('u%07d', i), 1, 1 + (i % 2),
               CASE i % 3 WHEN 0 THEN '{{"country": "DE"}}' WHEN 1 THEN '{{"country": "US"}}'
                          ELSE '{{"country": "FR"}}' END,
               strftime('%Y-%m-%d %H:%M:%S.000000', '{START}', '+' || (i % 1209600) || ' seconds')
        FROM n
        """
    )
    # Exposures: every user at least once (first EXPOSURES rows cycle through users), spread over 14 days.
    con.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {EXPOSURES - 1})
        INSERT INTO ab_experiment_results (experiment_id, variant_id, user_id, event_type, metric_name, value,
                                           properties, ts)
        SELECT 1, 1 + ((i % {USERS}) % 2), printf('u%07d', i % {USERS}), 'exposure', NULL, NULL, '{{}}',
               strftime('%Y-%m-%d %H:%M:%S.000000', '{START}', '+' || (abs(random()) % 1209600) || ' seconds')
        FROM n
        """
    )
    # Clicks (binary, value 1) on random users; revenue values carry a +0.5 treatment effect.
    con.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {CLICKS - 1}),
        r AS (SELECT abs(random()) % {USERS} AS u FROM n)
        INSERT INTO ab_experiment_results (experiment_id, variant_id, user_id, event_type, metric_name, value,
                                           properties, ts)
        SELECT 1, 1 + (u % 2), printf('u%07d', u), 'conversion', 'click', 1.0, '{{}}',
               strftime('%Y-%m-%d %H:%M:%S.000000', '{START}', '+' || (abs(random()) % 1209600) || ' seconds')
        FROM r
        """
    )
    con.execute(
        f"""
        WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {REVENUE - 1}),
        r AS (SELECT abs(random()) % {USERS} AS u FROM n)
        INSERT INTO ab_experiment_results (experiment_id, variant_id, user_id, event_type, metric_name, value,
                                           properties, ts)
        SELECT 1, 1 + (u % 2), printf('u%07d', u), 'conversion', 'revenue',
               (abs(random()) % 10000) / 100.0 + (u % 2) * 0.5, '{{}}',
               strftime('%Y-%m-%d %H:%M:%S.000000', '{START}', '+' || (abs(random()) % 1209600) || ' seconds')
        FROM r
        """
    )
    con.commit()
    t0 = time.perf_counter()
    for sql in index_sql:
        con.execute(sql)
    print(f"built {len(index_sql)} event-log indexes on {TOTAL_EVENTS:,} rows in {time.perf_counter() - t0:.1f} s")
    con.execute("ANALYZE")
    con.commit()
    con.close()
    tmp.rename(path)


def migrate(path: Path) -> dict[str, float]:
    """Bring the cached database to the newest schema (``init_db``: index changes of new migrations
    are applied to the existing 10M rows); return the time it took, reported apart from ``analyze``."""
    from abcore.store.db import current_revision, init_db, make_engine

    engine = make_engine(f"sqlite:///{path}")
    before = current_revision(engine)
    t0 = time.perf_counter()
    init_db(engine)
    seconds = time.perf_counter() - t0
    after = current_revision(engine)
    con = sqlite3.connect(path)
    indexes = [
        r[0]
        for r in con.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='ab_experiment_results' ORDER BY name"
        )
    ]
    con.close()
    engine.dispose()
    return {"seconds": seconds, "before": before, "after": after, "indexes": indexes}  # type: ignore[dict-item]


def run_analyze(path: Path, **options: bool) -> dict[str, float]:
    """Time ``analyze(1, **options)`` on the cached database in this (fresh) process; return the figures."""
    import resource

    from sqlalchemy import event
    from sqlmodel import Session

    from abcore.analysis.pipeline import analyze
    from abcore.store.db import make_engine

    engine = make_engine(f"sqlite:///{path}")
    # CPU seconds per statement kind (temporary table names stripped), for the breakdown printed below
    per_query: dict[str, float] = {}

    def _cpu() -> float:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        context._bench_cpu = _cpu()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool) -> None:
        words = re.sub(r"abq_(pop|agg)_[0-9a-f]+", r"<\1>", " ".join(statement.split()))[:90]
        per_query[words] = per_query.get(words, 0.0) + _cpu() - context._bench_cpu

    base_rss = _peak_rss_mb()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with Session(engine) as session:
        results = analyze(1, session=session, **options)
    seconds = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    users = sum(v.users for v in results.variants)
    top = sorted(per_query.items(), key=lambda kv: -kv[1])[:10]
    return {"seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": _peak_rss_mb(), "rss_before_mb": base_rss,
            "users": users, "metrics": len(results.metrics), "load": os.getloadavg()[0],
            "queries": top}  # type: ignore[dict-item]


def run_pandas(path: Path) -> dict[str, float]:
    """The naive path: read every event row into pandas, then group by."""
    import pandas as pd

    t0 = time.perf_counter()
    con = sqlite3.connect(path)
    events = pd.read_sql_query(
        "SELECT user_id, event_type, metric_name, value FROM ab_experiment_results WHERE experiment_id = 1", con
    )
    assignments = pd.read_sql_query("SELECT user_id, variant_id FROM ab_user_assignments WHERE experiment_id = 1", con)
    exposed = events.loc[events.event_type == "exposure", "user_id"].unique()
    pop = assignments[assignments.user_id.isin(exposed)]
    conv = events[events.event_type == "conversion"]
    per_user = conv.groupby(["metric_name", "user_id"]).value.sum().reset_index()
    per_user = per_user.merge(pop, on="user_id")
    per_user.groupby(["metric_name", "variant_id"]).value.agg(["count", "sum"])
    seconds = time.perf_counter() - t0
    con.close()
    return {"seconds": seconds, "peak_rss_mb": _peak_rss_mb()}


def _in_subprocess(mode: str, code: str | None = None) -> dict[str, float]:
    """Run this file's ``mode`` in a fresh interpreter; ``code``: import abcore from that checkout instead."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = code
    out = subprocess.run(
        [sys.executable, __file__, mode, str(DB_PATH)], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.bench
def test_analyze_10m_events_sqlite() -> None:
    if not DB_PATH.exists():
        t0 = time.perf_counter()
        subprocess.run([sys.executable, __file__, "generate", str(DB_PATH)], check=True)
        print(f"\ngenerated {TOTAL_EVENTS:,} events in {time.perf_counter() - t0:.1f} s -> {DB_PATH}")
    schema = _in_subprocess("migrate")
    print(
        f"\nschema {schema['before']} -> {schema['after']} in {schema['seconds']:.2f} s (index changes on the cached "
        f"10M rows, not part of analyze); event-log indexes: {', '.join(schema['indexes'])}"  # type: ignore[arg-type]
    )
    figures = _in_subprocess("analyze")
    print(
        f"\nanalyze (SQL aggregation): {figures['seconds']:.2f} s wall, {figures['cpu_seconds']:.2f} s CPU "
        f"(load average {figures['load']:.1f}), peak RSS {figures['peak_rss_mb']:.0f} MB "
        f"(after imports {figures['rss_before_mb']:.0f} MB), {figures['users']:,} users, {figures['metrics']} results"
    )
    for statement, seconds in figures["queries"]:  # type: ignore[attr-defined]
        print(f"  {seconds:6.2f} s CPU  {statement}")
    core = _in_subprocess("analyze-core")
    print(
        f"analyze(percentiles=False, daily=False) (tests, health checks, verdict only): {core['seconds']:.2f} s wall, "
        f"{core['cpu_seconds']:.2f} s CPU, peak RSS {core['peak_rss_mb']:.0f} MB"
    )
    if BASELINE:
        old = _in_subprocess("analyze", BASELINE)
        old_core = _in_subprocess("analyze-core", BASELINE)
        print(
            f"baseline {BASELINE}: analyze {old['seconds']:.2f} s wall ({old['cpu_seconds']:.2f} s CPU), core "
            f"{old_core['seconds']:.2f} s wall ({old_core['cpu_seconds']:.2f} s CPU); ratio new / baseline: analyze "
            f"{figures['seconds'] / old['seconds']:.2f} wall, {figures['cpu_seconds'] / old['cpu_seconds']:.2f} CPU; "
            f"core {core['seconds'] / old_core['seconds']:.2f} wall, "
            f"{core['cpu_seconds'] / old_core['cpu_seconds']:.2f} CPU (load average {old['load']:.1f})"
        )
    naive = _in_subprocess("pandas")
    print(f"naive pandas (read all rows, group by): {naive['seconds']:.2f} s, peak RSS {naive['peak_rss_mb']:.0f} MB")
    assert figures["users"] == USERS
    if TOTAL_EVENTS >= 10_000_000:  # the targets are for the 10M data set
        assert figures["seconds"] <= MAX_SECONDS
        assert figures["peak_rss_mb"] <= MAX_RSS_MB


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "generate":
        generate(target)
    elif mode == "migrate":
        print(json.dumps(migrate(target)))
    elif mode == "analyze":
        print(json.dumps(run_analyze(target)))
    elif mode == "analyze-core":
        print(json.dumps(run_analyze(target, percentiles=False, daily=False)))
    elif mode == "pandas":
        print(json.dumps(run_pandas(target)))
