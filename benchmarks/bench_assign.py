"""Benchmarks of abcore.assign (``pytest -m bench -s benchmarks/bench_assign.py``), with the GrowthBook
Python SDK on the same user ids for comparison. They print figures; targets from issues #3 and #10 are shown
next to them but not asserted (the numbers depend on the machine and its load), and the ratio against the
GrowthBook SDK measured in the same run. Persistence figures also print the ratio against an anchor measured
in the same run on the same store: the same three rows per user (assignment, ``user_assignment`` and
``exposure`` events) inserted with plain SQLAlchemy Core ``executemany`` in one transaction."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from abcore.assign import (
    Assigner,
    Router,
    bucket,
    buckets,
    choose_variant,
    choose_variants,
    cumulative_allocations,
)
from abcore.store.db import make_engine
from tests.factories import make_experiment

pytestmark = pytest.mark.bench

N = 1_000_000
SALT = "ranker_v2-bench"
WEIGHTS = [50.0, 30.0, 20.0]


def _users(n: int, prefix: str = "user") -> list[str]:
    return [f"{prefix}-{i}" for i in range(n)]


def _rate(n: int, fn: Callable[[], Any], repeat: int = 3) -> float:
    """Best-of-``repeat`` throughput in items per second."""
    best = float("inf")
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return n / best


def _row(what: str, value: float, unit: str, target: str = "") -> None:
    print(f"  {what:<62} {value:>14,.1f} {unit:<10} {target}")


def _experiment(engine: Engine, name: str = "bench") -> None:
    """A running experiment with the bench weights and salt (the GrowthBook comparison uses the same)."""
    make_experiment(engine, name, [(f"v{i}", w) for i, w in enumerate(WEIGHTS)], salt=SALT)


def _growthbook() -> tuple[Any, Any, Any]:
    growthbook = pytest.importorskip("growthbook", reason="the GrowthBook SDK is in the `bench` extra")
    from growthbook.core import chooseVariation, gbhash, getBucketRanges

    return growthbook, (gbhash, chooseVariation), getBucketRanges


def test_bench_bucketing() -> None:
    users = _users(N)
    cumulative = cumulative_allocations(WEIGHTS)
    router = Router(experiment_id="bench", salt=SALT, names=("v0", "v1", "v2"), weights=tuple(WEIGHTS))
    print(f"\nbucket + variant choice, {N:,} users, one core")
    _row("abcore vectorised: choose_variants(buckets(ids, salt))", _rate(N, lambda: choose_variants(buckets(users, SALT), cumulative)), "users/s", ">= 2,000,000")
    _row("abcore scalar: [choose_variant(bucket(u, salt)) ...]", _rate(N, lambda: [choose_variant(bucket(u, SALT), cumulative) for u in users]), "users/s", ">= 2,000,000")
    _row("abcore Router.route_many (DB-less, JSON split config)", _rate(N, lambda: router.route_many(users)), "users/s")
    _, (gbhash, choose), get_ranges = _growthbook()
    ranges = get_ranges(3, 1.0, [w / 100 for w in WEIGHTS])
    _row("GrowthBook: chooseVariation(gbhash(seed, id, 2), ranges)", _rate(N, lambda: [choose(gbhash(SALT, u, 2), ranges) for u in users], repeat=1), "users/s")


def test_bench_assign_many_pure(sqlite_engine: Engine) -> None:
    _experiment(sqlite_engine)
    client = Assigner(sqlite_engine)
    users = _users(N, "pure")
    try:
        client.assign_many(users[:10], "bench", persist=False)  # warm the definitions
        print(f"\nassign_many({N:,} users, persist=False): stored rows honoured, nothing written")
        _row("abcore assign_many(persist=False)", _rate(N, lambda: client.assign_many(users, "bench", persist=False)), "users/s", ">= 1,000,000")
    finally:
        client.close()


def test_bench_assign_returning_user(sqlite_engine: Engine) -> None:
    _experiment(sqlite_engine)
    client = Assigner(sqlite_engine, max_buffer=10**9, flush_interval=3600)
    users = _users(1000, "warm")
    try:
        for u in users:
            assert client.assign(u, "bench") is not None
        timings = []
        for _ in range(100):
            for u in users:
                start = time.perf_counter()
                client.assign(u, "bench")
                timings.append(time.perf_counter() - start)
        timings.sort()
        print(f"\nassign() for a returning user, warm process, exposure buffered ({len(timings):,} calls)")
        _row("abcore assign median", statistics.median(timings) * 1e6, "us", "<= 20 us")
        _row("abcore assign p99", timings[int(len(timings) * 0.99)] * 1e6, "us")
        gb = _growthbook_median(users * 20)
        _row("GrowthBook GrowthBook(attributes).run(experiment) median", gb * 1e6, "us")
        _row("ratio abcore / GrowthBook (median)", statistics.median(timings) / gb, "x", "< 1 = faster")
    finally:
        client.close(timeout=60)


def _growthbook_median(users: list[str]) -> float:
    growthbook, _, _ = _growthbook()
    experiment = growthbook.Experiment(key="bench", variations=[0, 1, 2], weights=[w / 100 for w in WEIGHTS])
    gb_times = []
    for u in users:
        start = time.perf_counter()
        growthbook.GrowthBook(attributes={"id": u}).run(experiment)
        gb_times.append(time.perf_counter() - start)
    return statistics.median(gb_times)


ANCHOR_USERS = 20_000


def _core_anchor(engine: Engine, label: str) -> float:
    """Users/s of the anchor: plain SQLAlchemy Core executemany of one assignment row + two events per user."""
    from sqlalchemy import select

    from abcore.store.tables import Experiment, ExperimentEvent, UserAssignment, Variant, utcnow

    name = f"anchor_{time.monotonic_ns()}"
    _experiment(engine, name)
    with engine.connect() as connection:
        exp_id, variant_id = connection.execute(
            select(Variant.experiment_id, Variant.id).join_from(Variant, Experiment).where(Experiment.name == name)
        ).first()  # type: ignore[misc]
    now = utcnow()
    users = _users(ANCHOR_USERS, name)
    rows = [{"user_id": u, "experiment_id": exp_id, "variant_id": variant_id, "attributes": {}, "assigned_at": now} for u in users]
    events = [
        {"experiment_id": exp_id, "variant_id": variant_id, "user_id": u, "event_type": kind, "properties": {}, "ts": now}
        for kind in ("user_assignment", "exposure")
        for u in users
    ]
    gc.collect()
    start = time.perf_counter()
    with engine.begin() as connection:
        connection.execute(UserAssignment.__table__.insert(), rows)
        connection.execute(ExperimentEvent.__table__.insert(), events)
    rate = ANCHOR_USERS / (time.perf_counter() - start)
    _row(f"anchor: SQLAlchemy Core executemany, same rows ({label}, {ANCHOR_USERS:,} users)", rate, "users/s")
    return rate


def _first_time_single(engine: Engine, n: int, label: str, target: str) -> None:
    """First-time ``assign`` one user at a time (no synchronous write), then the writer persists."""
    _experiment(engine, "bench_single")
    client = Assigner(engine)
    try:
        assert client.assign("warm-up", "bench_single") is not None
        client.flush(timeout=60)
        users = _users(n, "first")
        timings = []
        gc.collect()
        start_all = time.perf_counter()
        for u in users:
            start = time.perf_counter()
            client.assign(u, "bench_single")
            timings.append(time.perf_counter() - start)
        client.flush(timeout=600)
        elapsed = time.perf_counter() - start_all
        assert client.pending_events() == 0
        timings.sort()
        median = statistics.median(timings)
        print(f"\nfirst-time assign() one user at a time, {label}, {n:,} new users (rows + events written behind)")
        _row("abcore assign median (first-time user)", median * 1e6, "us", "<= 20 us")
        _row("abcore assign p99 (first-time user)", timings[int(len(timings) * 0.99)] * 1e6, "us", "<= 200 us")
        _row(f"persisted first-time users through the writer ({label})", n / elapsed, "users/s", target)
        anchor = _core_anchor(engine, label)
        _row("ratio writer / anchor", n / elapsed / anchor, "x", "> 1 = faster")
        gb = _growthbook_median(users[:20_000])
        _row("GrowthBook GrowthBook(attributes).run(experiment) median", gb * 1e6, "us")
        _row("ratio abcore first-time / GrowthBook (median)", median / gb, "x", "< 1 = faster")
        print(f"  writer: {client.writer.rows_written:,} rows, {client.writer.events_written:,} events; "  # type: ignore[union-attr]
              f"dropped {client.dropped_events}, dead-lettered {client.dead_lettered}")
    finally:
        client.close(timeout=60)


def test_bench_first_time_single_sqlite(sqlite_engine: Engine) -> None:
    _first_time_single(sqlite_engine, 100_000, "SQLite", ">= 20,000")


def test_bench_first_time_single_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        _first_time_single(engine, 50_000, "PostgreSQL", ">= 5,000")
    finally:
        engine.dispose()


def _first_time(engine: Engine, n: int, label: str, target: str) -> None:
    _experiment(engine)
    client = Assigner(engine, timeout=10.0)
    try:
        client.assign("warm-up", "bench")
        client.flush(timeout=60)
        users = _users(n, "new")
        start = time.perf_counter()
        result = client.assign_many(users, "bench")
        client.flush()
        elapsed = time.perf_counter() - start
        assert all(a is not None and a.is_new for a in result)
        print(f"\nfirst-time assignments persisted to {label}: {n:,} new users, rows + user_assignment + exposure events")
        _row(f"abcore assign_many + flush ({label})", n / elapsed, "users/s", target)
        anchor = _core_anchor(engine, label)
        _row("ratio assign_many / anchor", n / elapsed / anchor, "x", "> 1 = faster")
        singles = _users(500, "single")
        start = time.perf_counter()
        for u in singles:
            client.assign(u, "bench")
        client.flush(timeout=60)
        _row(f"abcore assign() one by one + flush, new users ({label})", len(singles) / (time.perf_counter() - start), "users/s")
        print("  GrowthBook SDK: no server-side persistence of assignments (n/a)")
    finally:
        client.close()


def test_bench_first_time_sqlite(sqlite_engine: Engine) -> None:
    _first_time(sqlite_engine, 100_000, "SQLite", ">= 20,000")


def test_bench_first_time_postgres(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        _first_time(engine, 50_000, "PostgreSQL", ">= 5,000")
    finally:
        engine.dispose()
