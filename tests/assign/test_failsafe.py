"""Fail-safe: database unreachable, locked or erroring -> None within 200 ms, logged once, never raised."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine, make_url

from abcore.assign import Assigner, bucket, choose_variant, cumulative_allocations
from abcore.store.db import make_engine

from .conftest import count_assignments, new_experiment

BUDGET_S = 0.200  # the bound for an answer on database trouble


def _timed(fn, *args, **kwargs):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def test_unreachable_postgres_answers_none_fast_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    client = Assigner("postgresql+psycopg://nobody@127.0.0.1:1/none", log_interval=60.0)
    try:
        with caplog.at_level(logging.WARNING, logger="abcore.assign"):
            worst = 0.0
            for i in range(30):
                answer, elapsed = _timed(client.assign, f"user-{i}", "ranker_v2", attributes={"country": "DE"})
                assert answer is None
                worst = max(worst, elapsed)
            assert worst < BUDGET_S
            time.sleep(client.retry_after + 0.05)  # breaker closes; the next call tries (and fails) again
            answer, elapsed = _timed(client.assign, "user-x")
            assert answer is None and elapsed < BUDGET_S
            tracked, elapsed = _timed(client.track, "user-x", "ranker_v2", "click", 1.0)
            assert tracked is False and elapsed < BUDGET_S
            assert client.assign_many(["a", "b"], "ranker_v2") == [None, None]
            assert client.flush() == 0
        warnings = [r for r in caplog.records if r.name == "abcore.assign" and r.levelno >= logging.WARNING]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once per minute, not per call
    finally:
        client.close()


def test_bad_arguments_still_raise_when_the_database_is_down() -> None:
    client = Assigner("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        with pytest.raises(ValueError):
            client.assign("")
        with pytest.raises(TypeError):
            client.assign("u1", unknown_keyword=1)  # type: ignore[call-arg]
    finally:
        client.close()


def test_locked_sqlite_answers_from_the_hash(sqlite_url: str, sqlite_engine: Engine) -> None:
    """Was "answers None fast": now a running experiment keeps answering new users from the hash
    while the store is locked (no breaker answering None), and their rows land once the lock is gone."""
    exp_id = new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=0.05)
    try:
        known = client.assign("known-user", "ranker_v2")
        assert known is not None
        assert client.flush() >= 1
        path = make_url(sqlite_url).database
        locker = sqlite3.connect(str(path), timeout=0.1, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")  # another writer holds the database lock
        try:
            for i in range(5):
                answer, elapsed = _timed(client.assign, f"new-user-{i}", "ranker_v2")
                # expected variant: the hash (bucket + choose_variant over the 50/50 split)
                expected = choose_variant(bucket(f"new-user-{i}", "ranker_v2-salt"), cumulative_allocations([50, 50]))
                assert answer is not None and answer.variant_name == f"v{expected}" and answer.is_new
                assert elapsed < BUDGET_S
            again, elapsed = _timed(client.assign, "known-user", "ranker_v2")
            assert again is not None and again.variant_id == known.variant_id and elapsed < BUDGET_S
            assert count_assignments(sqlite_engine, exp_id) == 1  # nothing could be written yet
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        client.flush(timeout=10)
        assert count_assignments(sqlite_engine, exp_id) == 6  # the rows landed after the lock
    finally:
        client.close()


def test_unmigrated_database_errors_are_contained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables: every query errors
    client = Assigner(engine)
    try:
        with caplog.at_level(logging.WARNING, logger="abcore.assign"):
            answer, elapsed = _timed(client.assign, "u1", "ranker_v2")
            assert answer is None and elapsed < BUDGET_S
            assert client.track("u1", "ranker_v2", "click") is False
        assert any("failed" in r.getMessage() for r in caplog.records)
    finally:
        client.close()
        engine.dispose()


def test_events_survive_a_failed_flush(sqlite_engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    exp_id = new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=60.0, max_buffer=10**9)
    try:
        assert client.assign("u1", "ranker_v2") is not None
        assert client.pending_events() == 2  # user_assignment + exposure
        with sqlite_engine.begin() as connection:  # the event log is unavailable (table gone)
            connection.exec_driver_sql("ALTER TABLE ab_experiment_results RENAME TO results_away")
        with caplog.at_level(logging.WARNING, logger="abcore.assign"):
            written, elapsed = _timed(client.flush)
        assert written == 0 and client.pending_events() == 2  # kept for the next flush, nothing raised
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE results_away RENAME TO ab_experiment_results")
        assert client.flush() == 2
        assert client.pending_events() == 0
    finally:
        client.close()
    from .conftest import count_events

    assert count_events(sqlite_engine, exp_id, "exposure") == 1


def test_buffer_is_bounded_while_the_database_is_down(sqlite_engine: Engine) -> None:
    """Also: assign_many writes its events at once, and keeps them buffered when that write fails."""
    new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=60.0, max_buffer=10**9, max_pending=10)
    try:
        for i in range(20):
            client.assign(f"u{i}", "ranker_v2")  # 40 buffered events
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE ab_experiment_results RENAME TO results_away")
        from abcore.assign import prometheus as metrics

        dropped_before = metrics.DROPPED.labels("event")._value.get()
        assert client.flush() == 0
        assert client.pending_events() == 10 and client.dropped_events == 30  # oldest dropped, counted
        assert metrics.DROPPED.labels("event")._value.get() - dropped_before == 30  # experiment_assign_dropped_total
    finally:
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE results_away RENAME TO ab_experiment_results")
        client.close()


def test_assign_many_keeps_events_when_their_write_fails(sqlite_engine: Engine) -> None:
    exp_id = new_experiment(sqlite_engine)
    client = Assigner(sqlite_engine, flush_interval=60.0, max_buffer=10**9)
    try:
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE ab_experiment_results RENAME TO results_away")
        result = client.assign_many(["a", "b", "c"], "ranker_v2")
        assert all(r is not None for r in result)  # the rows were stored; only the event log failed
        assert client.pending_events() == 6
        with sqlite_engine.begin() as connection:
            connection.exec_driver_sql("ALTER TABLE results_away RENAME TO ab_experiment_results")
        assert client.flush() == 6
    finally:
        client.close()
    assert count_assignments(sqlite_engine, exp_id) == 3
