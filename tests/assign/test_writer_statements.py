"""The bulk statements of the write path (multi-row VALUES in index order on SQLite, COPY on PostgreSQL)
store exactly what they are given, tell exactly which rows they inserted, and convert timestamps exactly
as SQLAlchemy's own bind processing does."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Engine

from abcore.assign import statements as st
from abcore.assign import writer as w
from abcore.store.tables import ExperimentEvent, UserAssignment, Variant

from .conftest import new_experiment


def _sqlalchemy_bind(value: datetime) -> str:
    """Independent source: SQLAlchemy's bind processing of the column type on the SQLite dialect."""
    dialect = sqlite_dialect.dialect()
    type_ = ExperimentEvent.__table__.c.ts.type
    processor = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor(value)


def test_sqlite_stamp_matches_sqlalchemy_bind_processing() -> None:
    rng = random.Random(10)
    values = [
        datetime(2026, 12, 2, 1, 0, 0, 0, tzinfo=UTC),  # microsecond 0: still written with .000000
        datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),  # year padded to 4 digits
        datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(2026, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),  # not UTC: converted first
        datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),  # crosses a day boundary
    ]
    values += [datetime.fromtimestamp(rng.uniform(0, 4e9), UTC).replace(microsecond=rng.randrange(10**6)) for _ in range(500)]
    dialect = sqlite_dialect.dialect()
    stamp = st.sqlite_stamp(st._bind_processor(ExperimentEvent.__table__.c.ts.type, dialect), {})
    for value in values:
        assert stamp(value) == _sqlalchemy_bind(value), value
    with pytest.raises(ValueError, match="timezone"):  # a naive datetime is rejected, as SQLAlchemy does
        stamp(datetime(2026, 1, 1))


def test_driver_errors_are_classified_like_wrapped_ones() -> None:
    assert w.is_store_trouble(sqlite3.OperationalError("database is locked"))
    assert not w.is_store_trouble(sqlite3.IntegrityError("FOREIGN KEY constraint failed"))


def test_bulk_statements_store_exactly_the_input(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small statements so that full and partial chunks are both exercised.
    monkeypatch.setattr(st, "SQLITE_ROWS_PER_STATEMENT", 7)
    monkeypatch.setattr(st, "SQLITE_EVENTS_PER_STATEMENT", 5)
    exp_id = new_experiment(engine, allocations=(50.0, 50.0), salt="bulk")
    with engine.connect() as connection:
        variant_ids = [v for (v,) in connection.execute(select(Variant.id).where(Variant.experiment_id == exp_id))]
    rng = random.Random(3)
    now = datetime.now(UTC)
    users = [f"u-{rng.getrandbits(40):x}" for _ in range(53)]
    first = [(u, exp_id, variant_ids[i % 2], {"i": i} if i % 3 else {}, now) for i, u in enumerate(users[:10])]
    with engine.begin() as connection:
        assert st.insert_rows(engine, connection, first) == {(exp_id, u) for u in users[:10]}
    rows = [(u, exp_id, variant_ids[(i + 1) % 2], {}, now + timedelta(microseconds=i)) for i, u in enumerate(users)]
    with engine.begin() as connection:
        inserted = st.insert_rows(engine, connection, rows)
    assert inserted == {(exp_id, u) for u in users[10:]}  # the first 10 were stored before: not inserted again
    events = [
        (exp_id, variant_ids[i % 2], users[i % len(users)], ("exposure", "conversion")[i % 2], None if i % 2 == 0 else "m",
         None if i % 2 == 0 else float(i), None if i % 4 else f"r{i}", {} if i % 5 else {"p": i}, now + timedelta(seconds=i))
        for i in range(37)
    ]
    with engine.begin() as connection:
        assert st.insert_events(engine, connection, events) == 37
    with engine.connect() as connection:
        stored_rows = {
            (r.user_id, r.variant_id, tuple(sorted(r.attributes.items())), r.assigned_at.astimezone(UTC))
            for r in connection.execute(select(UserAssignment).where(UserAssignment.experiment_id == exp_id))
        }
        stored_events = Counter(
            (r.experiment_id, r.variant_id, r.user_id, r.event_type, r.metric_name, r.value, r.request_id,
             tuple(sorted(r.properties.items())), r.ts.astimezone(UTC))
            for r in connection.execute(select(ExperimentEvent).where(ExperimentEvent.experiment_id == exp_id))
        )
    expected_rows = {(u, v, tuple(sorted(a.items())), ts) for u, _e, v, a, ts in first}
    expected_rows |= {(u, v, tuple(sorted(a.items())), ts) for u, _e, v, a, ts in rows[10:]}
    assert stored_rows == expected_rows
    assert stored_events == Counter((*e[:7], tuple(sorted(e[7].items())), e[8]) for e in events)


def test_writer_commits_per_batch_and_requeues_only_what_is_not_committed(engine: Engine) -> None:
    from sqlalchemy.exc import OperationalError

    from .conftest import count_assignments, count_events

    exp_id = new_experiment(engine, allocations=(50.0, 50.0), salt="chunks")
    with engine.connect() as connection:
        variant_id = connection.execute(select(Variant.id).where(Variant.experiment_id == exp_id)).scalars().first()
    writer = w.Writer(engine, flush_interval=3600, max_buffer=10**9, batch_size=7)
    real = writer._insert_rows_tx
    calls = {"n": 0}

    def flaky(rows: list[st.Row], stamps: st.Stamps | None = None) -> set[tuple[int, str]]:
        calls["n"] += 1
        if calls["n"] == 3:  # the third transaction meets a locked store
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return real(rows, stamps)

    writer._insert_rows_tx = flaky  # type: ignore[method-assign]
    now = datetime.now(UTC)
    users = [f"c-{i:03d}" for i in range(30)]  # 30 rows: 5 transactions of at most 7
    try:
        for u in users:
            writer.add_row((u, exp_id, variant_id, {}, now), (exp_id, variant_id, u, "exposure", None, None, None, {}, now))
        writer.flush(timeout=30)
        # two transactions (14 rows, sorted by user id) committed before the trouble; the rest waits
        assert count_assignments(engine, exp_id) == 14
        assert writer.pending_rows() == 16
        assert count_events(engine, exp_id, "user_assignment") == 0  # requeued with the events, not lost
        assert writer.pending() == 16 + 14 + 30
        writer.flush(timeout=30)  # the store is back
        assert writer.pending() == 0
    finally:
        writer.close(timeout=30)
    with engine.connect() as connection:
        stored = sorted(connection.execute(select(UserAssignment.user_id).where(UserAssignment.experiment_id == exp_id)).scalars())
    assert stored == users  # each once
    assert count_events(engine, exp_id, "user_assignment") == 30
    assert count_events(engine, exp_id, "exposure") == 30
    assert writer.rows_written == 30 and writer.events_written == 60
