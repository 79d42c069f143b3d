"""``track(..., timestamp=...)``: backfilled and replayed events keep the time they happened, bounded by the
importer's rule (:func:`abcore.store.values.parse_timestamp`), on both store backends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from abcore.assign import Assigner
from abcore.io.event_records import parse_timestamp as import_rule
from abcore.store.tables import ExperimentEvent
from abcore.store.values import parse_timestamp

from .conftest import new_experiment


def _stored(engine: Engine, user_id: str) -> list[tuple[str, float | None, datetime]]:
    with engine.connect() as connection:
        rows = connection.execute(
            select(ExperimentEvent.metric_name, ExperimentEvent.value, ExperimentEvent.ts)
            .where(ExperimentEvent.user_id == user_id, ExperimentEvent.event_type == "conversion")
            .order_by(ExperimentEvent.id)
        ).all()
    # SQLite gives naive datetimes back (stored as UTC); PostgreSQL aware ones.
    return [(m, v, ts if ts.tzinfo else ts.replace(tzinfo=UTC)) for m, v, ts in rows]


def test_track_keeps_the_given_time(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine)
    assert assigner.assign("u1", "ranker_v2") is not None
    past = datetime(2024, 3, 1, 12, 30, 15, 250000, tzinfo=UTC)
    naive = datetime(2024, 3, 2, 8, 0)  # naive = UTC, as the importer reads it
    east = datetime(2024, 3, 3, 9, 0, tzinfo=timezone(timedelta(hours=2)))
    assert assigner.track("u1", "ranker_v2", "m", 1.0, timestamp=past) is True
    assert assigner.track("u1", "ranker_v2", "m", 2.0, timestamp=naive) is True
    assert assigner.track("u1", "ranker_v2", "m", 3.0, timestamp=east) is True
    before = datetime.now(UTC)
    assert assigner.track("u1", "ranker_v2", "m", 4.0) is True  # default: now
    assigner.flush()
    rows = _stored(engine, "u1")
    # Expected instants by hand: naive 08:00 is 08:00 UTC; 09:00+02:00 is 07:00 UTC.
    assert [ts for _, _, ts in rows[:3]] == [past, datetime(2024, 3, 2, 8, 0, tzinfo=UTC),
                                              datetime(2024, 3, 3, 7, 0, tzinfo=UTC)]
    assert rows[3][2] >= before - timedelta(seconds=1)


def test_track_refuses_timestamps_the_importer_refuses(engine: Engine, assigner: Assigner) -> None:
    new_experiment(engine)
    assert assigner.assign("u1", "ranker_v2") is not None
    # 0001-01-01 00:00 at UTC+14 is in year 0 in UTC: the importer refuses it, so does track (nothing stored).
    too_early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    with pytest.raises(ValueError, match="out of range"):
        import_rule(too_early.isoformat())
    assert assigner.track("u1", "ranker_v2", "m", 1.0, timestamp=too_early) is False
    with pytest.raises(TypeError, match="timestamp must be a datetime"):
        assigner.track("u1", "ranker_v2", "m", 1.0, timestamp="2024-01-01")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="timestamp must be a datetime"):
        assigner.track("u1", "ranker_v2", "m", 1.0, timestamp=1_700_000_000)  # type: ignore[arg-type]
    assigner.flush()
    assert _stored(engine, "u1") == []


def test_one_rule_for_imported_and_tracked_times() -> None:
    assert import_rule is parse_timestamp
    aware = datetime(2024, 5, 1, 10, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_timestamp(aware) == parse_timestamp("2024-05-01T10:00:00-05:00") == datetime(2024, 5, 1, 15, tzinfo=UTC)
    assert parse_timestamp(datetime(2024, 5, 1)) == datetime(2024, 5, 1, tzinfo=UTC)
