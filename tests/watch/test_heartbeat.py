"""When the watcher last ran: each pass stores its time, and a page turns it into ok / late / missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.watch.heartbeat import Heartbeat, read_heartbeat, record_pass, watcher_state
from abcore.watch.runner import run_forever, run_pass

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_no_pass_is_missing_and_a_pass_older_than_two_intervals_is_late() -> None:
    missing = watcher_state(None, default_every=300, now=NOW)
    assert missing.level == "missing" and missing.alarming and "No watcher has run" in missing.text
    fresh = watcher_state(Heartbeat(at=NOW - timedelta(minutes=2), every=300), default_every=300, now=NOW)
    assert (fresh.level, fresh.alarming) == ("ok", False)
    assert fresh.text == "Watcher: last pass 2 min ago (a pass every 5 min)."
    # 2 x 300 s = 600 s: 9 min is still on time, 11 min is late (the hand-computed bound)
    assert watcher_state(Heartbeat(at=NOW - timedelta(minutes=9), every=300), default_every=60, now=NOW).level == "ok"
    late = watcher_state(Heartbeat(at=NOW - timedelta(minutes=11), every=300), default_every=60, now=NOW)
    assert late.level == "late" and late.alarming and "last pass 11 min ago" in late.text
    # a --once pass (cron) has no interval of its own: the configured one applies
    once = Heartbeat(at=NOW - timedelta(minutes=3), every=None, errors=2)
    assert watcher_state(once, default_every=60, now=NOW).level == "late"  # 180 s > 2 x 60 s
    assert "2 error(s)" in watcher_state(once, default_every=300, now=NOW).text


def test_every_pass_records_its_time_in_the_store(engine: Engine) -> None:
    """SQLite and PostgreSQL (the ``engine`` fixture)."""
    with Session(engine) as s:
        assert read_heartbeat(s) is None
    before = datetime.now(UTC)
    run_pass(engine)  # a single pass (cron): no interval
    with Session(engine) as s:
        beat = read_heartbeat(s)
    assert beat is not None and beat.every is None and beat.at >= before and beat.errors == 0
    assert run_forever(engine, every=45, max_passes=1) == 1
    with Session(engine) as s:
        beat = read_heartbeat(s)
    assert beat is not None and beat.every == 45


def test_a_store_that_refuses_the_heartbeat_does_not_stop_the_watcher(sqlite_engine: Engine) -> None:
    from sqlalchemy import text

    with sqlite_engine.begin() as connection:
        connection.execute(text("DROP TABLE ab_settings"))
    assert record_pass(sqlite_engine, every=60, experiments=0, errors=0) is False  # logged, not raised
